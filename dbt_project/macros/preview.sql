{#- The upcoming invoice (GET /v1/invoices/upcoming) is the monthly run's own models built a
    second time, inlined in one view of the schema `preview`, fct_upcoming_invoices
    (environment BILLING_DBT_PREVIEW=true, selector `preview`,
    orchestration.pipeline.build_preview): the same SQL, with the run's month and one tenant
    read from the session (settings billing.preview_month and billing.preview_tenant, which
    the API sets per read) instead of the run's vars. One set of rating rules, two ways to
    run it (DECISIONLOG.md, "The upcoming invoice"). -#}
{#- An environment variable, not a var: it decides configs (a view, the schema), which dbt
    reads when it parses, and the warm runner parses without vars (orchestration.dbt_run). -#}
{% macro is_preview() -%}
    {{ return(env_var('BILLING_DBT_PREVIEW', 'false') == 'true') }}
{%- endmacro %}

{#- How a monthly model of the chain is materialized: as ``materialized`` in a run, `ephemeral`
    in the preview (a CTE of the one view the API reads, preview.fct_upcoming_invoices),
    so that a read computes each model once, whatever reads it twice (int_segment_events,
    int_invoice_lines_rated, fct_invoice_lines): as views, PostgreSQL would run each again
    for every view that reads it. dbt_project.yml says the same for the models without a
    config of their own. A view of the daily run that reads the preview's tenant
    (int_subscription_intervals) is one too: the runs' own view stays as they build it. -#}
{% macro monthly_view(materialized='view') -%}
    {{ return('ephemeral' if is_preview() else materialized) }}
{%- endmacro %}

{#- The first month a monthly run prices ([run_month_start, run_month_end)). -#}
{% macro run_month_start() -%}
    {%- if is_preview() -%}
        cast(current_setting('billing.preview_month', true) as {{ timestamp_type() }})
    {%- else -%}
        {{ ts_literal(var('min_month')) }}
    {%- endif -%}
{%- endmacro %}

{% macro run_month_end() -%}
    {%- if is_preview() -%}
        {{ dbt.dateadd('month', 1, run_month_start()) }}
    {%- else -%}
        {{ ts_literal(var('max_month')) }}
    {%- endif -%}
{%- endmacro %}

{#- A condition on a source's tenant column: in the preview the session's tenant alone (so a
    read prices one tenant's rows, not every tenant's), `true` in a run. The setting is read
    in a scalar subquery, whose value the planner does not know: a connection plans the
    read once (ingest/upcoming.py), and with `current_setting` itself the planner estimated
    that plan with the tenant the connection happened to read first (1M events of one
    tenant among 1,000: a small tenant read after the big one 270-330 ms instead of 20, the
    big one after a small one 350-400 ms instead of 100). -#}
{% macro preview_tenant(column) -%}
    {%- if is_preview() -%}
        {{ column }} = (select current_setting('billing.preview_tenant', true))
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- What a metric's events are aggregated by (its aggregation, property and dimensions), as
    text: partials aggregated by another are not merged (int_usage_partials). -#}
{% macro metric_definition(metrics) -%}
    concat({{ metrics }}.aggregation, '|', coalesce({{ metrics }}.property, ''), '|',
           coalesce({{ metrics }}.dimension_1, ''), '|', coalesce({{ metrics }}.dimension_2, ''),
           '|', coalesce({{ metrics }}.dimension_3, ''))
{%- endmacro %}

{#- The values of a metric's dimensions in an event's metadata, as a JSON object (jsonb),
    each as the metadata holds it: a line's combination reads them as it reads the
    metadata (dimension_key, dimension_label). A metric without a first dimension has
    none (dimension_key): its events get the empty object without building and joining
    three (10M events of metrics without dimensions: the partials' query 11.2 -> 10.4 s).
    PostgreSQL. -#}
{% macro metric_dimensions(metadata, metrics) -%}
    case when {{ metrics }}.dimension_1 is null then cast('{}' as jsonb) else
    {%- for i in [1, 2, 3] %}
    case when {{ metrics }}.dimension_{{ i }} is null then cast('{}' as jsonb)
         else jsonb_build_object({{ metrics }}.dimension_{{ i }},
                                 {{ metadata }} -> {{ metrics }}.dimension_{{ i }}) end
    {%- if not loop.last %} ||{% endif %}
    {%- endfor %} end
{%- endmacro %}
