{#- One row per line a month comes to before tax (DECISIONLOG.md, "Commitments,
    discounts and prepaid credits"): the priced lines (usage, base fees), then per segment with a minimum
    commitment a true-up line when its usage lines come to less than the prorated minimum,
    then a line per discount in effect on the invoice, in the order the discounts started
    (then by id). A rate takes its share of the lines it applies to, an amount at most
    those lines; together they never take more than the invoice came to before them. Each
    line is in minor units, rounded once. Covers the run's months and the re-rated ones. -#}
with priced as (
    select * from {{ ref('int_invoice_lines_priced') }}
),

segments as (
    select * from {{ ref('int_subscription_segments') }}
),

discounts as (
    select * from {{ ref('stg_app__discounts') }}
),

currencies as (
    select * from {{ ref('stg_app__currencies') }}
),

segment_usage as (
    select segment_id, sum(amount_minor) as usage_minor
    from priced
    where line_type = 'usage'
    group by segment_id
),

minimums as (
    -- a trial has no minimum (nor a base fee)
    select
        segments.*,
        {{ to_minor_units(times('segments.active_seconds', 'segments.minimum_commitment')
                          ~ ' / segments.period_seconds', 'currencies.minor_unit') }}
            as minimum_minor,
        coalesce(segment_usage.usage_minor, 0) as usage_minor
    from segments
    inner join currencies on currencies.currency = segments.currency
    left join segment_usage on segment_usage.segment_id = segments.segment_id
    where segments.minimum_commitment is not null and not segments.in_trial
),

minimum_lines as (
    select
        {{ invoice_id('tenant_id', 'currency', 'period_start') }} as invoice_id,
        'il_' || {{ dbt.right(dbt.hash(dbt.concat(["segment_id", "'|minimum'"])), 20) }}
            as line_id,
        segment_id,
        tenant_id,
        currency,
        period_start,
        'minimum' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as dimensions,
        plan_key,
        active_seconds / period_seconds as quantity,
        active_seconds / period_seconds as billable_quantity,
        minimum_minor - usage_minor as amount_minor,
        plan_name || ': minimum commitment'
            || case when active_seconds < period_seconds then ' (prorated)' else '' end
            as description,
        segment_start as service_start,
        segment_end as service_end,
        cast(null as {{ dbt.type_string() }}) as discount_id
    from minimums
    where usage_minor < minimum_minor
),

charges as (
    select
        invoice_id, line_id, segment_id, tenant_id, currency, period_start, line_type, metric,
        dimensions, plan_key, quantity, billable_quantity, amount_minor, description,
        service_start, service_end, cast(null as {{ dbt.type_string() }}) as discount_id
    from priced
    union all
    select * from minimum_lines
),

invoices as (
    select invoice_id, tenant_id, currency, period_start, sum(amount_minor) as charged_minor
    from charges
    group by invoice_id, tenant_id, currency, period_start
),

in_effect as (
    -- an amount is in the tenant's currency: it applies to that currency's invoice only
    select
        invoices.invoice_id,
        invoices.tenant_id,
        invoices.currency,
        invoices.period_start,
        -- what the invoice came to before its discounts (nothing to take if not above 0)
        greatest(invoices.charged_minor, 0) as charged_minor,
        discounts.discount_id,
        discounts.description,
        discounts.rate,
        discounts.amount,
        discounts.starts,
        discounts.applies_to
    from invoices
    inner join discounts
        on discounts.tenant_id = invoices.tenant_id
       and discounts.starts <= invoices.period_start
       and (discounts.months is null
            or {{ dbt.dateadd('month', 'discounts.months', 'discounts.starts') }}
               > invoices.period_start)
       and (discounts.amount is null or discounts.currency = invoices.currency)
),

eligible as (
    -- the lines a discount applies to: every line, or those of the charges it names
    select
        in_effect.invoice_id,
        in_effect.discount_id,
        greatest(coalesce(sum(charges.amount_minor), 0), 0) as eligible_minor
    from in_effect
    left join charges
        on charges.invoice_id = in_effect.invoice_id
       and (in_effect.applies_to is null
            or {{ dbt.position(
                    "'\"' || case charges.line_type when 'usage' then charges.metric "
                    ~ "when 'base_fee' then 'base_fee' end || '\"'",
                    'in_effect.applies_to') }} > 0)
    group by in_effect.invoice_id, in_effect.discount_id
),

wanted as (
    select
        in_effect.*,
        least(
            case
                when in_effect.rate is not null
                    then {{ to_minor_units(times('eligible.eligible_minor', 'in_effect.rate'), 0) }}
                else {{ to_minor_units('in_effect.amount', 'currencies.minor_unit') }}
            end,
            eligible.eligible_minor
        ) as wanted_minor
    from in_effect
    inner join eligible
        on eligible.invoice_id = in_effect.invoice_id
       and eligible.discount_id = in_effect.discount_id
    inner join currencies on currencies.currency = in_effect.currency
),

taken as (
    -- in order, each takes what it wants of what the invoice has left
    select
        wanted.*,
        least(running_minor, charged_minor)
            - least(running_minor - wanted_minor, charged_minor) as taken_minor
    from (
        select
            wanted.*,
            sum(wanted_minor) over (
                partition by invoice_id
                order by starts, discount_id
                rows between unbounded preceding and current row
            ) as running_minor
        from wanted
    ) as wanted
),

discount_lines as (
    select
        invoice_id,
        'il_' || {{ dbt.right(dbt.hash(dbt.concat(["invoice_id", "'|discount|'", "discount_id"])), 20) }}
            as line_id,
        cast(null as {{ dbt.type_string() }}) as segment_id,
        tenant_id,
        currency,
        period_start,
        'discount' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as dimensions,
        cast(null as {{ dbt.type_string() }}) as plan_key,
        cast(1 as {{ decimal_type() }}) as quantity,
        cast(1 as {{ decimal_type() }}) as billable_quantity,
        -taken_minor as amount_minor,
        description,
        period_start as service_start,
        {{ dbt.dateadd('month', 1, 'period_start') }} as service_end,
        discount_id
    from taken
    where taken_minor > 0
),

final as (
    select * from charges
    union all
    select * from discount_lines
)

select
    invoice_id, line_id, segment_id, tenant_id, currency, period_start, line_type, metric,
    dimensions, plan_key, quantity, billable_quantity, amount_minor, description,
    service_start, service_end, discount_id
from final
