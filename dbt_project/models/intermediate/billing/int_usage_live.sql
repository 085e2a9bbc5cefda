{#- Usage per tenant, metric, UTC day and combination of dimension values as it stands now: the counted events stored by the
    daily runs and those arrived since (int_events_pending), by the rules fct_usage_daily
    uses (usage_by_day). GET /v1/usage and the quota counters read it for one tenant,
    metric and range of days; PostgreSQL pushes those filters down to the arrivals' index.
    The API's reads need it before any daily run: `billing db up` and `billing serve` build
    it (the `live` selector). -#}
{{ config(materialized='view') }}

with events as (
    select event_seq, tenant_id, metric, amount, event_ts, metadata
    from {{ ref('int_events_deduplicated') }}

    union all

    select event_seq, tenant_id, metric, amount, event_ts, metadata
    from {{ ref('int_events_pending') }}
    where is_first
),

final as (
    {{ usage_by_day('events') }}
)

select tenant_id, metric, usage_date, quantity, event_count, dimensions from final
