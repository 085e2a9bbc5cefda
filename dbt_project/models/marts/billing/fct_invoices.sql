{#- One row per tenant, currency and calendar month: the invoice, in arrears. Incremental by
    month like its lines. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='period_start',
        on_schema_change='fail',
    )
}}

with lines as (
    select * from {{ ref('fct_invoice_lines') }}
    where period_start >= cast('{{ var("min_month") }}' as timestamptz)
      and period_start < cast('{{ var("max_month") }}' as timestamptz)
),

tenants as (
    select * from {{ ref('stg_app__tenants') }}
),

subtotals as (
    select
        invoice_id,
        tenant_id,
        currency,
        period_start,
        sum(amount_minor) as subtotal_minor
    from lines
    group by invoice_id, tenant_id, currency, period_start
),

final as (
    select
        subtotals.invoice_id,
        subtotals.tenant_id,
        subtotals.currency,
        subtotals.period_start,
        {{ dbt.dateadd('month', 1, 'subtotals.period_start') }} as period_end,
        cast('draft' as {{ dbt.type_string() }}) as status,
        cast(subtotals.subtotal_minor as bigint) as subtotal_minor,
        {{ to_minor_units('subtotals.subtotal_minor * tenants.tax_rate', 0) }} as tax_minor,
        cast(null as {{ dbt.type_string() }}) as provider_invoice_id,
        cast(null as timestamptz) as finalized_at
    from subtotals
    inner join tenants on tenants.tenant_id = subtotals.tenant_id
)

select
    invoice_id,
    tenant_id,
    currency,
    period_start,
    period_end,
    status,
    subtotal_minor,
    tax_minor,
    subtotal_minor + tax_minor as total_minor,
    provider_invoice_id,
    finalized_at
from final
