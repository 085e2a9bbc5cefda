{#- One row per subscription and plan it was on: [valid_from, valid_to). Built from the
    whole subscription history, so a change recorded late still lands where it belongs. The
    first cancellation ends the subscription: a plan change scheduled after it is dropped
    (DECISIONLOG.md, "Subscriptions"). -#}
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

ended as (
    select subscription_id, min(effective_at) as ended_at
    from effective
    where action = 'cancel'
    group by subscription_id
),

plans as (
    select effective.*, ended.ended_at
    from effective
    left join ended on ended.subscription_id = effective.subscription_id
    where effective.action in ('start', 'change_plan')
      and (ended.ended_at is null or effective.effective_at < ended.ended_at)
),

ordered as (
    select
        plans.*,
        lead(effective_at) over (
            partition by subscription_id order by effective_at, event_seq
        ) as next_effective_at
    from plans
),

final as (
    select
        subscription_id,
        tenant_id,
        plan_key,
        effective_at as valid_from,
        coalesce(next_effective_at, ended_at, {{ ts_infinity() }}) as valid_to
    from ordered
    where next_effective_at is null or next_effective_at > effective_at
)

select * from final
