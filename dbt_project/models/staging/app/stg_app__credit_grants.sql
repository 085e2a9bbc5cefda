{#- One row per prepaid credit grant, as recorded (grants are never edited). -#}
with source as (
    select * from {{ source('app', 'credit_grants') }}
)

select
    grant_id,
    tenant_id,
    cast(amount as {{ decimal_type() }}) as amount,
    currency,
    granted_at,
    expires_at,
    cast(priority as integer) as priority,
    description
from source
