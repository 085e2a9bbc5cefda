{#- One row per event received, retries included, each marked whether it is the first
    arrival of its (tenant_id, idempotency_key): the one that counts, forever. Incremental
    on arrival time: a run reads the events received since the newest one stored, less the
    lookback (a batch whose transaction committed late is stamped earlier), and skips those
    stored already. The post-hook refreshes the statistics of event_ts (a ten-bucket sample,
    milliseconds): the day just appended lies past the old histogram, and without it
    PostgreSQL estimates one row for it and plans the day's models as nested loops. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook=postgres_only([
            "create unique index if not exists int_events_arrivals_seq
                 on {{ this }} (event_seq)",
            "create unique index if not exists int_events_arrivals_first_key
                 on {{ this }} (tenant_id, idempotency_key) where is_first",
            "create index if not exists int_events_arrivals_retries
                 on {{ this }} (tenant_id, idempotency_key) where not is_first",
            "create index if not exists int_events_arrivals_ts
                 on {{ this }} using brin (event_ts)",
            "alter table {{ this }} alter column event_ts set statistics 10",
            "analyze {{ this }} (event_ts)",
        ]),
    )
}}

{% if is_incremental() %}
{#- The newest stored arrival, found through the unique index on event_seq. -#}
{%- set newest_seq = "(select coalesce(max(event_seq), 0) from " ~ this ~ ")" -%}
with events as (
    select received.*
    from {{ ref('stg_raw__events') }} as received
    where received.received_at >= coalesce(
            (select received_at from {{ this }} where event_seq = {{ newest_seq }}),
            {{ ts_literal('1970-01-01') }}
          ) - interval '{{ var("dedup_lookback_hours") }}' hour
),

unstored as (
    -- newer than anything stored, or else looked up one by one in the unique index
    select events.*
    from events
    {{ join_one('left', this, 'stored',
                'stored.event_seq = events.event_seq and events.event_seq <= ' ~ newest_seq) }}
    where stored.found is null
),
{% else %}
with unstored as (
    select * from {{ ref('stg_raw__events') }}
),
{% endif %}

ranked as (
    select
        unstored.*,
        row_number() over (
            partition by tenant_id, idempotency_key order by received_at, event_seq
        ) as arrival_rank
    from unstored
),

{% if is_incremental() %}
kept_before as (
    -- a key first seen in an earlier run is never first again (lateral: index lookups)
    select ranked.event_seq
    from ranked
    {{ join_one('inner', this, 'kept',
                'kept.is_first and kept.tenant_id = ranked.tenant_id
                 and kept.idempotency_key = ranked.idempotency_key') }}
    where ranked.arrival_rank = 1
),
{% endif %}

final as (
    select
        ranked.event_seq,
        ranked.tenant_id,
        ranked.metric,
        ranked.amount,
        ranked.event_ts,
        ranked.idempotency_key,
        ranked.metadata,
        ranked.received_at,
        ranked.arrival_rank = 1
        {% if is_incremental() %}
            and not exists (
                select 1 from kept_before where kept_before.event_seq = ranked.event_seq
            )
        {% endif %}
            as is_first
    from ranked
)

select * from final
