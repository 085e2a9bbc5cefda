{#- One row per tenant and month of the run whose invoice is held, with the reason: the
    tenant's data is wrong in a way that would bill it wrongly, so its invoice stays out of
    the close until someone fixes the data and runs the month again; every other tenant's
    invoice finalizes and is pushed (DECISIONLOG.md, "Held invoices"). Reasons:
    `overlapping_subscriptions` (two subscriptions at once would bill the same usage twice),
    `currency_mismatch` (a plan billing in another currency than the tenant pays in) and
    `amount_out_of_range` (a line of the run's months or of a re-rated one comes to the most
    a line bills or more, macros/money.sql: the tenant's invoices of every month of the run
    are held, the one a re-rated month's adjustment lands on included).
    Incremental by month, as the drafts: a held draft stays held after later months run. -#}
{{
    config(
        materialized=monthly_view('incremental'),
        pre_hook=empty_run_months(),
        **replace_by('period_start')
    )
}}
with segments as (
    select * from {{ ref('int_subscription_segments') }}
    where not is_rerate
),

tenants as (
    select * from {{ ref('stg_app__tenants') }}
),

lines as (
    select * from {{ ref('int_invoice_lines_priced') }}
),

overlapping as (
    select
        a.tenant_id,
        a.period_start,
        'overlapping_subscriptions' as reason,
        'subscriptions ' || a.subscription_id || ' and ' || b.subscription_id
            || ' overlap' as detail
    from segments as a
    inner join segments as b
        on b.tenant_id = a.tenant_id
       and b.period_start = a.period_start
       and a.segment_id < b.segment_id
       and a.subscription_id <> b.subscription_id
       and a.segment_start < b.segment_end
       and b.segment_start < a.segment_end
),

mismatched as (
    select
        segments.tenant_id,
        segments.period_start,
        'currency_mismatch' as reason,
        'plan ' || segments.plan_key || ' bills in ' || segments.currency
            || ', the tenant pays in ' || tenants.currency as detail
    from segments
    inner join tenants on tenants.tenant_id = segments.tenant_id
    where segments.currency <> tenants.currency
),

too_large as (
    select
        tenant_id,
        min(description || ' for the month of '
            || cast({{ utc_date('period_start') }} as {{ dbt.type_string() }})
            || ' comes to ' || cast(round(amount_exact, 0) as {{ dbt.type_string() }})
            || ' ' || currency) as detail
    from lines
    where abs(amount_exact) >= {{ max_line_amount() }}
    group by tenant_id
),

unbillable as (
    select
        too_large.tenant_id,
        run_months.period_start,
        'amount_out_of_range' as reason,
        too_large.detail || ', 10^12 or more' as detail
    from too_large
    cross join (select distinct period_start from segments) as run_months
),

reasons as (
    select * from overlapping
    union all
    select * from mismatched
    union all
    select * from unbillable
),

final as (
    -- one reason per tenant and month: the first, named with its detail
    select tenant_id, period_start, min(reason || ': ' || detail) as hold_reason
    from reasons
    group by tenant_id, period_start
)

select tenant_id, period_start, hold_reason from final
