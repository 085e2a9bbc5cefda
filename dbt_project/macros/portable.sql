{#- Engine-specific SQL behind adapter.dispatch, so models stay the same on every engine. -#}

{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text', 'billing')(column, key)) }}
{%- endmacro %}
{% macro default__json_text(column, key) -%}
    ({{ column }} ->> {{ key }})
{%- endmacro %}

{% macro epoch_seconds(ts) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'billing')(ts)) }}
{%- endmacro %}
{% macro default__epoch_seconds(ts) -%}
    cast(extract(epoch from {{ ts }}) as numeric)
{%- endmacro %}

{% macro month_spine(start_expr, end_expr) -%}
    {{ return(adapter.dispatch('month_spine', 'billing')(start_expr, end_expr)) }}
{%- endmacro %}
{% macro default__month_spine(start_expr, end_expr) -%}
    select cast(m as timestamptz) as month_start
    from generate_series(
        date_trunc('month', {{ start_expr }}), {{ end_expr }}, interval '1 month') as g(m)
    where m < {{ end_expr }}
{%- endmacro %}

{#- Session settings for the big sorts and hashes of a model, scoped to its transaction. -#}
{% macro tune_session() -%}
    {{ return(adapter.dispatch('tune_session', 'billing')()) }}
{%- endmacro %}
{% macro default__tune_session() -%}
{%- endmacro %}
{% macro postgres__tune_session() -%}
    set local work_mem = '{{ var("work_mem") }}';
    set local maintenance_work_mem = '{{ var("maintenance_work_mem") }}'
{%- endmacro %}
