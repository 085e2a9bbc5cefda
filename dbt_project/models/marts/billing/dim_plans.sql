{#- One row per plan version, with the window of time it prices. -#}
with plan_versions as (
    select * from {{ ref('stg_app__plan_versions') }}
),

charges as (
    select plan_key, plan_version, count(*) as charge_count
    from {{ ref('stg_app__plan_charges') }}
    group by plan_key, plan_version
),

final as (
    select
        plan_versions.plan_key,
        plan_versions.plan_version,
        plan_versions.plan_name,
        plan_versions.billing_interval,
        plan_versions.currency,
        plan_versions.base_price,
        plan_versions.trial_days,
        plan_versions.trial_bills_usage,
        plan_versions.effective_from,
        plan_versions.effective_to,
        cast(coalesce(charges.charge_count, 0) as bigint) as charge_count
    from plan_versions
    left join charges
        on charges.plan_key = plan_versions.plan_key
       and charges.plan_version = plan_versions.plan_version
)

select
    plan_key, plan_version, plan_name, billing_interval, currency, base_price, trial_days,
    trial_bills_usage, effective_from, effective_to, charge_count
from final
