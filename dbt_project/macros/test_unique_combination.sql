{#- Generic test: the combination of columns is unique (no dbt packages here). With
    `daily_window: <date column>`, only on the days the run rebuilds (`in_daily_window`);
    with `monthly_window: <month column>`, only in the months it prices
    (`in_monthly_window`); either read from the run's vars when the test runs. It returns
    each row whose combination is held more than once, with how many times (`n`).

    Counted by a window over the rows sorted by the combination, not by GROUP BY ... HAVING,
    which PostgreSQL hashes (on fct_usage_daily at 1M events it guesses about 18,000
    combinations for 546,000 rows): a hash that outgrows work_mem (a test has the server's
    4MB, not the models' session settings) spills in batches, and in one month close of the
    benchmark those batches took 400 s of the daily run (PostgreSQL 18; perf:
    tuplehash_iterate 79%, memset 18%, each batch walking and clearing the whole hash
    table), where other runs' same plan took 0.7 s. The sort took 0.8 s on that table, and
    takes about that every time (bench/README.md, "Month close"). -#}
{% test unique_combination(model, columns, daily_window=none, monthly_window=none) %}
{%- set key = columns | join(', ') -%}
select *
from (
    select {{ key }}, count(*) over (partition by {{ key }}) as n
    from {{ model }}
    {%- if daily_window %}
    where {{ in_daily_window(daily_window) }}
    {%- elif monthly_window %}
    where {{ in_monthly_window(monthly_window) }}
    {%- endif %}
) as counted
where n > 1
{% endtest %}
