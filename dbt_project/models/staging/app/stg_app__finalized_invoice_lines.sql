with source as (
    select * from {{ source('app', 'finalized_invoice_lines') }}
)

select {{ invoice_line_columns() }}
from source
