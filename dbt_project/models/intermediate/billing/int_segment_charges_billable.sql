{#- One row per segment and charge: the period quantity, the included units prorated by the
    segment's share of the month, and the billable quantity left after them. -#}
with segments as (
    select * from {{ ref('int_subscription_segments') }}
),

usage as (
    select * from {{ ref('int_segment_usage_aggregated') }}
),

charges as (
    select * from {{ ref('stg_app__plan_charges') }}
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
        usage.quantity,
        charges.pricing_model,
        charges.unit_price,
        charges.package_size,
        charges.package_price,
        cast({{ times('segments.active_seconds', 'charges.included') }}
             / segments.period_seconds as {{ decimal_type() }}) as included
    from segments
    inner join usage on usage.segment_id = segments.segment_id
    inner join charges
        on charges.plan_key = segments.plan_key
       and charges.plan_version = segments.plan_version
       and charges.metric = usage.metric
    -- a trial's usage is billed only where its plan says so, and never when the
    -- subscription ends in its trial
    where segments.bills_usage
),

final as (
    select
        prorated.*,
        case when quantity > included then quantity - included else 0 end as billable_quantity
    from prorated
)

select * from final
