with source as (
    select * from {{ source('app', 'held_invoices') }}
)

select tenant_id, period_start, held_at, hold_reason
from source
