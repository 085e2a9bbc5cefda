{#- One row per event received, retries included, each marked whether it is the first
    arrival of its (tenant_id, idempotency_key): the one that counts, forever. Incremental
    on arrival time: a run reads the events received since the newest one stored, less the
    lookback (a batch whose transaction committed late is stamped earlier), and skips those
    stored already. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook=[
            "create unique index if not exists int_events_arrivals_seq
                 on {{ this }} (event_seq)",
            "create unique index if not exists int_events_arrivals_first_key
                 on {{ this }} (tenant_id, idempotency_key) where is_first",
            "create index if not exists int_events_arrivals_retries
                 on {{ this }} (tenant_id, idempotency_key) where not is_first",
            "create index if not exists int_events_arrivals_ts
                 on {{ this }} using brin (event_ts)",
        ],
    )
}}

with events as (
    select * from {{ ref('stg_raw__events') }} as received
    {% if is_incremental() %}
    where received_at >= (
        select coalesce(max(received_at), cast('-infinity' as timestamptz)) from {{ this }}
    ) - interval '{{ var("dedup_lookback_hours") }} hours'
      and not exists (
          select 1 from {{ this }} as stored where stored.event_seq = received.event_seq
      )
    {% endif %}
),

ranked as (
    select
        events.*,
        row_number() over (
            partition by tenant_id, idempotency_key order by received_at, event_seq
        ) as arrival_rank
    from events
),

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
                select 1 from {{ this }} as kept
                where kept.is_first
                  and kept.tenant_id = ranked.tenant_id
                  and kept.idempotency_key = ranked.idempotency_key
            )
        {% endif %}
            as is_first
    from ranked
)

select * from final
