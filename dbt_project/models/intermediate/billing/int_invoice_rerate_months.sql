{#- One row per tenant and closed month (one with finalized invoices, within the adjustment
    lookback before the month the run bills adjustments on) for which something arrived
    that the month's close did not price: usage stored in a later arrival batch than its
    watermark, or a subscription change recorded after it that takes effect before the
    month ends (or ends the subscription in its trial, which reaches back to its start)
    (DECISIONLOG.md, "The close"), whether the tenant has an invoice that month or not;
    not a month whose invoice for the tenant a close held and no close has frozen since.
    Those months are re-rated so that the difference can be billed as adjustments; one that
    changed nothing gives no line. -#}
{#- the closed months a run may re-rate: before the month it bills adjustments on (its
    first, or of several the next open one: adjustment_month), within the lookback -#}
{%- set billed_on = adjustment_month(ref('int_closed_months')) -%}
{%- set in_lookback -%}
    period_start < {{ billed_on }}
      and period_start >= {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                         billed_on) }}
{%- endset %}

with closed as (
    select * from {{ ref('int_closed_months') }}
),

late_usage_months as (
    select * from {{ ref('int_late_usage') }}
),

subscription_events as (
    select * from {{ ref('stg_raw__subscription_events') }}
    where {{ preview_tenant('tenant_id') }}
),

intervals as (
    select * from {{ ref('int_subscription_intervals') }}
),

ended_in_trial as (
    -- a subscription that ended in its trial bills nothing from its start: a change to it
    -- reaches back there (only its trial's intervals remain)
    select subscription_id, min(valid_from) as started_at
    from intervals
    group by subscription_id
    having min(case when in_trial then 1 else 0 end) = 1
       and max(case when bills_usage then 1 else 0 end) = 0
),

candidates as (
    select *
    from closed
    where {{ in_lookback }}
),

late_usage as (
    -- the candidates' months (late usage is of closed months alone), as conditions that
    -- PostgreSQL pushes into int_late_usage: a subquery's (`in (select ...)`) stays
    -- outside it, and a read would look for late usage in every month ever closed
    select distinct tenant_id, period_start
    from late_usage_months
    where {{ preview_tenant('tenant_id') }}
      and {{ in_lookback }}
),

late_subscription_changes as (
    select distinct subscription_events.tenant_id, candidates.period_start
    from candidates
    cross join subscription_events
    left join ended_in_trial
        on ended_in_trial.subscription_id = subscription_events.subscription_id
    where coalesce(ended_in_trial.started_at, subscription_events.effective_at)
            < candidates.period_end
       and (
           subscription_events.event_seq > candidates.subscription_events_through
           or candidates.subscription_events_through is null
              and subscription_events.received_at > candidates.finalized_at
       )
),

held as (
    -- a tenant's invoice a close held, not frozen since: its month is priced again by its
    -- own runs, and re-rated once a close freezes it (DECISIONLOG.md, "A held month is not
    -- re-rated")
    select held.tenant_id, held.period_start
    from {{ ref('stg_app__held_invoices') }} as held
    where {{ preview_tenant('held.tenant_id') }}
      and not exists (
          select 1 from {{ ref('stg_app__finalized_invoices') }} as frozen
          where frozen.tenant_id = held.tenant_id
            and frozen.period_start = held.period_start
      )
),

final as (
    select tenant_id, period_start from late_usage
    union
    select tenant_id, period_start from late_subscription_changes
)

select final.tenant_id, final.period_start
from final
where not exists (
    select 1 from held
    where held.tenant_id = final.tenant_id
      and held.period_start = final.period_start
)
