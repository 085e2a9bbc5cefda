{#- One row per tenant, with its currency, tax rate, Stripe customer and current plan. -#}
with tenants as (
    select * from {{ ref('stg_app__tenants') }}
),

intervals as (
    select * from {{ ref('int_subscription_intervals') }}
),

current_plans as (
    select tenant_id, max(plan_key) as current_plan
    from intervals
    where valid_from <= {{ dbt.current_timestamp() }}
      and valid_to > {{ dbt.current_timestamp() }}
    group by tenant_id
),

final as (
    select
        tenants.tenant_id,
        tenants.tenant_name,
        tenants.currency,
        tenants.tax_rate,
        tenants.stripe_customer_id,
        current_plans.current_plan
    from tenants
    left join current_plans on current_plans.tenant_id = tenants.tenant_id
)

select tenant_id, tenant_name, currency, tax_rate, stripe_customer_id, current_plan
from final
