{#- Pricing by dimension. A combination of dimension values has a key: a JSON object of the
    values in the order of `names` (each an SQL expression naming a metadata key, null when
    there is none), without spaces, a value missing from the metadata as null; '{}' with no
    names. The catalog computes the same key for the combinations its prices list
    (warehouse.catalog.dimension_key), so a key is matched by equality. -#}
{% macro dimension_key(metadata, names) -%}
    case when {{ names[0] }} is null then '{}' else concat(
        '{',
        {%- for name in names %}
        case when {{ name }} is null then '' else concat(
            {{ "'\"'" if loop.first else "',\"'" }}, {{ name }}, '":',
            {{ json_string(json_text(metadata, name)) }}) end,
        {%- endfor %}
        '}') end
{%- endmacro %}

{#- What an invoice line says of a combination: "model gpt-4o, direction input" ('' with
    no names; a value missing from the metadata reads "(none)"). -#}
{% macro dimension_label(metadata, names) -%}
    concat(
        {%- for name in names %}
        case when {{ name }} is null then '' else concat(
            {{ "''" if loop.first else "', '" }}, {{ name }}, ' ',
            coalesce({{ json_text(metadata, name) }}, '(none)')) end
        {%- if not loop.last %},{% endif %}
        {%- endfor %})
{%- endmacro %}

{#- A text as a JSON string literal (quoted, escaped), null as null. -#}
{% macro json_string(text) -%}
    {{ return(adapter.dispatch('json_string', 'billing')(text)) }}
{%- endmacro %}
{% macro default__json_string(text) -%}
    coalesce(cast(to_json(cast({{ text }} as text)) as text), 'null')
{%- endmacro %}
{% macro spark__json_string(text) -%}
    coalesce(regexp_extract(to_json(array(cast({{ text }} as string))), '^\\[(.*)\\]$', 1),
             'null')
{%- endmacro %}

{#- The text of item `index` of a JSON array held as text; null past its end or when null. -#}
{% macro json_item(column, index) -%}
    {{ return(adapter.dispatch('json_item', 'billing')(column, index)) }}
{%- endmacro %}
{% macro default__json_item(column, index) -%}
    (cast({{ column }} as jsonb) ->> {{ index }})
{%- endmacro %}
{% macro spark__json_item(column, index) -%}
    get_json_object({{ column }}, '$[{{ index }}]')
{%- endmacro %}
