{#- One row per subscription and plan it was on: [valid_from, valid_to). Built from the
    whole subscription history, so a change recorded late still lands where it belongs. -#}
with events as (
    select * from {{ ref('stg_raw__subscription_events') }}
),

effective as (
    select
        subscription_id,
        tenant_id,
        action,
        plan_key,
        event_seq,
        case
            when action = 'cancel' and at_period_end
                then {{ dbt.dateadd('month', 1, dbt.date_trunc('month', 'effective_at')) }}
            else effective_at
        end as effective_at
    from events
),

ordered as (
    select
        effective.*,
        lead(effective_at) over (
            partition by subscription_id order by effective_at, event_seq
        ) as next_effective_at
    from effective
),

final as (
    select
        subscription_id,
        tenant_id,
        plan_key,
        effective_at as valid_from,
        coalesce(next_effective_at, {{ ts_infinity() }}) as valid_to
    from ordered
    where action in ('start', 'change_plan')
      and (next_effective_at is null or next_effective_at > effective_at)
)

select * from final
