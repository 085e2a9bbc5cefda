-- Invariant: every line has its invoice's tenant, currency and month, and every line
-- belongs to an invoice. In the months the run prices, as assert_invoice_lines_sum_to_subtotal.
select lines.invoice_id, lines.line_id
from {{ ref('fct_invoice_lines') }} as lines
left join (
    select * from {{ ref('fct_invoices') }} where {{ in_monthly_window('period_start') }}
) as invoices on invoices.invoice_id = lines.invoice_id
where {{ in_monthly_window('lines.period_start') }}
  and (invoices.invoice_id is null
   or invoices.tenant_id <> lines.tenant_id
   or invoices.currency <> lines.currency
   or invoices.period_start <> lines.period_start)
