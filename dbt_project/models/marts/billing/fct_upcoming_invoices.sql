{#- The upcoming invoice (GET /v1/invoices/upcoming, macros/preview.sql): one row per line of
    each invoice of fct_invoices, the invoice's columns beside the line's (an invoice
    without a line has one row, its line columns null). Built in the preview alone, as the
    one view a read asks: fct_invoices and fct_invoice_lines are CTEs of it, so a read
    prices the month once for both (two views would price it once each). -#}
{{
    config(
        materialized='view',
        enabled=is_preview(),
        contract={'enforced': false},
    )
}}

with invoices as (
    select * from {{ ref('fct_invoices') }}
),

lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

final as (
    select
        invoices.invoice_id,
        invoices.tenant_id,
        invoices.currency,
        invoices.period_start,
        invoices.period_end,
        invoices.status,
        invoices.subtotal_minor,
        invoices.tax_minor,
        invoices.total_minor,
        invoices.credits_minor,
        invoices.amount_due_minor,
        invoices.provider_invoice_id,
        invoices.finalized_at,
        lines.line_id,
        lines.line_type,
        lines.metric,
        lines.plan,
        lines.quantity,
        lines.billable_quantity,
        lines.amount_minor,
        lines.description,
        lines.service_start,
        lines.service_end,
        lines.discount_id,
        lines.grant_id
    from invoices
    left join lines on lines.invoice_id = invoices.invoice_id
)

select * from final
