{#- One row per tenant, metric and UTC day with usage outside every subscription: events
    no active subscription covers, so no invoice bills them. Incremental by day. -#}
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

intervals as (
    select * from {{ ref('int_subscription_intervals') }}
),

uncovered as (
    select events.tenant_id, events.metric, events.event_ts, events.amount
    from events
    where not exists (
        select 1 from intervals
        where intervals.tenant_id = events.tenant_id
          and events.event_ts >= intervals.valid_from
          and events.event_ts < intervals.valid_to
    )
),

final as (
    select
        tenant_id,
        metric,
        {{ utc_date('event_ts') }} as usage_date,
        cast(count(*) as bigint) as event_count,
        cast(sum(amount) as {{ decimal_type() }}) as amount_sum
    from uncovered
    group by tenant_id, metric, {{ utc_date('event_ts') }}
)

select tenant_id, metric, usage_date, event_count, amount_sum from final
