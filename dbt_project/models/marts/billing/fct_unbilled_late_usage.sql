{#- One row per tenant, metric and closed month with usage that arrived after the month's
    close and that no invoice will bill, with the reason: `past_adjustment_lookback`, its
    month lies more than `adjustment_lookback_months` before the next open month, so no
    run re-rates it any more. Never dropped silently (DECISIONLOG.md, "The close"). A view:
    it shows what the closes and arrivals say now. -#}
{{ config(materialized='view') }}

with closed as (
    select * from {{ ref('int_closed_months') }}
),

late_usage as (
    select * from {{ ref('int_late_usage') }}
),

final as (
    -- months older than the oldest a run of the next open month still re-rates
    select
        late_usage.tenant_id,
        late_usage.metric,
        late_usage.period_start,
        'past_adjustment_lookback' as reason,
        late_usage.event_count,
        late_usage.amount_sum
    from late_usage
    inner join closed on closed.period_start = late_usage.period_start
    where late_usage.period_start < {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                                   'closed.next_open_month') }}
)

select tenant_id, metric, period_start, reason, event_count, amount_sum from final
