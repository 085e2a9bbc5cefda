{#- Each (tenant_id, idempotency_key) once, forever: the first received wins. Incremental on
    arrival time: only events received since the newest kept one (minus the lookback) are
    read, and keys kept in earlier runs are never inserted again. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook=[
            "create unique index if not exists int_events_deduplicated_key
                 on {{ this }} (tenant_id, idempotency_key)",
            "create index if not exists int_events_deduplicated_ts
                 on {{ this }} (event_ts)",
        ],
    )
}}

with events as (
    select * from {{ ref('stg_raw__events') }}
    {% if is_incremental() %}
    where received_at >= (
        select coalesce(max(received_at), cast('-infinity' as timestamptz)) from {{ this }}
    ) - interval '{{ var("dedup_lookback_hours") }} hours'
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
        ranked.received_at
    from ranked
    where ranked.arrival_rank = 1
    {% if is_incremental() %}
      and not exists (
          select 1 from {{ this }} as kept
          where kept.tenant_id = ranked.tenant_id
            and kept.idempotency_key = ranked.idempotency_key
      )
    {% endif %}
)

select * from final
