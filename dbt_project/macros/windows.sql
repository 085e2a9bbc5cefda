{#- The days a daily run rebuilds: [min_date, max_date) plus the `extra_days` that late
    events arrived for (a list of YYYY-MM-DD chosen by the orchestrator). -#}
{% macro in_daily_window(ts_column) -%}
    (({{ ts_column }} >= cast('{{ var("min_date") }}' as timestamptz)
      and {{ ts_column }} < cast('{{ var("max_date") }}' as timestamptz))
    {%- for day in var("extra_days") %}
     or ({{ ts_column }} >= cast('{{ day }}' as timestamptz)
         and {{ ts_column }} < {{ dbt.dateadd('day', 1, "cast('" ~ day ~ "' as timestamptz)") }})
    {%- endfor %})
{%- endmacro %}
