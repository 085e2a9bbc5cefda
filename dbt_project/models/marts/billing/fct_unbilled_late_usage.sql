{#- One row per tenant, metric and closed month with usage that arrived after the month's
    close and that no invoice will bill, with the reason: `past_adjustment_lookback`, its
    month lies more than `adjustment_lookback_months` before the next open month, so no
    run re-rates it any more. Never dropped silently (DECISIONLOG.md, "The close"). A view:
    it shows what the closes and arrivals say now. -#}
{{ config(materialized='view') }}

with finalized as (
    select * from {{ ref('stg_app__finalized_invoices') }}
),

events as (
    select * from {{ ref('int_events_deduplicated') }}
),

closed as (
    select
        period_start, period_end, min(finalized_at) as finalized_at,
        min({{ arrivals_watermark('arrivals_through') }}) as arrivals_through
    from finalized
    group by period_start, period_end
),

window_start as (
    -- the oldest month a run of the next open month still re-rates
    select {{ dbt.dateadd('month', 1 - var('adjustment_lookback_months'),
                          'max(period_start)') }} as month_start
    from closed
),

past_window as (
    select closed.*
    from closed
    cross join window_start
    where closed.period_start < window_start.month_start
),

late as (
    select events.tenant_id, events.metric, past_window.period_start, events.amount
    from past_window
    inner join events
        on events.event_ts >= past_window.period_start
       and events.event_ts < past_window.period_end
       and (
           events.arrival_batch > past_window.arrivals_through
           or past_window.arrivals_through is null
              and events.received_at > past_window.finalized_at
       )
),

final as (
    select
        tenant_id,
        metric,
        period_start,
        'past_adjustment_lookback' as reason,
        cast(count(*) as bigint) as event_count,
        cast(sum(amount) as {{ decimal_type() }}) as amount_sum
    from late
    group by tenant_id, metric, period_start
)

select tenant_id, metric, period_start, reason, event_count, amount_sum from final
