with source as (
    select * from {{ source('app', 'plan_charges') }}
)

select
    plan_key,
    version as plan_version,
    metric,
    model as pricing_model,
    cast(unit_price as {{ decimal_type() }}) as unit_price,
    cast(included as {{ decimal_type() }}) as included,
    cast(package_size as {{ decimal_type() }}) as package_size,
    cast(package_price as {{ decimal_type() }}) as package_price,
    cast(quota_limit as {{ decimal_type() }}) as quota_limit,
    quota_policy
from source
