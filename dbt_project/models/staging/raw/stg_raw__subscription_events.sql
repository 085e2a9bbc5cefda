with source as (
    select * from {{ source('raw', 'subscription_events') }}
),

final as (
    select
        event_seq,
        subscription_id,
        tenant_id,
        action,
        plan_key,
        effective_at,
        at_period_end,
        source as event_source,
        received_at
    from source
)

select * from final
