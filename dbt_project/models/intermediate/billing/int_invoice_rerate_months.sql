{#- One row per tenant and finalized month (within the adjustment lookback before the run's
    first month) for which something arrived after finalization: usage, or a subscription
    change. Those months are re-rated so that the difference can be billed as adjustments. -#}
with finalized as (
    select * from {{ ref('stg_app__finalized_invoices') }}
),

events as (
    select * from {{ ref('int_events_deduplicated') }}
),

subscription_events as (
    select * from {{ ref('stg_raw__subscription_events') }}
),

candidates as (
    select tenant_id, period_start, period_end, min(finalized_at) as finalized_at
    from finalized
    where period_start < {{ ts_literal(var('min_month')) }}
      and period_start >= {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                         ts_literal(var('min_month'))) }}
    group by tenant_id, period_start, period_end
),

late_usage as (
    select distinct candidates.tenant_id, candidates.period_start
    from candidates
    inner join events
        on events.tenant_id = candidates.tenant_id
       and events.event_ts >= candidates.period_start
       and events.event_ts < candidates.period_end
       and events.received_at > candidates.finalized_at
),

late_subscription_changes as (
    select distinct candidates.tenant_id, candidates.period_start
    from candidates
    inner join subscription_events
        on subscription_events.tenant_id = candidates.tenant_id
       and subscription_events.effective_at < candidates.period_end
       and subscription_events.received_at > candidates.finalized_at
),

final as (
    select tenant_id, period_start from late_usage
    union
    select tenant_id, period_start from late_subscription_changes
)

select tenant_id, period_start from final
