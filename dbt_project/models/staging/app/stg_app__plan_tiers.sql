with source as (
    select * from {{ source('app', 'plan_tiers') }}
)

select
    plan_key,
    version as plan_version,
    metric,
    -- the price the tier belongs to ('': the charge's default, as stg_app__plan_prices)
    dimensions as price_dimensions,
    tier_index,
    cast(up_to as {{ decimal_type() }}) as up_to,
    coalesce(
        lag(cast(up_to as {{ decimal_type() }})) over (
            partition by plan_key, version, metric, dimensions order by tier_index),
        0
    ) as lower_bound,
    cast(unit_price as {{ decimal_type() }}) as unit_price,
    cast(flat_fee as {{ decimal_type() }}) as flat_fee
from source
