{#- The events received that the arrivals do not hold yet, marked `is_first` by the same
    rule (pending_arrivals): what the next daily run will append. The live reads
    (GET /v1/usage, quotas) read it. -#}
{{ config(materialized='view') }}

{{ pending_arrivals(ref('int_events_unstored'), ref('int_events_arrivals')) }}
