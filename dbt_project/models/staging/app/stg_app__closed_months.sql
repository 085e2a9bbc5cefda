with source as (
    select * from {{ source('app', 'closed_months') }}
)

select period_start, period_end, finalized_at, arrivals_through, subscription_events_through
from source
