with source as (
    select * from {{ source('app', 'tenants') }}
)

select
    tenant_id,
    name as tenant_name,
    currency,
    cast(tax_rate as {{ decimal_type() }}) as tax_rate,
    stripe_customer_id
from source
