{#- One row per closed month (one with finalized invoices) and the close's watermark: the
    lowest of its invoices' (a month closed more than once, a tenant's draft finalized
    later, keeps the lowest: a re-rate that changes nothing bills nothing), and the first
    month still open, the one after the newest closed month (DECISIONLOG.md, "The close").
    The close keeps those lowest values as it freezes the invoices (app.closed_months,
    migration 0023), so that a read costs the months, not every invoice ever frozen. -#}
{{ config(materialized='view') }}

with closed as (
    select
        period_start,
        period_end,
        finalized_at,
        {{ arrivals_watermark('arrivals_through') }} as arrivals_through,
        subscription_events_through
    from {{ ref('stg_app__closed_months') }}
),

final as (
    select
        closed.*,
        {{ dbt.dateadd('month', 1, '(select max(period_start) from closed)') }}
            as next_open_month
    from closed
)

select
    period_start, period_end, finalized_at, arrivals_through, subscription_events_through,
    next_open_month
from final
