-- Invariant: an invoice's lines add up to its subtotal.
with lines as (
    select invoice_id, sum(amount_minor) as lines_minor
    from {{ ref('fct_invoice_lines') }}
    group by invoice_id
)

select invoices.invoice_id, invoices.subtotal_minor, lines.lines_minor
from {{ ref('fct_invoices') }} as invoices
left join lines on lines.invoice_id = invoices.invoice_id
where coalesce(lines.lines_minor, 0) <> invoices.subtotal_minor
