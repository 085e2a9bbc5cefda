{#- One row per adjustment line: for a re-rated finalized month, per line type corrected
    (`corrected_line_type`: usage per metric and combination of dimension values, base fees,
    minimum commitments, each discount), what the month comes to now, less what its frozen
    invoice billed (nothing, for a tenant without an invoice that month), less the
    adjustments already frozen on later invoices. Credits are not re-rated: they paid an
    invoice's total, and the adjustment's invoice uses its own.
    It goes on one invoice only: the tenant's for the next open month, the month after the
    latest closed one, when the run prices it (adjustment_month: a run of several months
    bills as its months one by one would). A run of another month bills none (months run
    out of order put a correction on two drafts, both finalized later). -#}
{%- set billed_on = adjustment_month(ref('int_closed_months')) %}

with rerate as (
    select * from {{ ref('int_invoice_rerate_months') }}
),

recomputed as (
    -- the re-rated months' lines: of a run of several months, a closed month among them is
    -- priced for every tenant, and re-rated for those in `rerate` alone
    select rated.*
    from {{ ref('int_invoice_lines_rated') }} as rated
    inner join rerate
        on rerate.tenant_id = rated.tenant_id
       and rerate.period_start = rated.period_start
    where rated.period_start < {{ billed_on }}
),

frozen_lines as (
    select * from {{ ref('stg_app__finalized_invoice_lines') }}
    where {{ preview_tenant('tenant_id') }}
),

closed as (
    select * from {{ ref('int_closed_months') }}
),

currencies as (
    select * from {{ ref('stg_app__currencies') }}
),

amounts as (
    select tenant_id, currency, period_start as corrected_period_start,
           line_type as corrected_line_type, metric, dimensions, discount_id, amount_minor,
           quantity
    from recomputed
    union all
    select frozen_lines.tenant_id, frozen_lines.currency, frozen_lines.period_start,
           frozen_lines.line_type, frozen_lines.metric, frozen_lines.dimensions,
           frozen_lines.discount_id, -frozen_lines.amount_minor, -frozen_lines.quantity
    from frozen_lines
    inner join rerate
        on rerate.tenant_id = frozen_lines.tenant_id
       and rerate.period_start = frozen_lines.period_start
    where frozen_lines.line_type not in ('adjustment', 'credit')
    union all
    -- an adjustment frozen before it named the line type it corrects corrected usage (a
    -- metric) or a base fee (none)
    select frozen_lines.tenant_id, frozen_lines.currency, frozen_lines.corrected_period_start,
           coalesce(frozen_lines.corrected_line_type,
                    case when frozen_lines.metric is null then 'base_fee' else 'usage' end),
           frozen_lines.metric, frozen_lines.dimensions, frozen_lines.discount_id,
           -frozen_lines.amount_minor, -frozen_lines.quantity
    from frozen_lines
    inner join rerate
        on rerate.tenant_id = frozen_lines.tenant_id
       and rerate.period_start = frozen_lines.corrected_period_start
    where frozen_lines.line_type = 'adjustment'
),

deltas as (
    select
        tenant_id,
        currency,
        corrected_period_start,
        corrected_line_type,
        metric,
        dimensions,
        discount_id,
        sum(amount_minor) as amount_minor,
        sum(quantity) as quantity
    from amounts
    group by tenant_id, currency, corrected_period_start, corrected_line_type, metric,
             dimensions, discount_id
    having sum(amount_minor) <> 0
),

next_open as (
    select distinct next_open_month as month_start from closed
),

target as (
    select
        deltas.*,
        {{ billed_on }} as period_start
    from deltas
    cross join next_open
    -- nothing is finalized after the latest closed month, so its invoices are all open
    where next_open.month_start = {{ billed_on }}
),

final as (
    select
        {{ invoice_id('target.tenant_id', 'target.currency', 'target.period_start') }}
            as invoice_id,
        'il_' || {{ dbt.right(dbt.hash(dbt.concat([
            "'adjustment|'", "target.tenant_id", "'|'", "target.currency", "'|'",
            "cast(cast(target.corrected_period_start as date) as " ~ dbt.type_string() ~ ")",
            "'|'", "coalesce(target.metric, '')",
            "coalesce(" ~ dbt.concat(["'|'", "target.dimensions"]) ~ ", '')",
            "case when target.corrected_line_type in ('minimum', 'discount') then "
            ~ dbt.concat(["'|'", "target.corrected_line_type", "'|'",
                          "coalesce(target.discount_id, '')"]) ~ " else '' end"])), 20) }}
            as line_id,
        target.tenant_id,
        target.currency,
        target.period_start,
        'adjustment' as line_type,
        target.metric,
        cast(null as {{ dbt.type_string() }}) as plan_key,
        target.quantity,
        target.quantity as billable_quantity,
        cast(target.amount_minor as bigint) as amount_minor,
        'correction of ' || substring(cast(cast(target.corrected_period_start as date)
                                          as {{ dbt.type_string() }}), 1, 7)
            || ': ' || case target.corrected_line_type
                           when 'minimum' then 'minimum commitment'
                           when 'discount' then 'discount ' || target.discount_id
                           else coalesce(target.metric, 'base fee')
                       end
            || coalesce(' ' || target.dimensions, '') as description,
        target.corrected_period_start as service_start,
        {{ dbt.dateadd('month', 1, 'target.corrected_period_start') }} as service_end,
        target.corrected_period_start,
        target.dimensions,
        target.discount_id,
        cast(null as {{ dbt.type_string() }}) as grant_id,
        target.corrected_line_type
    from target
)

select * from final
