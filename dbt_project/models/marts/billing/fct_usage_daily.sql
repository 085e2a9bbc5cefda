{#- One row per tenant, metric and UTC day. Incremental by day: a run replaces the days in
    its window (and the late days named in extra_days) whole, so re-running a day gives the same rows. -#}
{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        **replace_by('usage_date')
    )
}}

with events as (
    select * from {{ ref('int_events_deduplicated') }}
    where {{ in_daily_window('event_ts') }}
),

metrics as (
    select * from {{ ref('stg_app__metrics') }}
),

-- read by each aggregation's branch apart, each with its own filter
day_events as {{ not_materialized() }} (
    select
        events.tenant_id,
        events.metric,
        metrics.aggregation,
        cast({{ dbt.date_trunc('day', 'events.event_ts') }} as date) as usage_date,
        events.amount,
        events.event_ts,
        events.event_seq,
        case when metrics.aggregation = 'unique_count'
             then {{ json_text('events.metadata', 'metrics.property') }} end as property_value
    from events
    inner join metrics on metrics.metric = events.metric
),

quantities as (
    {{ aggregate_usage('day_events', ['tenant_id', 'metric', 'usage_date']) }}
),

final as (
    select
        tenant_id,
        metric,
        usage_date,
        cast(quantity as {{ decimal_type() }}) as quantity,
        cast(event_count as bigint) as event_count
    from quantities
)

select tenant_id, metric, usage_date, quantity, event_count from final
