{#- Every price of a charge, one row each: its default (the charge's own pricing,
    price_dimensions '') and the price of each combination of values it lists
    (price_dimensions: the combination's key, a JSON object of the values in group_by
    order). -#}
{%- set pricing = 'model, unit_price, included, package_size, package_price, rate, fixed_fee,
                   min_per_event, max_per_event, free_units, free_amount' %}

with charges as (
    select * from {{ source('app', 'plan_charges') }}
),

combinations as (
    select * from {{ source('app', 'plan_prices') }}
),

prices as (
    select plan_key, version, metric, '' as price_dimensions, {{ pricing }}
    from charges
    union all
    select plan_key, version, metric, dimensions as price_dimensions, {{ pricing }}
    from combinations
)

select
    plan_key,
    version as plan_version,
    metric,
    cast(price_dimensions as {{ dbt.type_string() }}) as price_dimensions,
    model as pricing_model,
    cast(unit_price as {{ decimal_type() }}) as unit_price,
    cast(included as {{ decimal_type() }}) as included,
    cast(package_size as {{ decimal_type() }}) as package_size,
    cast(package_price as {{ decimal_type() }}) as package_price,
    -- percentage: the rate (a fraction), the fee and bounds per event, the free part
    cast(rate as {{ decimal_type() }}) as rate,
    cast(fixed_fee as {{ decimal_type() }}) as fixed_fee,
    cast(min_per_event as {{ decimal_type() }}) as min_per_event,
    cast(max_per_event as {{ decimal_type() }}) as max_per_event,
    cast(free_units as {{ decimal_type() }}) as free_units,
    cast(free_amount as {{ decimal_type() }}) as free_amount
from prices
