-- Invariant: an invoice's lines add up to its subtotal, its credit lines to its credits
-- (used after tax), and credits never take an invoice below zero. In the months the run
-- prices (in_monthly_window): the months before are frozen, or drafts an earlier run built
-- and tested.
with lines as (
    select
        invoice_id,
        sum(case when line_type = 'credit' then 0 else amount_minor end) as lines_minor,
        -sum(case when line_type = 'credit' then amount_minor else 0 end) as credit_lines_minor
    from {{ ref('fct_invoice_lines') }}
    where {{ in_monthly_window('period_start') }}
    group by invoice_id
)

select invoices.invoice_id, invoices.subtotal_minor, lines.lines_minor
from {{ ref('fct_invoices') }} as invoices
left join lines on lines.invoice_id = invoices.invoice_id
where {{ in_monthly_window('invoices.period_start') }}
  and (coalesce(lines.lines_minor, 0) <> invoices.subtotal_minor
   or coalesce(lines.credit_lines_minor, 0) <> invoices.credits_minor
   or invoices.credits_minor < 0
   or (invoices.credits_minor > 0 and invoices.amount_due_minor < 0))
