{#- One row per tenant and idempotency key: the first event received with it. -#}
{{ config(materialized='view') }}

with arrivals as (
    select * from {{ ref('int_events_arrivals') }}
),

final as (
    select
        event_seq, tenant_id, metric, amount, event_ts, idempotency_key, metadata,
        received_at, arrival_batch
    from arrivals
    where is_first
)

select * from final
