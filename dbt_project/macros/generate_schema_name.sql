{#- Models land in the schema their folder names (staging, intermediate, marts), as is:
    BI tools and the contract address `marts.fct_invoices`, not `analytics_marts`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
