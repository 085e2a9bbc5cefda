{#- One row per invoice line: a prorated base fee per segment and a usage line per segment
    and charge, priced exactly and rounded once to the currency's minor unit. -#}
with segments as (
    select * from {{ ref('int_subscription_segments') }}
),

usage as (
    select * from {{ ref('int_segment_usage_aggregated') }}
),

charges as (
    select * from {{ ref('stg_app__plan_charges') }}
),

tiers as (
    select * from {{ ref('stg_app__plan_tiers') }}
),

currencies as (
    select * from {{ ref('stg_app__currencies') }}
),

segment_usage as (
    select
        segments.segment_id,
        segments.tenant_id,
        segments.currency,
        segments.plan_key,
        segments.plan_version,
        segments.plan_name,
        segments.period_start,
        segments.segment_start,
        segments.segment_end,
        usage.metric,
        usage.quantity,
        charges.pricing_model,
        charges.unit_price,
        charges.package_size,
        charges.package_price,
        -- included units shrink with the segment, like the base fee (DECISIONLOG.md)
        charges.included * segments.active_seconds / segments.period_seconds as included,
        greatest(
            usage.quantity
                - charges.included * segments.active_seconds / segments.period_seconds,
            0
        ) as billable_quantity
    from segments
    inner join usage on usage.segment_id = segments.segment_id
    inner join charges
        on charges.plan_key = segments.plan_key
       and charges.plan_version = segments.plan_version
       and charges.metric = usage.metric
),

tiered as (
    select
        segment_usage.segment_id,
        segment_usage.metric,
        sum(
            case
                when segment_usage.pricing_model = 'graduated' then
                    greatest(
                        least(segment_usage.billable_quantity,
                              coalesce(tiers.up_to, segment_usage.billable_quantity))
                        - tiers.lower_bound,
                        0
                    ) * tiers.unit_price
                    + case when segment_usage.billable_quantity > tiers.lower_bound
                           then tiers.flat_fee else 0 end
                when segment_usage.billable_quantity > tiers.lower_bound
                     and (tiers.up_to is null or segment_usage.billable_quantity <= tiers.up_to)
                    then segment_usage.billable_quantity * tiers.unit_price + tiers.flat_fee
                else 0
            end
        ) as amount_exact
    from segment_usage
    inner join tiers
        on tiers.plan_key = segment_usage.plan_key
       and tiers.plan_version = segment_usage.plan_version
       and tiers.metric = segment_usage.metric
    where segment_usage.pricing_model in ('graduated', 'volume')
    group by segment_usage.segment_id, segment_usage.metric
),

usage_lines as (
    select
        segment_usage.segment_id,
        segment_usage.tenant_id,
        segment_usage.currency,
        segment_usage.period_start,
        'usage' as line_type,
        segment_usage.metric,
        segment_usage.plan_key,
        segment_usage.quantity,
        segment_usage.billable_quantity,
        case segment_usage.pricing_model
            when 'per_unit' then segment_usage.billable_quantity * segment_usage.unit_price
            when 'package' then
                ceil(segment_usage.billable_quantity / segment_usage.package_size)
                * segment_usage.package_price
            else coalesce(tiered.amount_exact, 0)
        end as amount_exact,
        segment_usage.plan_name || ': ' || segment_usage.metric
            || ' (' || segment_usage.pricing_model || ')' as description,
        segment_usage.segment_start as service_start,
        segment_usage.segment_end as service_end
    from segment_usage
    left join tiered
        on tiered.segment_id = segment_usage.segment_id
       and tiered.metric = segment_usage.metric
),

base_fee_lines as (
    select
        segment_id,
        tenant_id,
        currency,
        period_start,
        'base_fee' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        plan_key,
        active_seconds / period_seconds as quantity,
        active_seconds / period_seconds as billable_quantity,
        -- one division, last, so the exact amount is as precise as numeric allows
        base_price * active_seconds / period_seconds as amount_exact,
        plan_name || ': base fee'
            || case when active_seconds < period_seconds then ' (prorated)' else '' end
            as description,
        segment_start as service_start,
        segment_end as service_end
    from segments
    where billing_interval = 'month' and base_price > 0
),

yearly_base_fee_lines as (
    select
        segment_id,
        tenant_id,
        currency,
        period_start,
        'base_fee' as line_type,
        cast(null as {{ dbt.type_string() }}) as metric,
        plan_key,
        cast(1 as numeric) as quantity,
        cast(1 as numeric) as billable_quantity,
        base_price as amount_exact,
        plan_name || ': yearly base fee' as description,
        segment_start as service_start,
        {{ dbt.dateadd('year', 1, 'segment_start') }} as service_end
    from segments
    -- billed on the invoice of the month each yearly period starts
    where billing_interval = 'year' and base_price > 0
      and mod(cast({{ dbt.datediff(dbt.date_trunc('month', 'subscription_interval_start'),
                                   'period_start', 'month') }} as integer), 12) = 0
      and segment_start = greatest(subscription_interval_start, period_start)
),

all_lines as (
    select * from usage_lines
    union all
    select * from base_fee_lines
    union all
    select * from yearly_base_fee_lines
),

final as (
    select
        'inv_' || {{ dbt.right(dbt.hash(dbt.concat([
            "all_lines.tenant_id", "'|'", "all_lines.currency", "'|'",
            "cast(cast(all_lines.period_start as date) as " ~ dbt.type_string() ~ ")"])), 20) }}
            as invoice_id,
        'il_' || {{ dbt.right(dbt.hash(dbt.concat([
            "all_lines.segment_id", "'|'", "all_lines.line_type", "'|'",
            "coalesce(all_lines.metric, '')"])), 20) }} as line_id,
        all_lines.segment_id,
        all_lines.tenant_id,
        all_lines.currency,
        all_lines.period_start,
        all_lines.line_type,
        all_lines.metric,
        all_lines.plan_key,
        all_lines.quantity,
        all_lines.billable_quantity,
        all_lines.amount_exact,
        {{ to_minor_units('all_lines.amount_exact', 'currencies.minor_unit') }} as amount_minor,
        all_lines.description,
        all_lines.service_start,
        all_lines.service_end
    from all_lines
    inner join currencies on currencies.currency = all_lines.currency
)

select * from final
