{#- The stored first arrivals per tenant, metric, calendar month (UTC), definition the
    metric was aggregated by, combination of its dimension values and (unique_count)
    property value, with how many events: the partials of the month's days
    (int_usage_partials) merged, one row per user of a month where the partials have one
    per user and day. The upcoming invoice (macros/preview.sql) reads the distinct values
    of a unique_count segment that is a whole month from here, as many rows as values,
    when every row of its month has the metric's definition now. A daily run merges the
    batches appended to the partials since its newest (`arrival_batch`) into the months
    they reach of each tenant and metric. PostgreSQL only, as the partials. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['tenant_id', 'metric', 'usage_month'],
        enabled=(target.type == 'postgres'),
        post_hook=postgres_only(create_index_hooks([
            ('int_usage_month_values_month', '', '(tenant_id, metric, usage_month)'),
            ('int_usage_month_values_batch', '', '(arrival_batch)'),
        ])),
    )
}}

with partials as (
    select
        tenant_id,
        metric,
        cast(date_trunc('month', usage_date) as date) as usage_month,
        definition,
        dimensions,
        property_value,
        event_count,
        arrival_batch
    from {{ ref('int_usage_partials') }}
    {%- if is_incremental() %}
    where arrival_batch > (select coalesce(max(arrival_batch), 0) from {{ this }})
    {%- endif %}
),

merged as (
    select * from partials
    {%- if is_incremental() %}

    union all

    -- what the months the new batches reach hold already
    select this.tenant_id, this.metric, this.usage_month, this.definition, this.dimensions,
           this.property_value, this.event_count, this.arrival_batch
    from {{ this }} as this
    where exists (
        select 1 from partials
        where partials.tenant_id = this.tenant_id
          and partials.metric = this.metric
          and partials.usage_month = this.usage_month
    )
    {%- endif %}
),

final as (
    select
        tenant_id,
        metric,
        usage_month,
        definition,
        dimensions,
        property_value,
        cast(sum(event_count) as {{ dbt.type_bigint() }}) as event_count,
        -- the newest batch merged into the row: the newest of all is how far the table is
        max(arrival_batch) as arrival_batch
    from merged
    group by tenant_id, metric, usage_month, definition, dimensions, property_value
)

select * from final
