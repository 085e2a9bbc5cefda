{#- One row per prepaid credit grant: what was granted, what finalized invoices used of it,
    what expired or was voided unused, and the balance left (DECISIONLOG.md, "Prepaid
    credits"). Only finalized invoices use credit: a draft shows what it would use, not
    taken yet. A view, so that a grant, a void or a close shows at once. -#}
{{ config(materialized='view') }}
with grants as (
    select * from {{ ref('stg_app__credit_grants') }}
),

voids as (
    select * from {{ ref('stg_app__credit_grant_voids') }}
),

frozen_lines as (
    select * from {{ ref('stg_app__finalized_invoice_lines') }}
),

currencies as (
    select * from {{ ref('stg_app__currencies') }}
),

used as (
    select grant_id, -sum(amount_minor) as used_minor
    from frozen_lines
    where line_type = 'credit'
    group by grant_id
),

balances as (
    select
        grants.*,
        voids.voided_at,
        {{ to_minor_units('grants.amount', 'currencies.minor_unit') }} as granted_minor,
        coalesce(used.used_minor, 0) as used_minor,
        case
            when voids.voided_at is not null then 'voided'
            when grants.expires_at <= {{ dbt.current_timestamp() }} then 'expired'
        end as ended
    from grants
    inner join currencies on currencies.currency = grants.currency
    left join used on used.grant_id = grants.grant_id
    left join voids on voids.grant_id = grants.grant_id
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
