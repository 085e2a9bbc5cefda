{#- One row per later event that reused a (tenant_id, idempotency_key) with a different
    payload. The first received event is the one billed; this lists what was ignored.
    Built from the retries alone (a partial index holds them), so it stays cheap. -#}
with retries as (
    select * from {{ ref('int_events_arrivals') }} where not is_first
),

final as (
    select
        retries.tenant_id,
        retries.idempotency_key,
        kept.event_seq as kept_event_seq,
        kept.metric as kept_metric,
        kept.amount as kept_amount,
        kept.event_ts as kept_event_ts,
        kept.received_at as kept_received_at,
        retries.event_seq as conflicting_event_seq,
        retries.metric as conflicting_metric,
        retries.amount as conflicting_amount,
        retries.event_ts as conflicting_event_ts,
        retries.received_at as conflicting_received_at
    from retries
    -- one index lookup per retry, rather than a hash of every kept event
    {{ join_one('inner', ref('int_events_arrivals'), 'kept',
                'kept.is_first and kept.tenant_id = retries.tenant_id
                 and kept.idempotency_key = retries.idempotency_key') }}
    where retries.metric <> kept.metric
       or retries.amount <> kept.amount
       or retries.event_ts <> kept.event_ts
       or coalesce(cast(retries.metadata as {{ dbt.type_string() }}), '')
          <> coalesce(cast(kept.metadata as {{ dbt.type_string() }}), '')
)

select
    tenant_id, idempotency_key, kept_event_seq, kept_metric, kept_amount, kept_event_ts,
    kept_received_at, conflicting_event_seq, conflicting_metric, conflicting_amount,
    conflicting_event_ts, conflicting_received_at
from final
