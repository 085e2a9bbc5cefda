-- Invariant: total = subtotal + tax.
select invoice_id, subtotal_minor, tax_minor, total_minor
from {{ ref('fct_invoices') }}
where total_minor <> subtotal_minor + tax_minor
