{#- The days a daily run rebuilds: [min_date, max_date) plus the `extra_days` that late
    events arrived for (a list of YYYY-MM-DD chosen by the orchestrator). `column` is an
    instant, or with `dates` a UTC date (compared with dates: an index on it serves). -#}
{% macro in_daily_window(column, dates=false) -%}
    {%- if dates -%}
    (({{ column }} >= cast('{{ var("min_date") }}' as date)
      and {{ column }} < cast('{{ var("max_date") }}' as date))
    {%- for day in var("extra_days") %}
     or {{ column }} = cast('{{ day }}' as date)
    {%- endfor %})
    {%- else -%}
    (({{ column }} >= {{ ts_literal(var('min_date')) }}
      and {{ column }} < {{ ts_literal(var('max_date')) }})
    {%- for day in var("extra_days") %}
     or ({{ column }} >= {{ ts_literal(day) }}
         and {{ column }} < {{ dbt.dateadd('day', 1, ts_literal(day)) }})
    {%- endfor %})
    {%- endif -%}
{%- endmacro %}

{#- The months a monthly run prices: [min_month, max_month) of its vars (run_month_start),
    every month when it was given none. `column` is a month's first instant. The invoice
    lines a run replaces (int_invoice_lines_draft, fct_invoice_lines, empty_run_months) and
    the data tests of the invoices read these months alone: the months before are frozen
    (finalized invoices never change) or drafts an earlier run built and tested, which this
    run leaves as they are (DECISIONLOG.md, "What a run tests"). -#}
{% macro in_monthly_window(column) -%}
    ({{ column }} >= {{ run_month_start() }} and {{ column }} < {{ run_month_end() }})
{%- endmacro %}
