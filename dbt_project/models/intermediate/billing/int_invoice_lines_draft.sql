{#- One row per line of the invoices being computed: the run's months' lines (usage, base
    fees, minimum commitments, discounts: int_invoice_lines_rated), the adjustments billed
    on them, and the prepaid credits each invoice would use after tax (DECISIONLOG.md,
    "Commitments, discounts and prepaid credits"): the tenant's grants in its currency, granted before the invoice's
    period ends and not expired by then, not voided, with what finalized invoices have not
    used of them, in order of priority, then the soonest expiry, then grant time and id;
    each covers what the ones before it left of the total. Incremental by month: a run
    replaces its months whole, also a month that has no line any more (empty_run_months),
    so no stale draft is left. -#}
{{
    config(
        materialized=monthly_view('incremental'),
        on_schema_change='append_new_columns',
        pre_hook=empty_run_months(),
        **replace_by('period_start')
    )
}}

with rated as (
    select * from {{ ref('int_invoice_lines_rated') }}
    where {{ in_monthly_window('period_start') }}
),

adjustments as (
    select * from {{ ref('int_invoice_adjustments') }}
),

tenants as (
    select * from {{ ref('stg_app__tenants') }}
),

grants as (
    select * from {{ ref('int_credit_grants_used') }}
),

charges as (
    select
        {{ invoice_line_columns({
            'corrected_period_start': 'cast(null as ' ~ timestamp_type() ~ ')',
            'grant_id': 'cast(null as ' ~ dbt.type_string() ~ ')',
            'corrected_line_type': 'cast(null as ' ~ dbt.type_string() ~ ')',
        }) }}
    from rated
    union all
    select {{ invoice_line_columns() }}
    from adjustments
),

totals as (
    select
        charges.invoice_id,
        charges.tenant_id,
        charges.currency,
        charges.period_start,
        sum(charges.amount_minor)
            + {{ invoice_tax('sum(charges.amount_minor)', 'max(tenants.tax_rate)') }}
            as total_minor
    from charges
    inner join tenants on tenants.tenant_id = charges.tenant_id
    group by charges.invoice_id, charges.tenant_id, charges.currency, charges.period_start
),

balances as (
    select grants.*, granted_minor - used_minor as balance_minor
    from grants
    where voided_at is null
),

usable as (
    select
        totals.invoice_id,
        totals.tenant_id,
        totals.currency,
        totals.period_start,
        totals.total_minor,
        balances.grant_id,
        balances.description,
        balances.balance_minor,
        sum(balances.balance_minor) over (
            partition by totals.invoice_id
            order by balances.priority, balances.expires_at nulls last, balances.granted_at,
                     balances.grant_id
            rows between unbounded preceding and current row
        ) as running_minor
    from totals
    inner join balances
        on balances.tenant_id = totals.tenant_id
       and balances.currency = totals.currency
       and balances.granted_at < {{ dbt.dateadd('month', 1, 'totals.period_start') }}
       and (balances.expires_at is null
            or balances.expires_at >= {{ dbt.dateadd('month', 1, 'totals.period_start') }})
    where totals.total_minor > 0 and balances.balance_minor > 0
),

credit_lines as (
    select
        invoice_id,
        'il_' || {{ dbt.right(dbt.hash(dbt.concat(["invoice_id", "'|credit|'", "grant_id"])), 20) }}
            as line_id,
        tenant_id,
        'credit' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as plan_key,
        cast(null as {{ decimal_type() }}) as quantity,
        cast(null as {{ decimal_type() }}) as billable_quantity,
        -(least(running_minor, total_minor) - least(running_minor - balance_minor, total_minor))
            as amount_minor,
        currency,
        'Prepaid credit ' || grant_id
            || case when description <> '' then ': ' || description else '' end
            as description,
        cast(null as {{ timestamp_type() }}) as service_start,
        cast(null as {{ timestamp_type() }}) as service_end,
        period_start,
        cast(null as {{ timestamp_type() }}) as corrected_period_start,
        cast(null as {{ dbt.type_string() }}) as dimensions,
        cast(null as {{ dbt.type_string() }}) as discount_id,
        grant_id,
        cast(null as {{ dbt.type_string() }}) as corrected_line_type
    from usable
    where running_minor - balance_minor < total_minor
),

final as (
    select * from charges
    union all
    select {{ invoice_line_columns() }}
    from credit_lines
)

select * from final
