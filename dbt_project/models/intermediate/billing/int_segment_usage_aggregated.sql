{#- One row per segment, charged metric and combination of the charge's group_by values
    (dimensions '{}' for a charge without group_by): the period quantity of the events whose
    timestamp falls in the segment, by the metric's aggregation over the whole segment
    (a unique_count is distinct over the segment, not a sum of daily counts). A charge
    without group_by has its row when nothing was used; one with group_by has a row per
    combination used. The segments' events are few groups, hashed (hash_groups). -#}
{{ config(pre_hook=hash_groups()) }}

with segment_charges as (
    select * from {{ ref('int_segment_charges') }}
),

segment_events as (
    select * from {{ ref('int_segment_events') }}
),

-- joined to the charges below: computed once, not for each charge
quantities as {{ materialized() }} (
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
