{#- One row per segment, charge and combination of its group_by values that is billed: the
    period quantity, its price (the combination's, else the charge's default; a
    `not_billed` price bills nothing), the included units of that price prorated by the
    segment's share of the month, and the billable quantity left after them (a percentage
    price's free units and free amount prorated the same way). -#}
with segments as (
    select * from {{ ref('int_subscription_segments') }}
),

usage as (
    select * from {{ ref('int_segment_usage_aggregated') }}
),

prices as (
    select * from {{ ref('stg_app__plan_prices') }}
),

prorated as (
    select
        segments.segment_id,
        segments.tenant_id,
        segments.currency,
        segments.period_start,
        segments.plan_key,
        segments.plan_version,
        segments.plan_name,
        segments.segment_start,
        segments.segment_end,
        segments.in_trial,
        usage.metric,
        usage.dimensions,
        usage.dimension_label,
        prices.price_dimensions,
        usage.quantity,
        prices.pricing_model,
        prices.unit_price,
        prices.package_size,
        prices.package_price,
        prices.rate,
        prices.fixed_fee,
        prices.min_per_event,
        prices.max_per_event,
        cast({{ times('segments.active_seconds', 'prices.included') }}
             / segments.period_seconds as {{ decimal_type() }}) as included,
        -- a percentage's free events and free amount, prorated as included units are
        cast({{ times('segments.active_seconds', 'prices.free_units') }}
             / segments.period_seconds as {{ decimal_type() }}) as free_units,
        cast({{ times('segments.active_seconds', 'prices.free_amount') }}
             / segments.period_seconds as {{ decimal_type() }}) as free_amount
    from segments
    inner join usage on usage.segment_id = segments.segment_id
    -- the combination's own price where the charge lists it, else the default ('')
    left join prices as listed
        on listed.plan_key = segments.plan_key
       and listed.plan_version = segments.plan_version
       and listed.metric = usage.metric
       and listed.price_dimensions = usage.dimensions
    inner join prices
        on prices.plan_key = segments.plan_key
       and prices.plan_version = segments.plan_version
       and prices.metric = usage.metric
       and prices.price_dimensions = coalesce(listed.price_dimensions, '')
    -- a trial's usage is billed only where its plan says so, and never when the
    -- subscription ends in its trial
    where segments.bills_usage and prices.pricing_model <> 'not_billed'
),

final as (
    select
        prorated.*,
        case when quantity > included then quantity - included else 0 end as billable_quantity
    from prorated
)

select * from final
