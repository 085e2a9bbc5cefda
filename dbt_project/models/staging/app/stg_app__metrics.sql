with source as (
    select * from {{ source('app', 'metrics') }}
)

select
    metric_key as metric,
    aggregation,
    property,
    allow_negative,
    -- the metadata keys that split the metric's usage, in the catalog's order (null: none)
    {{ json_item('dimensions', 0) }} as dimension_1,
    {{ json_item('dimensions', 1) }} as dimension_2,
    {{ json_item('dimensions', 2) }} as dimension_3
from source
