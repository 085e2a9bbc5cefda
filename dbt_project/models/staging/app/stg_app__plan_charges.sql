{#- One row per charge of a plan version. Its prices (its own, the default, and those of
    the combinations it lists) are stg_app__plan_prices. -#}
with source as (
    select * from {{ source('app', 'plan_charges') }}
)

select
    plan_key,
    version as plan_version,
    metric,
    cast(quota_limit as {{ decimal_type() }}) as quota_limit,
    quota_policy,
    -- the dimensions the charge prices per combination of values, in order (null: none)
    {{ json_item('group_by', 0) }} as group_by_1,
    {{ json_item('group_by', 1) }} as group_by_2,
    {{ json_item('group_by', 2) }} as group_by_3
from source
