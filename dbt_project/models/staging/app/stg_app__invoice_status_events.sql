with source as (
    select * from {{ source('app', 'invoice_status_events') }}
)

select event_seq, invoice_id, status, provider_invoice_id, source as event_source, occurred_at
from source
