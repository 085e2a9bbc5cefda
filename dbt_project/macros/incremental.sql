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
             delete from {{ this }} where {{ in_monthly_window('period_start') }}
         {% else %} select 1 {% endif %}"
    ])) }}
{%- endmacro %}

{#- A table's indexes, each (name, `unique` or not, what follows `on <table>`), for
    create_index_hooks and drop_indexes_when_empty. The arrivals': their keys for the
    incremental batches, the retries for the conflicts mart, the batches for the watermark,
    the event times (BRIN) for the windows, and the UTC day, tenant and metric of the live
    reads (int_usage_live) and the preview. That one is keyed by the day first, so a day's
    batch adds its entries at the index's end; keyed by the tenant first, it wrote into
    every tenant's part of the index each day (DECISIONLOG.md, Deduplication). -#}
{% macro arrivals_indexes() -%}
    {{ return([
        ('int_events_arrivals_seq', 'unique', '(event_seq)'),
        ('int_events_arrivals_first_key', 'unique', '(tenant_id, idempotency_key) where is_first'),
        ('int_events_arrivals_retries', '', '(tenant_id, idempotency_key) where not is_first'),
        ('int_events_arrivals_batch', '', '(arrival_batch)'),
        ('int_events_arrivals_ts', '', 'using brin (event_ts)'),
        ('int_events_arrivals_day_tenant', '',
         '((' ~ utc_date('event_ts') ~ '), tenant_id, metric) where is_first'),
    ]) }}
{%- endmacro %}

{#- Post-hooks: create each index the model's table lacks, and drop the `retired` ones (names
    of indexes an earlier version created) it still has. The catalog is asked first:
    `create index if not exists` locks the table before it finds the index there, and
    waits behind an autovacuum of it, a second (deadlock_timeout) until it cancels that
    vacuum, in every run that follows a big batch. -#}
{% macro create_index_hooks(indexes, retired=[]) -%}
    {%- set statements = [] -%}
    {%- for name in retired -%}
        {%- do statements.append(if_index(name, 'is not null',
                                          'drop index {{ this.schema }}.' ~ name)) -%}
    {%- endfor -%}
    {%- for name, kind, definition in indexes -%}
        {%- do statements.append(if_index(name, 'is null', 'create ' ~ kind ~ ' index ' ~ name
                                          ~ ' on {{ this }} ' ~ definition)) -%}
    {%- endfor -%}
    {{ return(statements) }}
{%- endmacro %}

{#- A hook's `statement`, run when the model's index `name` `is null` (missing) or `is not
    null` in the catalog. -#}
{% macro if_index(name, test, statement) -%}
    {{ return("do $$ begin if to_regclass('{{ this.schema }}." ~ name ~ "') " ~ test
              ~ " then " ~ statement ~ "; end if; end $$") }}
{%- endmacro %}

{#- A pre-hook: when an incremental model's table is empty (is_empty), drop its indexes, so
    that the run's insert is a bulk load and the post-hooks (create_index_hooks) build each
    index once. -#}
{% macro drop_indexes_when_empty(indexes) -%}
    {%- set names = [] -%}
    {%- for name, kind, definition in indexes -%}
        {%- do names.append("{{ this.schema }}." ~ name) -%}
    {%- endfor -%}
    {{ return("{% if is_incremental() and is_empty(this) %}
        drop index if exists " ~ names | join(', ') ~ "
    {% else %} select 1 {% endif %}") }}
{%- endmacro %}

{#- Whether a relation holds no row (asked when dbt executes; false while it only parses). -#}
{% macro is_empty(relation) -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set found = run_query("select 1 from " ~ relation ~ " limit 1") -%}
    {{ return(found.rows | length == 0) }}
{%- endmacro %}
