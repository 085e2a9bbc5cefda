{#- Verified Stripe webhook events; `amount_paid` is what Stripe says the customer paid. -#}
with source as (
    select * from {{ source('app', 'stripe_webhook_events') }}
)

select
    event_id,
    event_type,
    created_at,
    invoice_id,
    cast({{ json_path_text('payload', ['data', 'object', 'amount_paid']) }} as bigint)
        as amount_paid_minor
from source
