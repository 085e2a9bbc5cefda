{#- One row per tenant, currency and month with recurring or usage revenue. Recurring
    revenue is a base fee spread evenly over the calendar months its service period covers:
    from the month it starts in to the month before the one it ends in (or its own month),
    so a yearly fee is a twelfth a month over twelve months even when its anniversary is
    mid-month; a credit takes back its months. Usage revenue is
    the month's usage lines and minimum commitment true-ups, of finalized invoices (not
    void); discounts are the month's discount lines (negative); adjustments correct the
    past and are not recurring, so they are left out; prepaid credits pay invoices and are
    not revenue. -#}
with lines as (
    -- the columns read below alone: `kept` is read twice, so PostgreSQL stores it, and
    -- with every column of every finalized line (three years of 10,000 tenants, 1.8M lines)
    -- that store went to disk
    select
        invoice_id, line_id, tenant_id, currency, line_type, period_start, service_start,
        service_end, amount_minor
    from {{ ref('fct_invoice_lines') }}
),

invoices as (
    select invoice_id from {{ ref('fct_invoices') }} as invoices
    where {{ is_billed_invoice('invoices') }}
),

kept as (
    select
        lines.*,
        -- the end of the months a line's service covers: the start of the month its service
        -- ends in, unless that is not after its start (a line within one month)
        case
            when {{ dbt.date_trunc('month', 'lines.service_end') }} > lines.service_start
                then {{ dbt.date_trunc('month', 'lines.service_end') }}
            else lines.service_end
        end as months_end
    from lines
    inner join invoices on invoices.invoice_id = lines.invoice_id
    where lines.line_type in ('base_fee', 'usage', 'minimum', 'discount')
),

base_fee_months as (
    select
        kept.line_id,
        kept.tenant_id,
        kept.currency,
        months.month_start,
        kept.amount_minor,
        count(*) over (partition by kept.line_id) as months_covered
    from kept
    cross join lateral (
        {{ month_spine('kept.service_start', 'kept.months_end') }}
    ) as months
    where kept.line_type = 'base_fee'
),

recurring as (
    select
        tenant_id,
        currency,
        month_start,
        sum(cast(amount_minor as {{ decimal_type() }}) / months_covered) as recurring_exact
    from base_fee_months
    group by tenant_id, currency, month_start
),

usage as (
    select
        tenant_id,
        currency,
        period_start as month_start,
        sum(case when line_type = 'discount' then 0 else amount_minor end) as usage_minor,
        sum(case when line_type = 'discount' then amount_minor else 0 end) as discounts_minor
    from kept
    where line_type in ('usage', 'minimum', 'discount')
    group by tenant_id, currency, period_start
),

final as (
    select
        coalesce(recurring.tenant_id, usage.tenant_id) as tenant_id,
        coalesce(recurring.currency, usage.currency) as currency,
        coalesce(recurring.month_start, usage.month_start) as month_start,
        cast(coalesce({{ to_minor_units('recurring.recurring_exact', 0) }}, 0) as bigint)
            as recurring_minor,
        cast(coalesce(usage.usage_minor, 0) as bigint) as usage_minor,
        cast(coalesce(usage.discounts_minor, 0) as bigint) as discounts_minor
    from recurring
    full outer join usage
        on usage.tenant_id = recurring.tenant_id
        and usage.currency = recurring.currency
        and usage.month_start = recurring.month_start
)

select tenant_id, currency, month_start, recurring_minor, usage_minor, discounts_minor
from final
