{#- One row per subscription and plan it was on: [valid_from, valid_to), split where the
    subscription's trial ends (`in_trial` before). Built from the whole subscription history,
    so a change recorded late still lands where it belongs. The first cancellation ends the
    subscription: a plan change scheduled after it is dropped (DECISIONLOG.md,
    "Subscriptions"). A change to the plan in effect is none. The trial is the
    subscription's: the plan version it started on sets its length (`trial_days` from the
    start) and whether its usage is billed; a trial bills no base fee, and a subscription
    that ends before its trial does bills nothing (`bills_usage` false everywhere)
    (DECISIONLOG.md, "Trials").
    A view in a run; in the preview a CTE of the preview's one view (monthly_view), where
    it reads the preview's tenant alone, and not the run's view, which the runs read. -#}
{{ config(materialized=monthly_view()) }}

with events as (
    -- in the preview the tenant's alone: a subscription is one tenant's, and its intervals
    -- are computed per subscription (the windows below), which a condition on the tenant
    -- after them cannot reach (10,000 subscriptions: 90-140 ms of every read)
    select * from {{ ref('stg_raw__subscription_events') }}
    where {{ preview_tenant('tenant_id') }}
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

standing as (
    -- of the changes at one instant the last recorded stands
    select *
    from ordered
    where next_effective_at is null or next_effective_at > effective_at
),

moves as (
    -- a change to the plan in effect is no change: it neither splits the month (each part
    -- priced on its own) nor starts a new yearly period (DECISIONLOG.md, "Subscriptions")
    select
        standing.*,
        lag(plan_key) over (
            partition by subscription_id order by effective_at, event_seq
        ) as previous_plan_key
    from standing
),

bounded as (
    select
        moves.*,
        lead(effective_at) over (
            partition by subscription_id order by effective_at, event_seq
        ) as valid_to
    from moves
    where previous_plan_key is null or previous_plan_key <> plan_key
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
        bounded.subscription_id,
        bounded.tenant_id,
        bounded.plan_key,
        bounded.effective_at as valid_from,
        coalesce(bounded.valid_to, bounded.ended_at, {{ ts_infinity() }}) as valid_to,
        coalesce(trials.trial_end, bounded.effective_at) as trial_end,
        coalesce(trials.trial_bills_usage, false) as trial_bills_usage,
        coalesce(bounded.ended_at <= trials.trial_end, false) as ended_in_trial
    from bounded
    left join trials on trials.subscription_id = bounded.subscription_id
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
