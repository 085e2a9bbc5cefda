with source as (
    select * from {{ source('app', 'plan_charges') }}
)

select
    plan_key,
    version as plan_version,
    metric,
    model as pricing_model,
    cast(unit_price as numeric) as unit_price,
    cast(included as numeric) as included,
    cast(package_size as numeric) as package_size,
    cast(package_price as numeric) as package_price,
    cast(quota_limit as numeric) as quota_limit,
    quota_policy
from source
