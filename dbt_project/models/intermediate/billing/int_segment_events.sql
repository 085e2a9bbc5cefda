{#- One row per segment charge and counted event of its metric whose timestamp falls in the
    segment, with the combination of the charge's group_by values it carries (dimensions,
    '{}' without group_by, and how a line prints it). The segment's quantities
    (int_segment_usage_aggregated) and percentage fees (int_segment_percentage_fees) are
    made of these rows. -#}
{{ config(materialized='view') }}

{%- set group_by = ['segment_charges.group_by_1', 'segment_charges.group_by_2',
                    'segment_charges.group_by_3'] -%}

with segment_charges as (
    select * from {{ ref('int_segment_charges') }}
),

counted as (
    select tenant_id, metric, amount, event_ts, event_seq, metadata
    from {{ ref('int_events_deduplicated') }}
    {%- if is_preview() %}

    union all

    -- the preview prices the events received since, as the run that stores them would
    select tenant_id, metric, amount, event_ts, event_seq, metadata
    from {{ ref('int_events_pending') }}
    where is_first
    {%- endif %}
),

events as (
    select * from counted
    -- the run's months and the finalized months it may re-rate; segments pick their own
    where event_ts >= {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                     run_month_start()) }}
      and event_ts < {{ run_month_end() }}
      and {{ preview_tenant('tenant_id') }}
),

final as (
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
)

select * from final
