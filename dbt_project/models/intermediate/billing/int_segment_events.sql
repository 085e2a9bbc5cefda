{#- One row per segment charge and counted event of its metric whose timestamp falls in the
    segment, with the combination of the charge's group_by values it carries (dimensions,
    '{}' without group_by, and how a line prints it). The segment's quantities
    (int_segment_usage_aggregated) and percentage fees (int_segment_percentage_fees) are
    made of these rows. In the upcoming invoice (macros/preview.sql) a row may be a partial
    aggregate of a whole day's stored events (int_usage_partials), or of a whole month's
    for a distinct count (int_usage_month_values), merged by the same rule
    (aggregate_usage); a charge priced by a percentage, a day the segment starts or ends
    in, and the events the partials do not hold yet are read event by event. -#}
{{ config(materialized=monthly_view()) }}

{%- set group_by = ['rows.group_by_1', 'rows.group_by_2', 'rows.group_by_3'] -%}

with segment_charges as (
    select * from {{ ref('int_segment_charges') }}
),

counted as (
    select tenant_id, metric, amount, event_ts, event_seq, metadata, arrival_batch
    from {{ ref('int_events_deduplicated') }}
    {%- if is_preview() %}

    union all

    -- the preview prices the events received since, as the run that stores them would
    select tenant_id, metric, amount, event_ts, event_seq, metadata, null as arrival_batch
    from {{ ref('int_events_pending') }}
    where is_first
    {%- endif %}
),

-- read by several branches, each with its own conditions (the preview's, by index)
events as {{ not_materialized() }} (
    select * from counted
    -- the run's months and the finalized months it may re-rate; segments pick their own
    where event_ts >= {{ dbt.dateadd('month', -var('adjustment_lookback_months'),
                                     run_month_start()) }}
      and event_ts < {{ run_month_end() }}
      and {{ preview_tenant('tenant_id') }}
),
{%- if is_preview() %}

partials as {{ not_materialized() }} (
    select * from {{ ref('int_usage_partials') }}
),

partials_through as (
    select coalesce(max(arrival_batch), 0) as arrival_batch from partials
),

stored_through as (
    select coalesce(max(arrival_batch), 0) as arrival_batch
    from {{ ref('int_events_arrivals') }}
),

month_values as {{ not_materialized() }} (
    select * from {{ ref('int_usage_month_values') }}
),

charges as (
    -- each segment charge with its metric's definition now, the UTC month of a segment
    -- that is one whole calendar month, and whether it is priced per event (a percentage)
    select
        segment_charges.*,
        {{ metric_definition('metrics') }} as definition,
        case when timezone('UTC', segment_charges.segment_start)
                      = date_trunc('month', timezone('UTC', segment_charges.segment_start))
                  and timezone('UTC', segment_charges.segment_end)
                      = date_trunc('month', timezone('UTC', segment_charges.segment_start))
                        + interval '1 month'
             then cast(timezone('UTC', segment_charges.segment_start) as date)
        end as whole_month,
        exists (
            select 1 from {{ ref('stg_app__plan_prices') }} as prices
            where prices.plan_key = segment_charges.plan_key
              and prices.plan_version = segment_charges.plan_version
              and prices.metric = segment_charges.metric
              and prices.pricing_model = 'percentage'
        ) as per_event
    from segment_charges
    inner join {{ ref('stg_app__metrics') }} as metrics
        on metrics.metric = segment_charges.metric
),

month_charges as (
    -- the unique_count charges of a whole month whose stored values the month's rows hold
    -- (int_usage_month_values): merged as far as the partials, every row of the month
    -- aggregated by the metric's definition now
    select charges.*
    from charges
    where charges.aggregation = 'unique_count'
      and charges.whole_month is not null
      and not charges.per_event
      and (select coalesce(max(arrival_batch), 0) from month_values)
          >= (select arrival_batch from partials_through)
      and not exists (
          select 1 from month_values
          where month_values.tenant_id = charges.tenant_id
            and month_values.metric = charges.metric
            and month_values.usage_month = charges.whole_month
            and month_values.definition <> charges.definition
      )
),

redefined_days as {{ materialized() }} (
    -- the days of a charge some partial of which aggregated its metric by another
    -- definition than the one now (a metric redefined): the charge's partials read once,
    -- not once for each of its days
    select distinct partials.tenant_id, partials.metric, partials.usage_date
    from charges
    inner join partials
        on partials.tenant_id = charges.tenant_id
       and partials.metric = charges.metric
       and partials.usage_date >= cast(timezone('UTC', charges.segment_start) as date)
       and partials.usage_date <= cast(timezone('UTC', charges.segment_end) as date)
    where partials.definition <> charges.definition
),

charge_days as (
    -- each UTC day the other segment charges touch, and whether its partials stand for
    -- it: a whole day of the segment, the charge not priced per event, every partial of
    -- the day aggregated by the metric's definition now
    select
        charges.*,
        days.usage_date,
        days.day_start >= charges.segment_start
            and days.day_start + interval '24 hours' <= charges.segment_end as whole_day,
        not charges.per_event and redefined_days.usage_date is null as mergeable
    from charges
    cross join lateral (
        -- UTC days are 24 hours long, whatever the session's time zone
        select day as day_start, cast(timezone('UTC', day) as date) as usage_date
        from generate_series(
            date_trunc('day', charges.segment_start, 'UTC'),
            charges.segment_end - interval '1 microsecond',
            interval '24 hours') as day
    ) as days
    left join redefined_days
        on redefined_days.tenant_id = charges.tenant_id
       and redefined_days.metric = charges.metric
       and redefined_days.usage_date = days.usage_date
    where not exists (
        select 1 from month_charges
        where month_charges.segment_id = charges.segment_id
          and month_charges.metric = charges.metric
    )
),

covered_days as (
    select * from charge_days where whole_day and mergeable
),

rows as (
    -- whole months of distinct values, from the values of the batches they hold
    select
        month_charges.segment_id, month_charges.metric, month_charges.aggregation,
        month_charges.group_by_1, month_charges.group_by_2, month_charges.group_by_3,
        month_values.dimensions as metadata, month_values.property_value,
        cast(null as {{ decimal_type() }}) as amount, month_values.event_count,
        cast(null as {{ decimal_type() }}) as max_amount,
        cast(null as {{ decimal_type() }}) as latest_amount,
        cast(null as {{ timestamp_type() }}) as event_ts,
        cast(null as {{ dbt.type_bigint() }}) as event_seq
    from month_charges
    inner join month_values
        on month_values.tenant_id = month_charges.tenant_id
       and month_values.metric = month_charges.metric
       and month_values.usage_month = month_charges.whole_month

    union all

    -- whole days, from the partials of the batches they hold
    select
        covered_days.segment_id, covered_days.metric, covered_days.aggregation,
        covered_days.group_by_1, covered_days.group_by_2, covered_days.group_by_3,
        partials.dimensions as metadata, partials.property_value, partials.amount,
        partials.event_count, partials.max_amount, partials.latest_amount,
        partials.event_ts, partials.event_seq
    from covered_days
    inner join partials
        on partials.tenant_id = covered_days.tenant_id
       and partials.metric = covered_days.metric
       and partials.usage_date = covered_days.usage_date

    union all

    -- the other days' stored events of those batches, one by one
    {{ segment_event_rows('charge_days', 'events',
        "not (charge_days.whole_day and charge_days.mergeable)
         and " ~ utc_date('events.event_ts') ~ " = charge_days.usage_date
         and events.arrival_batch <= (select arrival_batch from partials_through)") }}

    union all

    -- the events no partial holds yet: stored since, or received since. The batches are
    -- bounded above too (the newest stored), which keeps no row out: the planner guesses
    -- a `>` of a value it cannot see at a third of the events, a range at 0.5%, so the
    -- batch index leads whichever tenant it estimated (10M events, the biggest tenant
    -- first on a connection: 0.7 s a read, every tenant, against 40 ms)
    {{ segment_event_rows('segment_charges', 'events',
        "(events.arrival_batch is null
          or events.arrival_batch > (select arrival_batch from partials_through)
             and events.arrival_batch <= (select arrival_batch from stored_through))") }}
),
{%- else %}

rows as (
    {{ segment_event_rows('segment_charges', 'events') }}
),
{%- endif %}

final as (
    select
        segment_id,
        metric,
        aggregation,
        {{ dimension_key('rows.metadata', group_by) }} as dimensions,
        {{ dimension_label('rows.metadata', group_by) }} as dimension_label,
        amount,
        event_count,
        max_amount,
        latest_amount,
        event_ts,
        event_seq,
        property_value
    from rows
)

select * from final
