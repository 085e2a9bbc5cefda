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

{#- The month a monthly run bills its adjustments on, the months before it (within the
    lookback) the closed months it may re-rate: the next open month (`closed`, a relation
    of int_closed_months: the month after the newest closed one) when it is one of the
    run's months, else the run's first month (on which a run bills none: the next open
    month is not it). A run of several months at once (a backfill in one run, or a build
    given no months) bills what its months run one by one would: the corrections of the
    months closed before the next open one go on its invoices, even when the run's first
    months are among them (DECISIONLOG.md, "Late usage is an adjustment"). A run of one
    month, and the preview, compare their first month with the next open one themselves
    (int_invoice_adjustments), as before. -#}
{% macro adjustment_month(closed) -%}
    {%- set first, last = var('min_month') | string, var('max_month') | string -%}
    {%- set months = (last[:4] | int) * 12 + (last[5:7] | int)
                     - (first[:4] | int) * 12 - (first[5:7] | int) -%}
    {%- if is_preview() or months == 1 -%}
        {{ run_month_start() }}
    {%- else -%}
        (select case when max(next_open_month) >= {{ run_month_start() }}
                      and max(next_open_month) < {{ run_month_end() }}
                     then max(next_open_month)
                     else {{ run_month_start() }}
                end
         from {{ closed }})
    {%- endif -%}
{%- endmacro %}
