{#- One row per tenant, metric and UTC day. Incremental by day: a run replaces the days in
    its window (and the late days named in extra_days) whole, so re-running a day gives the same rows. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='usage_date',
        on_schema_change='fail',
    )
}}

with events as (
    select * from {{ ref('int_events_deduplicated') }}
    where {{ in_daily_window('event_ts') }}
),

metrics as (
    select * from {{ ref('stg_app__metrics') }}
),

day_events as (
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

additive as (
    select
        tenant_id,
        metric,
        usage_date,
        case max(aggregation)
            when 'sum' then sum(amount)
            when 'count' then cast(count(*) as numeric)
            when 'max' then max(amount)
        end as quantity,
        count(*) as event_count
    from day_events
    where aggregation in ('sum', 'count', 'max')
    group by tenant_id, metric, usage_date
),

distinct_counts as (
    -- apart: a distinct count sorts its rows, which the additive aggregations need not
    select
        tenant_id,
        metric,
        usage_date,
        cast(count(distinct property_value) as numeric) as quantity,
        count(*) as event_count
    from day_events
    where aggregation = 'unique_count'
    group by tenant_id, metric, usage_date
),

latest_ranked as (
    select
        tenant_id,
        metric,
        usage_date,
        amount,
        count(*) over (partition by tenant_id, metric, usage_date) as event_count,
        row_number() over (
            partition by tenant_id, metric, usage_date order by event_ts desc, event_seq desc
        ) as recency
    from day_events
    where aggregation = 'latest'
),

final as (
    select
        tenant_id,
        metric,
        usage_date,
        cast(quantity as numeric) as quantity,
        cast(event_count as bigint) as event_count
    from additive
    union all
    select
        tenant_id,
        metric,
        usage_date,
        cast(quantity as numeric) as quantity,
        cast(event_count as bigint) as event_count
    from distinct_counts
    union all
    select
        tenant_id,
        metric,
        usage_date,
        cast(amount as numeric) as quantity,
        cast(event_count as bigint) as event_count
    from latest_ranked
    where recency = 1
)

select tenant_id, metric, usage_date, quantity, event_count from final
