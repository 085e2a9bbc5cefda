{#- One row per segment, charged metric and combination of the charge's group_by values
    (dimensions '{}' for a charge without group_by): the period quantity of the events whose
    timestamp falls in the segment, by the metric's aggregation over the whole segment
    (a unique_count is distinct over the segment, not a sum of daily counts). A charge
    without group_by has its row when nothing was used; one with group_by has a row per
    combination used. -#}
{%- set group_by = ['segment_charges.group_by_1', 'segment_charges.group_by_2',
                    'segment_charges.group_by_3'] -%}

with segments as (
    select * from {{ ref('int_subscription_segments') }}
),

charges as (
    select * from {{ ref('stg_app__plan_charges') }}
),

metrics as (
    select * from {{ ref('stg_app__metrics') }}
),

events as (
    select * from {{ ref('int_events_deduplicated') }}
    -- the run's months and the finalized months it may re-rate; segments pick their own
    where event_ts >= {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                     ts_literal(var('min_month'))) }}
      and event_ts < {{ ts_literal(var('max_month')) }}
),

segment_charges as (
    select
        segments.segment_id,
        segments.tenant_id,
        segments.segment_start,
        segments.segment_end,
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
),

segment_events as (
    select
        segment_charges.segment_id,
        segment_charges.metric,
        segment_charges.aggregation,
        {{ dimension_key('events.metadata', group_by) }} as dimensions,
        {{ dimension_label('events.metadata', group_by) }} as dimension_label,
        events.amount,
        events.event_ts,
        events.event_seq,
        case when segment_charges.aggregation = 'unique_count'
             then {{ json_text('events.metadata', 'segment_charges.property') }}
        end as property_value
    from segment_charges
    inner join events
        on events.tenant_id = segment_charges.tenant_id
       and events.metric = segment_charges.metric
       and events.event_ts >= segment_charges.segment_start
       and events.event_ts < segment_charges.segment_end
),

quantities as (
    {{ aggregate_usage('segment_events',
                       ['segment_id', 'metric', 'dimensions', 'dimension_label']) }}
),

final as (
    select
        segment_charges.segment_id,
        segment_charges.metric,
        coalesce(quantities.dimensions, '{}') as dimensions,
        coalesce(quantities.dimension_label, '') as dimension_label,
        coalesce(quantities.quantity, 0) as quantity,
        coalesce(quantities.event_count, 0) as event_count
    from segment_charges
    left join quantities
        on quantities.segment_id = segment_charges.segment_id
       and quantities.metric = segment_charges.metric
    where quantities.segment_id is not null or segment_charges.group_by_1 is null
)

select * from final
