{#- One row per segment, charge and combination priced by a percentage: the sum of its
    events' fees. The segment's events in order (timestamp, then arrival): the first
    `free_units` (prorated, whole events) are free; `free_amount` (prorated) is taken off
    the first amounts; each other event pays rate × its amount above the free amount plus
    `fixed_fee`, held between `min_per_event` and `max_per_event`. -#}
with billable as (
    select * from {{ ref('int_segment_charges_billable') }}
    where pricing_model = 'percentage'
),

segment_events as (
    select * from {{ ref('int_segment_events') }}
),

ordered as (
    select
        billable.segment_id,
        billable.metric,
        billable.dimensions,
        billable.rate,
        billable.fixed_fee,
        billable.min_per_event,
        billable.max_per_event,
        billable.free_units,
        coalesce(billable.free_amount, 0) as free_amount,
        segment_events.amount,
        row_number() over (
            partition by billable.segment_id, billable.metric, billable.dimensions
            order by segment_events.event_ts, segment_events.event_seq
        ) as event_rank,
        sum(segment_events.amount) over (
            partition by billable.segment_id, billable.metric, billable.dimensions
            order by segment_events.event_ts, segment_events.event_seq
            rows between unbounded preceding and current row
        ) as amount_through
    from billable
    inner join segment_events
        on segment_events.segment_id = billable.segment_id
       and segment_events.metric = billable.metric
       and segment_events.dimensions = billable.dimensions
),

chargeable as (
    select
        ordered.*,
        coalesce(event_rank <= free_units, false) as is_free,
        -- the part of the event's amount past the free amount
        case
            when amount_through <= free_amount then 0
            when amount_through - amount >= free_amount then amount
            else amount_through - free_amount
        end as charged_amount
    from ordered
),

fees as (
    select
        chargeable.*,
        case when is_free then 0 else
            -- greatest and least skip a null bound
            least(
                greatest(
                    {{ times('charged_amount', 'rate') }} + coalesce(fixed_fee, 0),
                    min_per_event),
                max_per_event)
        end as fee
    from chargeable
),

final as (
    select
        segment_id,
        metric,
        dimensions,
        cast(sum(case when is_free then 0 else charged_amount end) as {{ decimal_type() }})
            as charged_quantity,
        cast(sum(fee) as {{ decimal_type() }}) as amount_exact
    from fees
    group by segment_id, metric, dimensions
)

select * from final
