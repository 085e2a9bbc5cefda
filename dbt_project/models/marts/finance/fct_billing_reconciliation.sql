{#- What does not agree, per tenant and month; empty when everything does.
    `usage`: for additive metrics (sum, count) of tenants on one plan all month, the
    quantity on the month's usage lines against the daily usage less the usage no
    subscription covers. `payment`: a paid invoice whose amount Stripe reports paid is not
    its total. A view: it reads the current marts and webhooks. -#}
{{ config(materialized='view') }}

with lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

metrics as (
    select * from {{ ref('stg_app__metrics') }}
),

single_plan as (
    -- tenants billed on one plan all month: their usage lines cover every event
    select tenant_id, period_start
    from lines
    where line_type in ('base_fee', 'usage')
    group by tenant_id, period_start
    having count(distinct plan) = 1
),

invoiced as (
    select lines.tenant_id, lines.period_start, lines.currency, lines.metric,
           sum(lines.quantity) as quantity
    from lines
    inner join single_plan
        on single_plan.tenant_id = lines.tenant_id
        and single_plan.period_start = lines.period_start
    inner join metrics
        on metrics.metric = lines.metric and metrics.aggregation in ('sum', 'count')
    where lines.line_type = 'usage'
    group by lines.tenant_id, lines.period_start, lines.currency, lines.metric
),

metered as (
    select tenant_id, metric, {{ dbt.date_trunc('month', 'usage_date') }} as month_date,
           sum(quantity) as quantity
    from {{ ref('fct_usage_daily') }}
    group by tenant_id, metric, {{ dbt.date_trunc('month', 'usage_date') }}
),

unbilled as (
    select unbilled.tenant_id, unbilled.metric,
           {{ dbt.date_trunc('month', 'unbilled.usage_date') }} as month_date,
           sum(case metrics.aggregation when 'sum' then unbilled.amount_sum
                                        else unbilled.event_count end) as quantity
    from {{ ref('fct_unbilled_usage') }} as unbilled
    inner join metrics on metrics.metric = unbilled.metric
    group by unbilled.tenant_id, unbilled.metric,
             {{ dbt.date_trunc('month', 'unbilled.usage_date') }}
),

usage_mismatches as (
    select
        invoiced.tenant_id,
        invoiced.period_start as month,
        invoiced.currency,
        invoiced.metric,
        'usage' as problem,
        coalesce(metered.quantity, 0) - coalesce(unbilled.quantity, 0) as metered_quantity,
        invoiced.quantity as invoiced_quantity,
        cast(null as bigint) as invoiced_minor,
        cast(null as bigint) as paid_minor
    from invoiced
    left join metered
        on metered.tenant_id = invoiced.tenant_id
        and metered.metric = invoiced.metric
        and cast(metered.month_date as date) = cast(invoiced.period_start as date)
    left join unbilled
        on unbilled.tenant_id = invoiced.tenant_id
        and unbilled.metric = invoiced.metric
        and cast(unbilled.month_date as date) = cast(invoiced.period_start as date)
    where invoiced.quantity <> coalesce(metered.quantity, 0) - coalesce(unbilled.quantity, 0)
),

paid_events as (
    select invoice_id, amount_paid_minor,
           row_number() over (partition by invoice_id order by created_at desc, event_id desc)
               as recency
    from {{ ref('stg_app__stripe_webhook_events') }}
    where event_type = 'invoice.paid' and invoice_id is not null
),

payment_mismatches as (
    select
        invoices.tenant_id,
        invoices.period_start as month,
        invoices.currency,
        cast(null as {{ dbt.type_string() }}) as metric,
        'payment' as problem,
        cast(null as {{ decimal_type() }}) as metered_quantity,
        cast(null as {{ decimal_type() }}) as invoiced_quantity,
        -- what was collected: the total less the prepaid credits it used
        invoices.amount_due_minor as invoiced_minor,
        paid_events.amount_paid_minor as paid_minor
    from {{ ref('fct_invoices') }} as invoices
    inner join paid_events
        on paid_events.invoice_id = invoices.invoice_id and paid_events.recency = 1
    where invoices.status = 'paid'
      and paid_events.amount_paid_minor is distinct from invoices.amount_due_minor
),

final as (
    select * from usage_mismatches
    union all
    select * from payment_mismatches
)

select
    cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
    month,
    cast(currency as {{ dbt.type_string() }}) as currency,
    cast(metric as {{ dbt.type_string() }}) as metric,
    cast(problem as {{ dbt.type_string() }}) as problem,
    cast(metered_quantity as {{ decimal_type() }}) as metered_quantity,
    cast(invoiced_quantity as {{ decimal_type() }}) as invoiced_quantity,
    cast(invoiced_minor as bigint) as invoiced_minor,
    cast(paid_minor as bigint) as paid_minor
from final
