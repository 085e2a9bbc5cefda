{#- Generic test: the column is never null on the days the run rebuilds (`in_daily_window`
    of the date column `daily_window`), read from the run's vars when the test runs. A
    test's `where` config would be fixed when dbt parses the project, not per run. -#}
{% test not_null_in_daily_window(model, column_name, daily_window) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is null and {{ in_daily_window(daily_window) }}
{% endtest %}
