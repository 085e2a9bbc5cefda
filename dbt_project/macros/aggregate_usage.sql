{#- The period semantics of CONTRACT.md in one place: over the rows of `events` grouped by
    `keys`, sum and count add up, max is the largest, unique_count counts distinct property
    values (apart: a distinct count sorts its rows), latest is the last value by timestamp.
    `events` needs keys, aggregation, amount, event_ts, event_seq and property_value. -#}
{% macro aggregate_usage(events, keys) -%}
    {%- set k = keys | join(', ') -%}
    select
        {{ k }},
        case max(aggregation)
            when 'sum' then sum(amount)
            when 'count' then cast(count(*) as {{ decimal_type() }})
            when 'max' then max(amount)
        end as quantity,
        count(*) as event_count
    from {{ events }}
    where aggregation in ('sum', 'count', 'max')
    group by {{ k }}

    union all

    select {{ k }}, cast(count(distinct property_value) as {{ decimal_type() }}) as quantity,
           count(*) as event_count
    from {{ events }}
    where aggregation = 'unique_count'
    group by {{ k }}

    union all

    select {{ k }}, amount as quantity, event_count
    from (
        select
            {{ k }},
            amount,
            count(*) over (partition by {{ k }}) as event_count,
            row_number() over (partition by {{ k }} order by event_ts desc, event_seq desc)
                as recency
        from {{ events }}
        where aggregation = 'latest'
    ) as latest_ranked
    where recency = 1
{%- endmacro %}
