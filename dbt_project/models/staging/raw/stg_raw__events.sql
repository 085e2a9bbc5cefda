with source as (
    select * from {{ source('raw', 'events') }}
),

final as (
    select
        event_seq,
        tenant_id,
        metric,
        cast(amount as {{ decimal_type() }}) as amount,
        event_ts,
        idempotency_key,
        metadata,
        received_at
    from source
)

select * from final
