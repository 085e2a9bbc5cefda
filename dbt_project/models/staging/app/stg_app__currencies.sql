with source as (
    select * from {{ source('app', 'currencies') }}
)

select currency, minor_unit
from source
