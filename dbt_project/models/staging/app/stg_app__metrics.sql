with source as (
    select * from {{ source('app', 'metrics') }}
)

select metric_key as metric, aggregation, property, allow_negative
from source
