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

{#- A pre-hook for a model incremental by month (`period_start`): empty the run's months
    first, so a month that has no row any more keeps none (delete+insert alone deletes only
    the months it inserts). PostgreSQL only: Spark's Parquet has no delete. -#}
{% macro empty_run_months() -%}
    {{ return(postgres_only([
        "{% if is_incremental() %}
             delete from {{ this }}
             where period_start >= {{ ts_literal(var('min_month')) }}
               and period_start < {{ ts_literal(var('max_month')) }}
         {% else %} select 1 {% endif %}"
    ])) }}
{%- endmacro %}
