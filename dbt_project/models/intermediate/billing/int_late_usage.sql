{#- One row per tenant, metric and closed month with usage its close did not price: stored
    in a later arrival batch than the close's watermark, or, for a month closed before
    watermarks, received after it was finalized. The one statement of what is late: the
    monthly run re-rates the months it reaches (int_invoice_rerate_months), the rest are
    listed (fct_unbilled_late_usage). Each branch reads the events itself, not a CTE both
    share: PostgreSQL materializes a CTE read twice, every stored event, before a reader's
    condition on the tenant (the upcoming invoice's) reaches it (10M events: 6 s a read).
    The months' UTC days are conditions too, the same as their instants: the index a
    tenant's events are found by is keyed by the UTC day first (arrivals_indexes), and
    with them a closed month leads the plan, whichever tenant the planner estimated. -#}
{{ config(materialized='view') }}

{#- an event of the closed month: its instant, and its UTC day, the same condition -#}
{%- set in_month -%}
    events.event_ts >= closed.period_start
       and events.event_ts < closed.period_end
       and {{ utc_date('events.event_ts') }} >= {{ utc_date('closed.period_start') }}
       and {{ utc_date('events.event_ts') }} < {{ utc_date('closed.period_end') }}
{%- endset %}

with closed as (
    select * from {{ ref('int_closed_months') }}
),

late as (
    -- stored in a batch after the close's (the index on arrival_batch finds them)
    select events.tenant_id, events.metric, closed.period_start, events.amount
    from closed
    inner join {{ ref('int_events_deduplicated') }} as events
        on events.arrival_batch > closed.arrivals_through
       and {{ in_month }}
    union all
    -- a month closed before watermarks: received after it was finalized
    select events.tenant_id, events.metric, closed.period_start, events.amount
    from closed
    inner join {{ ref('int_events_deduplicated') }} as events
        on closed.arrivals_through is null
       and events.received_at > closed.finalized_at
       and {{ in_month }}
),

final as (
    select
        tenant_id,
        metric,
        period_start,
        cast(count(*) as bigint) as event_count,
        cast(sum(amount) as {{ decimal_type() }}) as amount_sum
    from late
    group by tenant_id, metric, period_start
)

select tenant_id, metric, period_start, event_count, amount_sum from final
