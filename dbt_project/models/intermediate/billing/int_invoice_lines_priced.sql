{#- One row per invoice line computed from the data as it is now: a usage line per segment,
    charge and combination of its group_by values (the values in its description and in
    `dimensions`), a prorated base fee per segment of a monthly plan, a yearly plan's fee in the
    month each yearly period starts and its credit, at the price that fee was billed at, when
    it ends early. A trial's segments bill no base fee (a yearly plan's first year starts
    when its trial ends). Each line is rounded
    once to the currency's minor unit; a line that comes to more than any price bills
    (line_minor_units) bills 0 and holds the tenant's invoices (int_invoice_holds). Covers
    the run's months and the re-rated ones. -#}
with segments as (
    select * from {{ ref('int_subscription_segments') }}
),

priced as (
    select * from {{ ref('int_segment_charges_priced') }}
),

currencies as (
    select * from {{ ref('stg_app__currencies') }}
),

plan_versions as (
    select * from {{ ref('stg_app__plan_versions') }}
),

usage_lines as (
    select
        segment_id,
        tenant_id,
        currency,
        period_start,
        'usage' as line_type,
        metric,
        case when dimensions <> '{}' then dimensions end as dimensions,
        plan_key,
        quantity,
        billable_quantity,
        amount_exact,
        plan_name || ': ' || metric
            || case when dimensions <> '{}' then ', ' || dimension_label else '' end
            || ' (' || pricing_model || ')'
            || case when in_trial then ' during the trial' else '' end as description,
        segment_start as service_start,
        segment_end as service_end
    from priced
),

monthly_base_fee_lines as (
    select
        segment_id,
        tenant_id,
        currency,
        period_start,
        'base_fee' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as dimensions,
        plan_key,
        active_seconds / period_seconds as quantity,
        active_seconds / period_seconds as billable_quantity,
        -- one division, last, so the exact amount is as precise as numeric allows
        {{ times('active_seconds', 'base_price') }} / period_seconds as amount_exact,
        plan_name || ': base fee'
            || case when active_seconds < period_seconds then ' (prorated)' else '' end
            as description,
        segment_start as service_start,
        segment_end as service_end
    from segments
    where billing_interval = 'month' and base_price > 0 and not in_trial
),

yearly_segments as (
    select
        segments.*,
        cast({{ dbt.datediff(dbt.date_trunc('month', 'subscription_interval_start'),
                             'period_start', 'month') }} as integer) as months_in
    from segments
    where billing_interval = 'year' and base_price > 0 and not in_trial
),

yearly_anniversaries as (
    select
        yearly_segments.*,
        {{ dbt.dateadd('year', 'cast(months_in / 12 as integer)', 'subscription_interval_start') }}
            as anniversary
    from yearly_segments
),

yearly_fee_lines as (
    -- the month a yearly period starts bills the whole year, if the period starts at all
    select
        segment_id,
        tenant_id,
        currency,
        period_start,
        'base_fee' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as dimensions,
        plan_key,
        cast(1 as {{ decimal_type() }}) as quantity,
        cast(1 as {{ decimal_type() }}) as billable_quantity,
        base_price as amount_exact,
        plan_name || ': yearly base fee' as description,
        anniversary as service_start,
        {{ dbt.dateadd('year', 1, 'anniversary') }} as service_end
    from yearly_anniversaries
    where mod(months_in, 12) = 0
      and anniversary >= segment_start
      and anniversary < segment_end
),

yearly_endings as (
    -- the last segment of a yearly subscription interval that ends before its period does
    select
        yearly_anniversaries.*,
        case
            when anniversary < subscription_interval_end then anniversary
            else {{ dbt.dateadd('year', 'cast(months_in / 12 as integer) - 1',
                                'subscription_interval_start') }}
        end as period_anniversary
    from yearly_anniversaries
    where segment_end = subscription_interval_end
),

yearly_credit_lines as (
    select
        segment_id,
        tenant_id,
        currency,
        period_start,
        'base_fee' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        cast(null as {{ dbt.type_string() }}) as dimensions,
        plan_key,
        unused_seconds / year_seconds as quantity,
        unused_seconds / year_seconds as billable_quantity,
        -{{ times('unused_seconds', 'billed_price') }} / year_seconds as amount_exact,
        plan_name || ': credit for the unused part of the year' as description,
        subscription_interval_end as service_start,
        year_end as service_end
    from (
        select
            yearly_endings.*,
            -- the version that priced the year's fee: the one in effect at the start of the
            -- segment it was billed on (its month, or the subscription's start in it)
            billed.base_price as billed_price,
            {{ dbt.dateadd('year', 1, 'period_anniversary') }} as year_end,
            {{ epoch_seconds(dbt.dateadd('year', 1, 'period_anniversary')) }}
                - {{ epoch_seconds('subscription_interval_end') }} as unused_seconds,
            {{ epoch_seconds(dbt.dateadd('year', 1, 'period_anniversary')) }}
                - {{ epoch_seconds('period_anniversary') }} as year_seconds
        from yearly_endings
        inner join plan_versions as billed
            on billed.plan_key = yearly_endings.plan_key
           and billed.effective_from <= greatest(
                   yearly_endings.subscription_interval_start,
                   {{ dbt.date_trunc('month', 'yearly_endings.period_anniversary') }})
           and billed.effective_to > greatest(
                   yearly_endings.subscription_interval_start,
                   {{ dbt.date_trunc('month', 'yearly_endings.period_anniversary') }})
    ) as endings
    where unused_seconds > 0
),

all_lines as (
    select * from usage_lines
    union all
    select * from monthly_base_fee_lines
    union all
    select * from yearly_fee_lines
    union all
    select * from yearly_credit_lines
),

final as (
    select
        {{ invoice_id('all_lines.tenant_id', 'all_lines.currency', 'all_lines.period_start') }}
            as invoice_id,
        'il_' || {{ dbt.right(dbt.hash(dbt.concat([
            "all_lines.segment_id", "'|'", "all_lines.line_type", "'|'",
            "coalesce(all_lines.metric, '')", "'|'", "all_lines.description"])), 20) }}
            as line_id,
        all_lines.segment_id,
        all_lines.tenant_id,
        all_lines.currency,
        all_lines.period_start,
        all_lines.line_type,
        all_lines.metric,
        all_lines.dimensions,
        all_lines.plan_key,
        all_lines.quantity,
        all_lines.billable_quantity,
        cast(all_lines.amount_exact as {{ decimal_type() }}) as amount_exact,
        {{ line_minor_units('all_lines.amount_exact', 'currencies.minor_unit') }} as amount_minor,
        all_lines.description,
        all_lines.service_start,
        all_lines.service_end
    from all_lines
    inner join currencies on currencies.currency = all_lines.currency
)

select * from final
