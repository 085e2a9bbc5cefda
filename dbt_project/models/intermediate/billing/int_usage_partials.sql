{#- The counted events stored so far, aggregated per arrival batch, tenant, metric, UTC day,
    combination of the metric's dimension values (`dimensions`, a JSON object of them) and,
    for a unique_count, property value: the rows aggregate_usage merges (their sum, count,
    largest and last amount). The upcoming invoice (macros/preview.sql) reads a whole day
    of a segment from them instead of each of its stored events. A batch's first arrivals
    never change, so a daily run appends the partials of the batches it stored and nothing
    else. `definition` is the metric's as it was aggregated: a day whose partials hold
    another is read event by event. PostgreSQL only, as the preview. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        enabled=(target.type == 'postgres'),
        post_hook=postgres_only(create_index_hooks([
            ('int_usage_partials_day', '', '(tenant_id, metric, usage_date)'),
            ('int_usage_partials_batch', '', '(arrival_batch)'),
        ])),
    )
}}

with metrics as (
    select * from {{ ref('stg_app__metrics') }}
),

events as (
    select * from {{ ref('int_events_deduplicated') }}
    {%- if is_incremental() %}
    where arrival_batch > (select coalesce(max(arrival_batch), 0) from {{ this }})
    {%- endif %}
),

keyed as (
    select
        events.arrival_batch,
        events.tenant_id,
        events.metric,
        metrics.aggregation,
        {{ utc_date('events.event_ts') }} as usage_date,
        {{ metric_definition('metrics') }} as definition,
        {{ metric_dimensions('events.metadata', 'metrics') }} as dimensions,
        case when metrics.aggregation = 'unique_count'
             then {{ json_text('events.metadata', 'metrics.property') }} end as property_value,
        events.amount,
        events.event_ts,
        events.event_seq
    from events
    inner join metrics on metrics.metric = events.metric
),

final as (
    select
        arrival_batch,
        tenant_id,
        metric,
        usage_date,
        definition,
        dimensions,
        property_value,
        sum(amount) as amount,
        count(*) as event_count,
        max(amount) as max_amount,
        -- the last event's (a latest metric's quantity); the others need none
        (array_agg(amount order by event_ts desc, event_seq desc)
            filter (where aggregation = 'latest'))[1] as latest_amount,
        max(event_ts) as event_ts,
        (array_agg(event_seq order by event_ts desc, event_seq desc)
            filter (where aggregation = 'latest'))[1] as event_seq
    from keyed
    group by arrival_batch, tenant_id, metric, usage_date, definition, dimensions, property_value
)

select * from final
