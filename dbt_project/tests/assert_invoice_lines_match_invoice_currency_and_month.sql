-- Invariant: every line has its invoice's tenant, currency and month, and every line
-- belongs to an invoice.
select lines.invoice_id, lines.line_id
from {{ ref('fct_invoice_lines') }} as lines
left join {{ ref('fct_invoices') }} as invoices on invoices.invoice_id = lines.invoice_id
where invoices.invoice_id is null
   or invoices.tenant_id <> lines.tenant_id
   or invoices.currency <> lines.currency
   or invoices.period_start <> lines.period_start
