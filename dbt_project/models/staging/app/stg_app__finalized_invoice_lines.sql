with source as (
    select * from {{ source('app', 'finalized_invoice_lines') }}
)

select
    invoice_id, line_id, tenant_id, line_type, metric, plan_key, quantity, billable_quantity,
    amount_minor, currency, description, service_start, service_end, period_start,
    corrected_period_start
from source
