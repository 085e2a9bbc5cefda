-- Invariant: total = subtotal + tax. In the months the run prices, as
-- assert_invoice_lines_sum_to_subtotal.
select invoice_id, subtotal_minor, tax_minor, total_minor
from {{ ref('fct_invoices') }}
where total_minor <> subtotal_minor + tax_minor and {{ in_monthly_window('period_start') }}
