{#- One row per invoice line: the frozen lines of finalized invoices, as they were at
    finalization, and the lines of draft invoices as computed by the last run. Lines of
    type usage, base_fee, minimum, discount and adjustment make the subtotal; credit lines
    (prepaid credits) are used after tax. -#}
{#- Incremental by month on PostgreSQL, as int_invoice_lines_draft: a run replaces the
    months it prices whole (empty_run_months, in_monthly_window), with their frozen lines
    and the drafts not finalized. A month outside them changes only when it is finalized,
    and the close then runs this model over that month (selector `finalized_refresh`). It
    was rebuilt from every frozen line each run: three years of 10,000 tenants, 1.8M
    lines, 2.3-2.9 s a run (DECISIONLOG.md, "What a run tests"). Spark builds the table
    whole: its Parquet has no delete for a month left without lines. -#}
{%- set by_month = target.type == 'postgres' -%}
{{
    config(
        materialized=monthly_view('incremental' if by_month else 'table'),
        on_schema_change='append_new_columns',
        pre_hook=empty_run_months(),
        **(replace_by('period_start') if by_month else {})
    )
}}
{%- set in_run = in_monthly_window('period_start') if is_incremental() else 'true' %}

{#- the upcoming invoice reads one tenant's (preview_tenant): the frozen invoices of every
    tenant grow with each close (10,000 tenants, five months closed: 131k lines a read) -#}
with frozen as (
    select * from {{ ref('stg_app__finalized_invoice_lines') }}
    where {{ preview_tenant('tenant_id') }} and {{ in_run }}
),

drafts as (
    select * from {{ ref('int_invoice_lines_draft') }}
    where {{ in_run }}
),

finalized as (
    select * from {{ ref('stg_app__finalized_invoices') }}
    where {{ preview_tenant('tenant_id') }}
),

all_lines as (
    select {{ invoice_line_columns() }}
    from frozen
    union all
    select {{ invoice_line_columns() }}
    from drafts
    where not exists (
        select 1 from finalized where finalized.invoice_id = drafts.invoice_id
    )
),

final as (
    select
        cast(invoice_id as {{ dbt.type_string() }}) as invoice_id,
        cast(line_id as {{ dbt.type_string() }}) as line_id,
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(line_type as {{ dbt.type_string() }}) as line_type,
        cast(metric as {{ dbt.type_string() }}) as metric,
        cast(plan_key as {{ dbt.type_string() }}) as plan,
        cast(quantity as {{ decimal_type() }}) as quantity,
        cast(billable_quantity as {{ decimal_type() }}) as billable_quantity,
        cast(amount_minor as bigint) as amount_minor,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(description as {{ dbt.type_string() }}) as description,
        service_start,
        service_end,
        period_start,
        corrected_period_start,
        cast(dimensions as {{ dbt.type_string() }}) as dimensions,
        cast(discount_id as {{ dbt.type_string() }}) as discount_id,
        cast(grant_id as {{ dbt.type_string() }}) as grant_id,
        cast(corrected_line_type as {{ dbt.type_string() }}) as corrected_line_type
    from all_lines
)

select
    invoice_id, line_id, tenant_id, line_type, metric, plan, quantity, billable_quantity,
    amount_minor, currency, description, service_start, service_end, period_start,
    corrected_period_start, dimensions, discount_id, grant_id, corrected_line_type
from final
