{#- One row per line of the invoices being computed: the run's months' lines and the
    adjustments billed on them. Incremental by month: a run replaces its months whole, also a
    month that has no line any more (empty_run_months), so no stale draft is left. -#}
{{
    config(
        materialized='incremental',
        on_schema_change='append_new_columns',
        pre_hook=empty_run_months(),
        **replace_by('period_start')
    )
}}

with priced as (
    select * from {{ ref('int_invoice_lines_priced') }}
    where period_start >= {{ ts_literal(var('min_month')) }}
      and period_start < {{ ts_literal(var('max_month')) }}
),

adjustments as (
    select * from {{ ref('int_invoice_adjustments') }}
),

final as (
    select
        {{ invoice_line_columns({
            'corrected_period_start': 'cast(null as ' ~ timestamp_type() ~ ')'
        }) }}
    from priced
    union all
    select {{ invoice_line_columns() }}
    from adjustments
)

select * from final
