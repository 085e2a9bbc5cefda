{#- One row per discount: a rate or an amount, from the month `starts` for `months` months
    (null: forever); `applies_to` is the JSON array of the charges it applies to (metric
    keys, base_fee), null for the whole invoice. -#}
with source as (
    select * from {{ source('app', 'discounts') }}
)

select
    discount_id,
    tenant_id,
    description,
    cast(rate as {{ decimal_type() }}) as rate,
    cast(amount as {{ decimal_type() }}) as amount,
    currency,
    starts,
    cast(months as integer) as months,
    cast(applies_to as {{ dbt.type_string() }}) as applies_to
from source
