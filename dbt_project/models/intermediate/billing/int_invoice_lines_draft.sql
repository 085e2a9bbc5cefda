{#- One row per line of the invoices being computed: the run's months' lines and the
    adjustments billed on them. Incremental by month: a run replaces its months whole. -#}
{{
    config(
        materialized='incremental',
        **replace_by('period_start')
    )
}}

with priced as (
    select * from {{ ref('int_invoice_lines_priced') }}
    where period_start >= {{ ts_literal(var('min_month')) }}
      and period_start < {{ ts_literal(var('max_month')) }}
),

adjustments as (
    select * from {{ ref('int_invoice_adjustments') }}
),

final as (
    select
        invoice_id, line_id, tenant_id, currency, period_start, line_type, metric, plan_key,
        quantity, billable_quantity, amount_minor, description, service_start, service_end,
        cast(null as {{ timestamp_type() }}) as corrected_period_start
    from priced
    union all
    select
        invoice_id, line_id, tenant_id, currency, period_start, line_type, metric, plan_key,
        quantity, billable_quantity, amount_minor, description, service_start, service_end,
        corrected_period_start
    from adjustments
)

select * from final
