{#- One row per later event that reused a (tenant_id, idempotency_key) with a different
    payload. The first received event is the one billed; this lists what was ignored.
    Incremental on arrival time, over the same window the deduplication just read. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='conflicting_event_seq',
        on_schema_change='fail',
    )
}}

with events as (
    select * from {{ ref('stg_raw__events') }}
    {% if is_incremental() %}
    where received_at >= (
        select coalesce(max(received_at), cast('-infinity' as timestamptz))
        from {{ ref('int_events_deduplicated') }}
    ) - interval '{{ var("dedup_lookback_hours") }} hours'
    {% endif %}
),

kept as (
    select * from {{ ref('int_events_deduplicated') }}
),

final as (
    select
        events.tenant_id,
        events.idempotency_key,
        kept.event_seq as kept_event_seq,
        kept.metric as kept_metric,
        kept.amount as kept_amount,
        kept.event_ts as kept_event_ts,
        kept.received_at as kept_received_at,
        events.event_seq as conflicting_event_seq,
        events.metric as conflicting_metric,
        events.amount as conflicting_amount,
        events.event_ts as conflicting_event_ts,
        events.received_at as conflicting_received_at
    from events
    inner join kept
        on kept.tenant_id = events.tenant_id
       and kept.idempotency_key = events.idempotency_key
    where events.event_seq <> kept.event_seq
      and (
          events.metric <> kept.metric
          or events.amount <> kept.amount
          or events.event_ts <> kept.event_ts
          or coalesce(cast(events.metadata as {{ dbt.type_string() }}), '')
             <> coalesce(cast(kept.metadata as {{ dbt.type_string() }}), '')
      )
)

select
    tenant_id, idempotency_key, kept_event_seq, kept_metric, kept_amount, kept_event_ts,
    kept_received_at, conflicting_event_seq, conflicting_metric, conflicting_amount,
    conflicting_event_ts, conflicting_received_at
from final
