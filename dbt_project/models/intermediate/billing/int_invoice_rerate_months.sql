{#- One row per tenant and closed month (one with finalized invoices, within the adjustment
    lookback before the run's first month) for which something arrived that the month's
    close did not price: usage stored in a later arrival batch than its watermark, or a
    subscription change recorded after it (DECISIONLOG.md, "The close"), whether the tenant
    has an invoice that month or not. Those months are re-rated so that the difference can
    be billed as adjustments; one that changed nothing gives no line. -#}
with closed as (
    select * from {{ ref('int_closed_months') }}
),

late_usage_months as (
    select * from {{ ref('int_late_usage') }}
),

subscription_events as (
    select * from {{ ref('stg_raw__subscription_events') }}
),

candidates as (
    select *
    from closed
    where period_start < {{ ts_literal(var('min_month')) }}
      and period_start >= {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                         ts_literal(var('min_month'))) }}
),

late_usage as (
    select distinct tenant_id, period_start
    from late_usage_months
    where period_start in (select period_start from candidates)
),

late_subscription_changes as (
    select distinct subscription_events.tenant_id, candidates.period_start
    from candidates
    inner join subscription_events
        on subscription_events.effective_at < candidates.period_end
       and (
           subscription_events.event_seq > candidates.subscription_events_through
           or candidates.subscription_events_through is null
              and subscription_events.received_at > candidates.finalized_at
       )
),

final as (
    select tenant_id, period_start from late_usage
    union
    select tenant_id, period_start from late_subscription_changes
)

select tenant_id, period_start from final
