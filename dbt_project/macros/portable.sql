{#- Engine-specific SQL behind adapter.dispatch, so models stay the same on every engine:
    PostgreSQL (the default) and Spark (dbt-spark). DECISIONLOG.md, "Spark", says why each
    differs. -#}

{#- Exact decimals: PostgreSQL's unbounded numeric; on Spark a fixed precision and scale
    (a bare `decimal` there is decimal(10, 0) and would drop every fraction). -#}
{% macro decimal_type() -%}
    {{ return(adapter.dispatch('decimal_type', 'billing')()) }}
{%- endmacro %}
{% macro default__decimal_type() -%}numeric{%- endmacro %}
{% macro spark__decimal_type() -%}decimal(38, 20){%- endmacro %}

{#- An instant: timestamptz on PostgreSQL, Spark's timestamp (an instant, shown in the
    session's UTC). -#}
{% macro timestamp_type() -%}
    {{ return(adapter.dispatch('timestamp_type', 'billing')()) }}
{%- endmacro %}
{% macro default__timestamp_type() -%}timestamptz{%- endmacro %}
{% macro spark__timestamp_type() -%}timestamp{%- endmacro %}

{#- A literal instant from a 'YYYY-MM-DD[ HH:MI:SS]' string (UTC). -#}
{% macro ts_literal(text) -%}
    cast('{{ text }}' as {{ timestamp_type() }})
{%- endmacro %}

{#- An instant as text, in PostgreSQL's form for a UTC session ('2026-10-01 00:00:00+00',
    microseconds only when there are some): the text deterministic ids hash. -#}
{% macro ts_text(ts) -%}
    {{ return(adapter.dispatch('ts_text', 'billing')(ts)) }}
{%- endmacro %}
{% macro default__ts_text(ts) -%}
    cast({{ ts }} as {{ dbt.type_string() }})
{%- endmacro %}
{% macro spark__ts_text(ts) -%}
    concat(
        date_format({{ ts }}, 'yyyy-MM-dd HH:mm:ss'),
        case when unix_micros({{ ts }}) % 1000000 <> 0
             then concat('.', rtrim('0', lpad(cast(unix_micros({{ ts }}) % 1000000 as string), 6, '0')))
             else '' end,
        '+00')
{%- endmacro %}

{#- The open end of an interval that has not ended: PostgreSQL's infinity; Spark has none,
    so a date far past any billing period. -#}
{% macro ts_infinity() -%}
    {{ return(adapter.dispatch('ts_infinity', 'billing')()) }}
{%- endmacro %}
{% macro default__ts_infinity() -%}cast('infinity' as timestamptz){%- endmacro %}
{% macro spark__ts_infinity() -%}cast('9000-01-01 00:00:00' as timestamp){%- endmacro %}

{#- A text column compared byte by byte where only equality matters (a window's partition):
    PostgreSQL's collation "C". Equality is the same in every collation a database can
    have as its default (each is deterministic: equal means the same bytes), but only "C"
    sorts by comparing bytes; any other, the embedded server's C.UTF-8 among them, calls
    the C library's strcoll for every comparison and cannot sort on abbreviated keys. Spark
    compares bytes already. -#}
{% macro bytewise(column) -%}
    {{ return(adapter.dispatch('bytewise', 'billing')(column)) }}
{%- endmacro %}
{% macro default__bytewise(column) -%}{{ column }}{%- endmacro %}
{% macro postgres__bytewise(column) -%}{{ column }} collate "C"{%- endmacro %}

{#- The text of a top-level key of a JSON object; `key` is an SQL expression. -#}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text', 'billing')(column, key)) }}
{%- endmacro %}
{% macro default__json_text(column, key) -%}
    ({{ column }} ->> {{ key }})
{%- endmacro %}
{% macro spark__json_text(column, key) -%}
    get_json_object({{ column }}, concat('$.', {{ key }}))
{%- endmacro %}

{#- The text at a fixed path of nested JSON objects: path is a list of key names. -#}
{% macro json_path_text(column, path) -%}
    {{ return(adapter.dispatch('json_path_text', 'billing')(column, path)) }}
{%- endmacro %}
{% macro default__json_path_text(column, path) -%}
    ({{ column }} #>> '{{ "{" ~ path | join(",") ~ "}" }}')
{%- endmacro %}
{% macro spark__json_path_text(column, path) -%}
    get_json_object({{ column }}, '$.{{ path | join(".") }}')
{%- endmacro %}

{#- Join the one row of `relation` matching `condition` (at most one matches), with a column
    `found` (1; null when a left join finds none): on PostgreSQL a lateral lookup in an
    index, one probe per row (a hash of a big table would cost more than the rows looking);
    on Spark a plain join, which it distributes. -#}
{% macro join_one(kind, relation, alias, condition) -%}
    {{ return(adapter.dispatch('join_one', 'billing')(kind, relation, alias, condition)) }}
{%- endmacro %}
{% macro default__join_one(kind, relation, alias, condition) -%}
    {{ kind }} join lateral (
        select 1 as found, {{ alias }}.* from {{ relation }} as {{ alias }}
        where {{ condition }}
        limit 1
    ) as {{ alias }} on true
{%- endmacro %}
{% macro spark__join_one(kind, relation, alias, condition) -%}
    {{ kind }} join (select 1 as found, * from {{ relation }}) as {{ alias }} on {{ condition }}
{%- endmacro %}

{% macro epoch_seconds(ts) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'billing')(ts)) }}
{%- endmacro %}
{% macro default__epoch_seconds(ts) -%}
    cast(extract(epoch from {{ ts }}) as numeric)
{%- endmacro %}
{% macro spark__epoch_seconds(ts) -%}
    (cast(unix_micros({{ ts }}) as decimal(24, 0)) / 1000000)
{%- endmacro %}

{% macro month_spine(start_expr, end_expr) -%}
    {{ return(adapter.dispatch('month_spine', 'billing')(start_expr, end_expr)) }}
{%- endmacro %}
{% macro default__month_spine(start_expr, end_expr) -%}
    select cast(m as timestamptz) as month_start
    from generate_series(
        date_trunc('month', {{ start_expr }}), {{ end_expr }}, interval '1 month') as g(m)
    where m < {{ end_expr }}
{%- endmacro %}
{% macro spark__month_spine(start_expr, end_expr) -%}
    select explode(filter(
        sequence(date_trunc('month', {{ start_expr }}), {{ end_expr }}, interval 1 month),
        m -> m < {{ end_expr }}
    )) as month_start
{%- endmacro %}

{#- Session settings for the big sorts and hashes of a model, scoped to its transaction. -#}
{% macro tune_session() -%}
    {{ return(adapter.dispatch('tune_session', 'billing')()) }}
{%- endmacro %}
{% macro default__tune_session() -%}
{%- endmacro %}
{% macro postgres__tune_session() -%}
    set local work_mem = '{{ var("work_mem") }}';
    set local maintenance_work_mem = '{{ var("maintenance_work_mem") }}'
{%- endmacro %}

{#- A pre-hook of a model that groups millions of events into few groups by keys the planner
    has no statistics for (expressions over a join, a CTE's columns): hash the groups, do
    not sort the events. PostgreSQL expects as many groups as rows there, finds a hash too
    big for work_mem and sorts every event on disk instead (int_usage_partials at 10M
    events: 2.9M groups, the sort 31-41 s, the hash 23-24 s; int_segment_usage_aggregated:
    17,500 groups of 4.6M events, 14.6-15.7 s against 11.5-11.7). Sorting stays possible
    where nothing else can do (a window): `enable_sort` off in the model's transaction only
    makes the planner avoid sorts it has another way around. -#}
{% macro hash_groups() -%}
    {{ return(postgres_only(['set local enable_sort = off'])) }}
{%- endmacro %}

{#- A post-hook of every model: on PostgreSQL, a table a run creates gets its statistics at
    once, before the models that read it are planned. A new table has none until autovacuum
    comes (a minute later), and the planner guesses: at 1M events, once app.metrics had
    statistics, the segments joined to the plans' charges were guessed one row, and
    int_segment_usage_aggregated joined 22,500 charges to 22,500 quantities in a nested loop
    (54 s, where it takes 1.6 s). An incremental model's table is analyzed while it has no
    statistics (empty, or filled since it was created without them): the run that first
    fills it, a warehouse's first daily run, whose later models read millions of its rows;
    later runs leave it to autovacuum. -#}
{% macro analyze_built() -%}
    {{ return(adapter.dispatch('analyze_built', 'billing')()) }}
{%- endmacro %}
{% macro default__analyze_built() -%}
{%- endmacro %}
{% macro postgres__analyze_built() -%}
    {%- if model.config.materialized == 'table'
           or (model.config.materialized == 'incremental' and not has_statistics(this)) -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}

{#- Whether PostgreSQL holds statistics of a relation's columns (asked when dbt executes). -#}
{% macro has_statistics(relation) -%}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set found = run_query(
        "select 1 from pg_stats where schemaname = '" ~ relation.schema
        ~ "' and tablename = '" ~ relation.identifier ~ "' limit 1") -%}
    {{ return(found.rows | length > 0) }}
{%- endmacro %}

{#- For a CTE read more than once: PostgreSQL computes such a CTE once and stores every row
    of it, `not materialized` lets each reader scan the CTE's sources with its own filter
    (daily usage over 10M events: 12 s instead of 18 s). Spark always inlines. -#}
{% macro not_materialized() -%}
    {{ return(adapter.dispatch('not_materialized', 'billing')()) }}
{%- endmacro %}
{% macro default__not_materialized() -%}
{%- endmacro %}
{% macro postgres__not_materialized() -%}not materialized{%- endmacro %}

{#- The other way round, for a CTE read once that PostgreSQL would compute again for every
    row of what it is joined to (a nested loop over rows it misestimates): computed once,
    its rows stored. Spark has no such hint. -#}
{% macro materialized() -%}
    {{ return(adapter.dispatch('materialized', 'billing')()) }}
{%- endmacro %}
{% macro default__materialized() -%}
{%- endmacro %}
{% macro postgres__materialized() -%}materialized{%- endmacro %}

{#- A finalized invoice's arrivals watermark (the newest arrival batch its run priced). The
    batches are PostgreSQL's: Spark stores its own arrivals, numbered apart, so there it is
    null and the close falls back to the rule before watermarks (received after the invoice
    was finalized). Subscription changes keep their numbers on both. -#}
{% macro arrivals_watermark(column) -%}
    {{ return(adapter.dispatch('arrivals_watermark', 'billing')(column)) }}
{%- endmacro %}
{% macro default__arrivals_watermark(column) -%}{{ column }}{%- endmacro %}
{% macro spark__arrivals_watermark(column) -%}cast(null as bigint){%- endmacro %}

{#- The UTC day of an instant, whatever the reading session's time zone (a view read by the
    API computes it in the API's session). On PostgreSQL an immutable expression, so the
    arrivals can index it. -#}
{% macro utc_date(ts) -%}
    {{ return(adapter.dispatch('utc_date', 'billing')(ts)) }}
{%- endmacro %}
{% macro default__utc_date(ts) -%}
    cast({{ dbt.date_trunc('day', ts) }} as date)
{%- endmacro %}
{% macro postgres__utc_date(ts) -%}
    cast(({{ ts }} at time zone 'UTC') as date)
{%- endmacro %}
