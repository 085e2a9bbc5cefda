{#- One row per segment and charge of the plan version it is on: the charged metric, its
    aggregation (and a unique_count's property), and the charge's group_by. -#}
{{ config(materialized=monthly_view()) }}

with segments as (
    select * from {{ ref('int_subscription_segments') }}
),

charges as (
    select * from {{ ref('stg_app__plan_charges') }}
),

metrics as (
    select * from {{ ref('stg_app__metrics') }}
),

final as (
    select
        segments.segment_id,
        segments.tenant_id,
        segments.segment_start,
        segments.segment_end,
        segments.plan_key,
        segments.plan_version,
        charges.metric,
        metrics.aggregation,
        metrics.property,
        charges.group_by_1,
        charges.group_by_2,
        charges.group_by_3
    from segments
    inner join charges
        on charges.plan_key = segments.plan_key
       and charges.plan_version = segments.plan_version
    inner join metrics on metrics.metric = charges.metric
)

select * from final
