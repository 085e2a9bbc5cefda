{#- Models land in the schema their folder names (staging, intermediate, marts), as is:
    BI tools and the contract address `marts.fct_invoices`, not `analytics_marts`. The
    preview (macros/preview.sql) builds the monthly run's models in the schema `preview`;
    what they read from the daily run stays where it is. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if is_preview() and node is not none and node.resource_type == 'model'
          and node.config.meta.get('run') == 'monthly' -%}
        preview
    {%- elif custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
