{#- One row per voided credit grant. -#}
with source as (
    select * from {{ source('app', 'credit_grant_voids') }}
)

select grant_id, reason as void_reason, voided_at
from source
