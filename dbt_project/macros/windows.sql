{#- The days a daily run rebuilds: [min_date, max_date) plus the `extra_days` that late
    events arrived for (a list of YYYY-MM-DD chosen by the orchestrator). -#}
{% macro in_daily_window(ts_column) -%}
    (({{ ts_column }} >= {{ ts_literal(var('min_date')) }}
      and {{ ts_column }} < {{ ts_literal(var('max_date')) }})
    {%- for day in var("extra_days") %}
     or ({{ ts_column }} >= {{ ts_literal(day) }}
         and {{ ts_column }} < {{ dbt.dateadd('day', 1, ts_literal(day)) }})
    {%- endfor %})
{%- endmacro %}
