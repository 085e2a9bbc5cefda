with source as (
    select * from {{ source('app', 'plan_versions') }}
)

select
    plan_key,
    version as plan_version,
    name as plan_name,
    billing_interval,
    currency,
    cast(base_price as {{ decimal_type() }}) as base_price,
    cast(trial_days as integer) as trial_days,
    trial_bills_usage,
    cast(minimum_commitment as {{ decimal_type() }}) as minimum_commitment,
    effective_from,
    coalesce(
        lead(effective_from) over (partition by plan_key order by version),
        {{ ts_infinity() }}
    ) as effective_to
from source
