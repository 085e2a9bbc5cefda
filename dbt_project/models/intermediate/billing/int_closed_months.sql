{#- One row per closed month (one with finalized invoices) and the close's watermark: the
    lowest of its invoices' (a month closed more than once, a tenant's draft finalized
    later, keeps the lowest: a re-rate that changes nothing bills nothing), and the first
    month still open, the one after the newest closed month (DECISIONLOG.md, "The close"). -#}
{{ config(materialized='view') }}

with finalized as (
    select * from {{ ref('stg_app__finalized_invoices') }}
),

closed as (
    select
        period_start,
        period_end,
        min(finalized_at) as finalized_at,
        min({{ arrivals_watermark('arrivals_through') }}) as arrivals_through,
        min(subscription_events_through) as subscription_events_through
    from finalized
    group by period_start, period_end
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
