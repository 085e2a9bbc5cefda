{#- How an incremental model replaces whole days or months (`column`) that a run rebuilds:
    PostgreSQL deletes that column's values and inserts the new rows; Spark overwrites the
    Parquet partitions of those values (its file formats without downloads have no delete). -#}
{% macro replace_by(column) -%}
    {{ return(adapter.dispatch('replace_by', 'billing')(column)) }}
{%- endmacro %}
{% macro default__replace_by(column) -%}
    {{ return({'incremental_strategy': 'delete+insert', 'unique_key': column}) }}
{%- endmacro %}
{% macro spark__replace_by(column) -%}
    {{ return({'incremental_strategy': 'insert_overwrite', 'partition_by': [column]}) }}
{%- endmacro %}

{#- Indexes are PostgreSQL's: a post-hook that creates them runs there and nowhere else. -#}
{% macro postgres_only(statements) -%}
    {{ return(statements if target.type == 'postgres' else []) }}
{%- endmacro %}
