{#- One row per subscription and plan it was on: [valid_from, valid_to), split where the
    subscription's trial ends (`in_trial` before). Built from the whole subscription history,
    so a change recorded late still lands where it belongs. The first cancellation ends the
    subscription: a plan change scheduled after it is dropped (DECISIONLOG.md,
    "Subscriptions"). The trial is the subscription's: the plan version it started on sets
    its length (`trial_days` from the start) and whether its usage is billed; a trial
    bills no base fee, and a subscription that ends before its trial does bills nothing
    (`bills_usage` false everywhere) (DECISIONLOG.md, "Trials"). -#}
with events as (
    select * from {{ ref('stg_raw__subscription_events') }}
),

plan_versions as (
    select * from {{ ref('stg_app__plan_versions') }}
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

trials as (
    -- without a trial it ends where the subscription starts
    select
        effective.subscription_id,
        {{ dbt.dateadd('day', 'plan_versions.trial_days', 'effective.effective_at') }}
            as trial_end,
        plan_versions.trial_bills_usage
    from effective
    inner join plan_versions
        on plan_versions.plan_key = effective.plan_key
       and plan_versions.effective_from <= effective.effective_at
       and plan_versions.effective_to > effective.effective_at
    where effective.action = 'start'
),

plan_intervals as (
    select
        ordered.subscription_id,
        ordered.tenant_id,
        ordered.plan_key,
        ordered.effective_at as valid_from,
        coalesce(ordered.next_effective_at, ordered.ended_at, {{ ts_infinity() }}) as valid_to,
        coalesce(trials.trial_end, ordered.effective_at) as trial_end,
        coalesce(trials.trial_bills_usage, false) as trial_bills_usage,
        coalesce(ordered.ended_at <= trials.trial_end, false) as ended_in_trial
    from ordered
    left join trials on trials.subscription_id = ordered.subscription_id
    where ordered.next_effective_at is null or ordered.next_effective_at > ordered.effective_at
),

split as (
    -- the part of an interval before the trial's end, and the part after it
    select
        subscription_id, tenant_id, plan_key, valid_from,
        case when valid_to < trial_end then valid_to else trial_end end as valid_to,
        true as in_trial,
        trial_bills_usage and not ended_in_trial as bills_usage
    from plan_intervals
    where valid_from < trial_end

    union all

    select
        subscription_id, tenant_id, plan_key,
        case when valid_from > trial_end then valid_from else trial_end end as valid_from,
        valid_to,
        false as in_trial,
        true as bills_usage
    from plan_intervals
    where valid_to > trial_end
),

final as (
    select subscription_id, tenant_id, plan_key, valid_from, valid_to, in_trial, bills_usage
    from split
)

select * from final
