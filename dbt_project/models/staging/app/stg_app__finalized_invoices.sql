with source as (
    select * from {{ source('app', 'finalized_invoices') }}
)

select
    invoice_id, tenant_id, currency, period_start, period_end, subtotal_minor, tax_minor,
    total_minor, credits_minor, finalized_at, arrivals_through, subscription_events_through
from source
