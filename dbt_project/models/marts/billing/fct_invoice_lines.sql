{#- One row per invoice line. Incremental by month: a run replaces the months in
    [min_month, max_month). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='period_start',
        on_schema_change='fail',
    )
}}

with lines as (
    select * from {{ ref('int_invoice_lines_priced') }}
),

final as (
    select
        cast(invoice_id as {{ dbt.type_string() }}) as invoice_id,
        cast(line_id as {{ dbt.type_string() }}) as line_id,
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(line_type as {{ dbt.type_string() }}) as line_type,
        cast(metric as {{ dbt.type_string() }}) as metric,
        cast(plan_key as {{ dbt.type_string() }}) as plan,
        cast(quantity as numeric) as quantity,
        cast(billable_quantity as numeric) as billable_quantity,
        cast(amount_minor as bigint) as amount_minor,
        cast(currency as {{ dbt.type_string() }}) as currency,
        cast(description as {{ dbt.type_string() }}) as description,
        service_start,
        service_end,
        period_start
    from lines
)

select
    invoice_id, line_id, tenant_id, line_type, metric, plan, quantity, billable_quantity,
    amount_minor, currency, description, service_start, service_end, period_start
from final
