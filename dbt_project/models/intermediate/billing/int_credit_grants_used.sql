{#- One row per prepaid credit grant: what was granted and what finalized invoices used of
    it (their credit lines), in minor units, and when it was voided. The drafts' credits
    (int_invoice_lines_draft) and the balances (fct_credit_balances) read them from here.
    A view: a close or a void shows at once. -#}
{{ config(materialized=monthly_view()) }}
{#- the upcoming invoice reads one tenant's (preview_tenant): its grants, and the frozen
    lines of its invoices, which hold every credit line of its grants (found by the lines'
    tenant index, migration 0024, not by a scan of every tenant's) -#}
with grants as (
    select * from {{ ref('stg_app__credit_grants') }}
    where {{ preview_tenant('tenant_id') }}
),

voids as (
    select * from {{ ref('stg_app__credit_grant_voids') }}
),

frozen_lines as (
    select * from {{ ref('stg_app__finalized_invoice_lines') }}
    where {{ preview_tenant('tenant_id') }}
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

final as (
    select
        grants.grant_id,
        grants.tenant_id,
        grants.currency,
        grants.granted_at,
        grants.expires_at,
        grants.priority,
        grants.description,
        {{ to_minor_units('grants.amount', 'currencies.minor_unit') }} as granted_minor,
        coalesce(used.used_minor, 0) as used_minor,
        voids.voided_at
    from grants
    inner join currencies on currencies.currency = grants.currency
    left join used on used.grant_id = grants.grant_id
    left join voids on voids.grant_id = grants.grant_id
)

select
    grant_id, tenant_id, currency, granted_at, expires_at, priority, description,
    granted_minor, used_minor, voided_at
from final
