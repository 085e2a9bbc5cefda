{#- One row per prepaid credit grant: what was granted, what finalized invoices used of it,
    what expired or was voided unused, and the balance left (DECISIONLOG.md,
    "Commitments, discounts and prepaid credits"). Only finalized invoices use credit: a draft shows what it would use, not
    taken yet. A view, so that a grant, a void or a close shows at once. -#}
{{ config(materialized='view') }}
with grants as (
    select * from {{ ref('int_credit_grants_used') }}
),

balances as (
    select
        grants.*,
        case
            when grants.voided_at is not null then 'voided'
            when grants.expires_at <= {{ dbt.current_timestamp() }} then 'expired'
        end as ended
    from grants
),

final as (
    select
        grant_id,
        tenant_id,
        currency,
        granted_minor,
        used_minor,
        case when ended = 'expired' then granted_minor - used_minor else 0 end as expired_minor,
        case when ended = 'voided' then granted_minor - used_minor else 0 end as voided_minor,
        case when ended is null then granted_minor - used_minor else 0 end as balance_minor,
        case
            when ended is not null then ended
            when used_minor >= granted_minor then 'used'
            else 'active'
        end as status,
        priority,
        granted_at,
        expires_at,
        voided_at,
        description
    from balances
)

select
    cast(grant_id as {{ dbt.type_string() }}) as grant_id,
    cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
    cast(currency as {{ dbt.type_string() }}) as currency,
    cast(granted_minor as bigint) as granted_minor,
    cast(used_minor as bigint) as used_minor,
    cast(expired_minor as bigint) as expired_minor,
    cast(voided_minor as bigint) as voided_minor,
    cast(balance_minor as bigint) as balance_minor,
    cast(status as {{ dbt.type_string() }}) as status,
    cast(priority as integer) as priority,
    granted_at,
    expires_at,
    voided_at,
    cast(description as {{ dbt.type_string() }}) as description
from final
