-- Invariant: an invoice with a discount comes to at least zero before its adjustments of
-- earlier months (which correct those months, not this one) and its credits. In the months
-- the run prices, as assert_invoice_lines_sum_to_subtotal.
select invoice_id, sum(amount_minor) as own_lines_minor
from {{ ref('fct_invoice_lines') }}
where line_type not in ('adjustment', 'credit') and {{ in_monthly_window('period_start') }}
group by invoice_id
having sum(case when line_type = 'discount' then 1 else 0 end) > 0
   and sum(amount_minor) < 0
