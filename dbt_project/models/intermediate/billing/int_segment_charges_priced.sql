{#- One row per segment, charge and combination billed: the exact amount in major units, before rounding.
    per_unit: billable × unit_price. package: whole packages × package_price. graduated:
    each tier's units at its price plus the flat fee of every tier reached. volume: every
    unit at the price of the tier the billable quantity falls in, plus its flat fee.
    percentage: the sum of its events' fees (int_segment_percentage_fees). A tier
    is reached when a billable unit falls in it; `up_to` is inclusive. -#}
with billable as (
    select * from {{ ref('int_segment_charges_billable') }}
),

tiers as (
    select * from {{ ref('stg_app__plan_tiers') }}
),

percentage as (
    select * from {{ ref('int_segment_percentage_fees') }}
),

tiered as (
    select
        billable.segment_id,
        billable.metric,
        billable.dimensions,
        sum(
            case
                when billable.billable_quantity <= tiers.lower_bound then 0
                when billable.pricing_model = 'graduated' then
                    {{ times('case
                                  when tiers.up_to is null
                                       or billable.billable_quantity < tiers.up_to
                                      then billable.billable_quantity
                                  else tiers.up_to
                              end - tiers.lower_bound', 'tiers.unit_price') }}
                    + tiers.flat_fee
                when tiers.up_to is null or billable.billable_quantity <= tiers.up_to
                    then {{ times('billable.billable_quantity', 'tiers.unit_price') }}
                        + tiers.flat_fee
                else 0
            end
        ) as amount_exact
    from billable
    inner join tiers
        on tiers.plan_key = billable.plan_key
       and tiers.plan_version = billable.plan_version
       and tiers.metric = billable.metric
       and tiers.price_dimensions = billable.price_dimensions
    where billable.pricing_model in ('graduated', 'volume')
    group by billable.segment_id, billable.metric, billable.dimensions
),

final as (
    select
        billable.segment_id,
        billable.tenant_id,
        billable.currency,
        billable.period_start,
        billable.plan_key,
        billable.plan_name,
        billable.segment_start,
        billable.segment_end,
        billable.in_trial,
        billable.metric,
        billable.dimensions,
        billable.dimension_label,
        billable.pricing_model,
        billable.quantity,
        -- a percentage's billable quantity: the amounts it took its rate on
        coalesce(percentage.charged_quantity, billable.billable_quantity) as billable_quantity,
        cast(case billable.pricing_model
            when 'per_unit' then {{ times('billable.billable_quantity', 'billable.unit_price') }}
            when 'package' then
                {{ times('ceil(billable.billable_quantity / billable.package_size)',
                         'billable.package_price') }}
            when 'percentage' then coalesce(percentage.amount_exact, 0)
            else coalesce(tiered.amount_exact, 0)
        end as {{ decimal_type() }}) as amount_exact
    from billable
    left join tiered
        on tiered.segment_id = billable.segment_id
       and tiered.metric = billable.metric
       and tiered.dimensions = billable.dimensions
    left join percentage
        on percentage.segment_id = billable.segment_id
       and percentage.metric = billable.metric
       and percentage.dimensions = billable.dimensions
)

select * from final
