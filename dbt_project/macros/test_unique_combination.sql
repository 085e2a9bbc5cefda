{#- Generic test: the combination of columns is unique (no dbt packages here). With
    `daily_window: <date column>`, only on the days the run rebuilds (`in_daily_window`),
    read from the run's vars when the test runs. -#}
{% test unique_combination(model, columns, daily_window=none) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
{%- if daily_window %}
where {{ in_daily_window(daily_window) }}
{%- endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
