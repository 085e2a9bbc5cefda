{#- One row per tenant, metric, UTC day and combination of the metric's dimension values. Incremental by day: a run replaces the days in
    its window (and the late days named in extra_days) whole, so re-running a day gives the same rows. -#}
{{
    config(
        materialized='incremental',
        on_schema_change='append_new_columns',
        **replace_by('usage_date')
    )
}}

with events as (
    select * from {{ ref('int_events_deduplicated') }}
    where {{ in_daily_window('event_ts') }}
),

final as (
    {{ usage_by_day('events') }}
)

select tenant_id, metric, usage_date, quantity, event_count, dimensions from final
