{#- The events received that the arrivals do not hold yet (unstored_arrivals), without the
    first-arrival ranking: the daily run's plan reads their days (late events) here, which
    costs a scan of what arrived since the last batch, never a sort of it. -#}
{{ config(materialized='view') }}

{{ unstored_arrivals(ref('int_events_arrivals')) }}
