{#- One row per subscription, plan and calendar month it was active in (a segment), for the
    months in [min_month, max_month) and the finalized months being re-rated. Carries the
    plan version in effect at the segment's start and the fraction of the month it covers.
    A trial's end splits a segment (`in_trial`; `bills_usage`: int_subscription_intervals). -#}
with intervals as (
    select * from {{ ref('int_subscription_intervals') }}
),

plan_versions as (
    select * from {{ ref('stg_app__plan_versions') }}
),

rerate as (
    select * from {{ ref('int_invoice_rerate_months') }}
),

bounds as (
    select
        greatest(
            {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                           run_month_start()) }},
            {{ dbt.date_trunc('month', 'min(valid_from)') }}
        ) as first_month,
        least(
            {{ run_month_end() }},
            {{ dbt.dateadd('month', 1, dbt.date_trunc('month', dbt.current_timestamp())) }}
        ) as end_month
    from intervals
),

months as (
    select spine.month_start
    from bounds
    cross join lateral (
        {{ month_spine('bounds.first_month', 'bounds.end_month') }}
    ) as spine
),

clipped as (
    select
        intervals.subscription_id,
        intervals.tenant_id,
        intervals.plan_key,
        intervals.valid_from as subscription_interval_start,
        intervals.valid_to as subscription_interval_end,
        intervals.in_trial,
        intervals.bills_usage,
        months.month_start as period_start,
        {{ dbt.dateadd('month', 1, 'months.month_start') }} as period_end,
        greatest(intervals.valid_from, months.month_start) as segment_start,
        least(intervals.valid_to, {{ dbt.dateadd('month', 1, 'months.month_start') }})
            as segment_end
    from intervals
    inner join months
        on intervals.valid_from < {{ dbt.dateadd('month', 1, 'months.month_start') }}
       and intervals.valid_to > months.month_start
),

final as (
    select
        {{ dbt.hash(dbt.concat(["clipped.subscription_id", "'|'",
            ts_text('clipped.segment_start')])) }} as segment_id,
        clipped.subscription_id,
        clipped.tenant_id,
        clipped.plan_key,
        plan_versions.plan_version,
        plan_versions.plan_name,
        plan_versions.billing_interval,
        plan_versions.currency,
        plan_versions.base_price,
        plan_versions.minimum_commitment,
        clipped.period_start,
        clipped.period_end,
        clipped.segment_start,
        clipped.segment_end,
        clipped.subscription_interval_start,
        clipped.subscription_interval_end,
        clipped.in_trial,
        clipped.bills_usage,
        clipped.period_start < {{ run_month_start() }} as is_rerate,
        {{ epoch_seconds('clipped.segment_end') }} - {{ epoch_seconds('clipped.segment_start') }}
            as active_seconds,
        {{ epoch_seconds('clipped.period_end') }} - {{ epoch_seconds('clipped.period_start') }}
            as period_seconds
    from clipped
    inner join plan_versions
        on plan_versions.plan_key = clipped.plan_key
       and plan_versions.effective_from <= clipped.segment_start
       and plan_versions.effective_to > clipped.segment_start
    where clipped.segment_start < clipped.segment_end
      and (
          clipped.period_start >= {{ run_month_start() }}
          or exists (
              select 1 from rerate
              where rerate.tenant_id = clipped.tenant_id
                and rerate.period_start = clipped.period_start
          )
      )
)

select * from final
