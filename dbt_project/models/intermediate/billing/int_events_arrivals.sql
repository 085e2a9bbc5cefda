{#- One row per event received, retries included, each marked whether it is the first
    arrival of its (tenant_id, idempotency_key): the one that counts, forever. Appended in
    batches: a run appends the events not stored yet (pending_arrivals), numbered with the
    next `arrival_batch` and stamped with the batch's horizon. A finalized invoice records
    the newest batch it priced (the close's watermark). The post-hook refreshes the
    statistics of event_ts (a ten-bucket sample, milliseconds): the day just appended lies
    past the old histogram, and without it PostgreSQL estimates one row for it and plans
    the day's models as nested loops. The live reads (int_usage_live) find a tenant's
    metric and days by the index on the UTC day, tenant and metric (arrivals_indexes).
    The first batch of a warehouse (every event it holds when its first daily run comes)
    is loaded as a bulk load: the indexes are dropped while the arrivals are empty and
    built once after the insert, rather than updated row by row (1M events: the insert
    6.4 s with them). The last post-hooks summarize the new page ranges of the BRIN
    indexes the next reads go by (summarize_new_ranges): the arrivals' event times (a
    run's days) and raw.events' received_at (what arrived since). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook=postgres_only([drop_indexes_when_empty(arrivals_indexes())]),
        post_hook=postgres_only(create_index_hooks(
            arrivals_indexes(), retired=['int_events_arrivals_usage_day']) + [
            "alter table {{ this }} alter column event_ts set statistics 10",
            "analyze {{ this }} (event_ts)",
            "{{ summarize_new_ranges(this, 'int_events_arrivals_ts') }}",
            "{{ summarize_new_ranges(source('raw', 'events'), 'events_received_at_brin') }}",
        ]),
    )
}}

{#- read before the batch's statement begins (DECISIONLOG.md, "The close") -#}
{%- set horizon = arrivals_horizon() -%}

{#- an empty table stores nothing: the first batch reads no stored arrivals, whose lookups
    would cost a probe per event (10M events: 17 s) -#}
{%- set stored = this if is_incremental() and not is_empty(this) else none -%}

with unstored as (
    {{ unstored_arrivals(stored) }}
),

pending as (
    {{ pending_arrivals('unstored', stored) }}
),

final as (
    select
        pending.*,
        {% if is_incremental() -%}
            (select coalesce(max(arrival_batch), 0) + 1 from {{ this }})
        {%- else -%}
            cast(1 as {{ dbt.type_bigint() }})
        {%- endif %} as arrival_batch,
        {{ horizon }} as batch_horizon
    from pending
)

select * from final
