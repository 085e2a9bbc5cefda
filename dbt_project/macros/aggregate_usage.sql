{#- The period semantics of CONTRACT.md in one place: over the rows of `events` grouped by
    `keys`, sum and count add up, max is the largest, unique_count counts distinct property
    values (each value once, then the values counted), latest is the last value by timestamp.
    A row of `events` is one event or a partial aggregate of some (int_usage_partials, the
    upcoming invoice's): its `amount` is their sum, `event_count` how many, `max_amount`
    the largest, `latest_amount` the last one's at `event_ts` and `event_seq`, and a
    unique_count's rows are one per property value. An event is its own partial
    (event_partial_columns). -#}
{% macro aggregate_usage(events, keys) -%}
    {%- set k = keys | join(', ') -%}
    select
        {{ k }},
        case max(aggregation)
            when 'sum' then sum(amount)
            when 'count' then cast(sum(event_count) as {{ decimal_type() }})
            when 'max' then max(max_amount)
        end as quantity,
        cast(sum(event_count) as {{ dbt.type_bigint() }}) as event_count
    from {{ events }}
    where aggregation in ('sum', 'count', 'max')
    group by {{ k }}

    union all

    -- each value once, then the values counted: two groupings a hash can do, where a
    -- distinct count would sort every row (a value's partials of each day of a month)
    select {{ k }}, cast(count(property_value) as {{ decimal_type() }}) as quantity,
           cast(sum(event_count) as {{ dbt.type_bigint() }}) as event_count
    from (
        select {{ k }}, property_value, sum(event_count) as event_count
        from {{ events }}
        where aggregation = 'unique_count'
        group by {{ k }}, property_value
    ) as unique_values
    group by {{ k }}

    union all

    select {{ k }}, latest_amount as quantity, event_count
    from (
        select
            {{ k }},
            latest_amount,
            cast(sum(event_count) over (partition by {{ k }}) as {{ dbt.type_bigint() }})
                as event_count,
            row_number() over (partition by {{ k }} order by event_ts desc, event_seq desc)
                as recency
        from {{ events }}
        where aggregation = 'latest'
    ) as latest_ranked
    where recency = 1
{%- endmacro %}

{#- The rows of int_segment_events for the events of `events` (tenant_id, metric, amount,
    event_ts, event_seq, metadata) whose timestamp falls in a segment of `charges` (a
    segment charge a row: segment, tenant, metric, aggregation, property, group_by), where
    `condition` holds too: each an event, a partial aggregate of one. -#}
{% macro segment_event_rows(charges, events, condition='true') -%}
    select
        {{ charges }}.segment_id, {{ charges }}.metric, {{ charges }}.aggregation,
        {{ charges }}.group_by_1, {{ charges }}.group_by_2, {{ charges }}.group_by_3,
        {{ events }}.metadata,
        case when {{ charges }}.aggregation = 'unique_count'
             then {{ json_text(events ~ '.metadata', charges ~ '.property') }}
        end as property_value,
        {{ events }}.amount, {{ event_partial_columns(events ~ '.amount') }},
        {{ events }}.event_ts, {{ events }}.event_seq
    from {{ charges }}
    inner join {{ events }}
        on {{ events }}.tenant_id = {{ charges }}.tenant_id
       and {{ events }}.metric = {{ charges }}.metric
       and {{ events }}.event_ts >= {{ charges }}.segment_start
       and {{ events }}.event_ts < {{ charges }}.segment_end
    where {{ condition }}
{%- endmacro %}

{#- The columns that make an event (with `amount`) a partial aggregate of one event. -#}
{% macro event_partial_columns(amount) -%}
    cast(1 as {{ dbt.type_bigint() }}) as event_count,
    {{ amount }} as max_amount,
    {{ amount }} as latest_amount
{%- endmacro %}


{#- Usage per tenant, metric, UTC day and combination of the metric's dimension values
    (dimensions, '{}' for a metric without), aggregated by each metric's rule, of the rows
    of `events` (event_seq, tenant_id, metric, amount, event_ts, metadata; the counted events
    only) and those of `partials` (rows of int_usage_partials, aggregated by each metric's
    definition now): fct_usage_daily over the stored arrivals of its days, int_usage_live over
    every counted event for the API's live reads. -#}
{% macro usage_by_day(events, partials=none) -%}
with metrics as (
    select * from {{ ref('stg_app__metrics') }}
),

-- read by each aggregation's branch apart, each with its own filter
day_events as {{ not_materialized() }} (
    select
        events.tenant_id,
        events.metric,
        metrics.aggregation,
        {{ utc_date('events.event_ts') }} as usage_date,
        {{ dimension_key('events.metadata', ['metrics.dimension_1', 'metrics.dimension_2',
                                             'metrics.dimension_3']) }} as dimensions,
        events.amount,
        {{ event_partial_columns('events.amount') }},
        events.event_ts,
        events.event_seq,
        case when metrics.aggregation = 'unique_count'
             then {{ json_text('events.metadata', 'metrics.property') }} end as property_value
    from {{ events }} as events
    inner join metrics on metrics.metric = events.metric
    {%- if partials is not none %}

    union all

    -- a partial holds its dimension values as the events' metadata held them
    select
        partials.tenant_id,
        partials.metric,
        metrics.aggregation,
        partials.usage_date,
        {{ dimension_key('partials.dimensions', ['metrics.dimension_1', 'metrics.dimension_2',
                                                 'metrics.dimension_3']) }} as dimensions,
        partials.amount,
        partials.event_count,
        partials.max_amount,
        partials.latest_amount,
        partials.event_ts,
        partials.event_seq,
        partials.property_value
    from {{ partials }} as partials
    inner join metrics on metrics.metric = partials.metric
    {%- endif %}
),

quantities as (
    {{ aggregate_usage('day_events', ['tenant_id', 'metric', 'usage_date', 'dimensions']) }}
)

select
    tenant_id,
    metric,
    usage_date,
    cast(quantity as {{ decimal_type() }}) as quantity,
    cast(event_count as bigint) as event_count,
    cast(dimensions as {{ dbt.type_string() }}) as dimensions
from quantities
{%- endmacro %}
