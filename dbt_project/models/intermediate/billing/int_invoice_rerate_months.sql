{#- One row per tenant and closed month (one with finalized invoices, within the adjustment
    lookback before the run's first month) for which something arrived that the month's
    close did not price: usage stored in a later arrival batch than its watermark, or a
    subscription change recorded after it (DECISIONLOG.md, "The close"), whether the tenant
    has an invoice that month or not. Those months are re-rated so that the difference can
    be billed as adjustments; one that changed nothing gives no line. -#}
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
    -- a month closed more than once (a tenant's draft finalized later) keeps its lowest
    -- watermark: a re-rate that changes nothing bills nothing
    select
        period_start, period_end, min(finalized_at) as finalized_at,
        min({{ arrivals_watermark('arrivals_through') }}) as arrivals_through,
        min(subscription_events_through) as subscription_events_through
    from finalized
    where period_start < {{ ts_literal(var('min_month')) }}
      and period_start >= {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                         ts_literal(var('min_month'))) }}
    group by period_start, period_end
),

late_usage as (
    -- stored in a batch after the close's (the index on arrival_batch finds them)
    select distinct events.tenant_id, candidates.period_start
    from candidates
    inner join events
        on events.arrival_batch > candidates.arrivals_through
       and events.event_ts >= candidates.period_start
       and events.event_ts < candidates.period_end
    union
    -- a month closed before watermarks: received after it was finalized
    select distinct events.tenant_id, candidates.period_start
    from candidates
    inner join events
        on candidates.arrivals_through is null
       and events.received_at > candidates.finalized_at
       and events.event_ts >= candidates.period_start
       and events.event_ts < candidates.period_end
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
