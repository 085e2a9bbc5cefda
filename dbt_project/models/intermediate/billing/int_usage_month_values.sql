{#- The stored first arrivals per arrival batch, tenant, metric, calendar month (UTC),
    definition the metric was aggregated by and combination of its dimension values, with
    a row of its own for each (unique_count) property value the month had not seen before
    the batch, holding the batch's events of it; the events of the values seen before, and
    of no value, are one row without a value. So a month's rows hold each value once and
    every event, as many rows as values (a user of a month is one row where the partials
    have one per user and day). The upcoming invoice (macros/preview.sql) reads the
    distinct values of a unique_count segment that is a whole month from here, when every
    row of its month has the metric's definition now. Made of the partials
    (int_usage_partials): a daily run appends those of the batches the partials gained,
    each value looked up in the unique index. PostgreSQL only, as the partials. -#}
{%- set value_columns = [
    'usage_month', 'tenant_id', 'metric', 'definition', 'dimensions', 'property_value'
] -%}
{%- set value_key = value_columns | join(', ') -%}
{#- the first batch is a bulk load, as the arrivals' (drop_indexes_when_empty). The unique
    index is keyed by the month first, so a day's batch adds its values in its month's part
    of the index, as the arrivals' and partials' are keyed by the day (arrivals_indexes):
    keyed by the tenant first, a new day at 10M events wrote all over it (the model 1.97 s,
    now 1.55; DECISIONLOG.md). -#}
{%- set indexes = [
    ('int_usage_month_values_month_value', 'unique', '(' ~ value_key ~ ')'),
    ('int_usage_month_values_batch', '', '(arrival_batch)'),
] -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        enabled=(target.type == 'postgres'),
        pre_hook=postgres_only([drop_indexes_when_empty(indexes)]),
        post_hook=postgres_only(create_index_hooks(
            indexes, retired=['int_usage_month_values_value'])),
    )
}}

{#- an empty table holds no value seen before: the first batch looks up none -#}
{%- set look_up_seen = is_incremental() and not is_empty(this) -%}

with partials as (
    select
        arrival_batch,
        tenant_id,
        metric,
        cast(date_trunc('month', usage_date) as date) as usage_month,
        definition,
        dimensions,
        property_value,
        event_count
    from {{ ref('int_usage_partials') }}
    {%- if is_incremental() %}
    where arrival_batch > (select coalesce(max(arrival_batch), 0) from {{ this }})
    {%- endif %}
),

marked as (
    -- a value the month had not seen before the batch keeps its row, with every event of
    -- it in the batch (the grouping below makes it one row); the events of a value seen
    -- before are counted in the row without a value. One grouping, hashed: a window
    -- marking each value's first row sorted the rows by their six keys first (10M events,
    -- the first batch's query: 15.8 s, now 5.6-6.0). A value seen before is one probe of the
    -- unique index per new row with a value (join_one): as a NOT EXISTS the planner
    -- hashed every stored month's values instead, a scan that grew with the table's
    -- history (a new day at 10M events: 1.76M rows read for 52k new ones)
    {%- if look_up_seen %}
    select
        partials.arrival_batch, partials.tenant_id, partials.metric, partials.usage_month,
        partials.definition, partials.dimensions,
        case when seen.found is null then partials.property_value end as property_value,
        partials.event_count
    from partials
    {%- set same_value = [] -%}
    {%- for column in value_columns -%}
        {%- do same_value.append('seen.' ~ column ~ ' = partials.' ~ column) -%}
    {%- endfor %}
    {{ join_one('left', this, 'seen', same_value | join(' and ')) }}
    where partials.property_value is not null

    union all

    select
        arrival_batch, tenant_id, metric, usage_month, definition, dimensions,
        property_value,
        event_count
    from partials
    where partials.property_value is null
    {%- else %}
    select * from partials
    {%- endif %}
),

final as (
    select
        arrival_batch,
        tenant_id,
        metric,
        usage_month,
        definition,
        dimensions,
        property_value,
        cast(sum(event_count) as {{ dbt.type_bigint() }}) as event_count
    from marked
    group by arrival_batch, tenant_id, metric, usage_month, definition, dimensions, property_value
)

select * from final
