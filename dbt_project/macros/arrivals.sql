{#- The first-arrival rule, written once, in two parts. unstored_arrivals: the events
    received that `stored` (the arrivals stored so far, or none before the first run) does
    not hold yet. pending_arrivals: those (`unstored`, a relation or CTE) each marked
    `is_first` when it is the first arrival of its (tenant_id, idempotency_key): the earliest
    received of the key, unless the key was counted before. int_events_arrivals appends
    these rows; int_events_pending shows them to the live reads (GET /v1/usage, quotas);
    int_events_unstored (the unstored alone, without the ranking's sort) tells the daily
    run's plan which days late events reached.

    Which events are not stored yet is found without a lookback: every stored batch records
    its horizon (arrivals_horizon), a moment no transaction still open when it was read had
    begun before, so every event not stored then was received at or after it. -#}
{% macro unstored_arrivals(stored) -%}
{%- if stored is not none %}
with
latest as (
    -- the newest batch stored and its horizon: the batch index read backwards, one row.
    -- Asked as `where arrival_batch = (select max(...))`, the planner expected a batch to
    -- be half the table and scanned the table for it, from wherever the scan began: 16,000
    -- pages of 1M arrivals for one row (the newest batch is appended last), for every
    -- daily run's plan and every live read
    select batch_horizon
    from {{ stored }}
    order by arrival_batch desc
    limit 1
),

received as (
    select events.*
    from {{ ref('stg_raw__events') }} as events
    where events.received_at >= coalesce(
        (select batch_horizon from latest), {{ ts_literal('1970-01-01') }})
)

-- newer than anything stored, or else looked up one by one in the unique index
select received.*
from received
{{ join_one('left', stored, 'stored',
            'stored.event_seq = received.event_seq
             and received.event_seq <= (select max(event_seq) from ' ~ stored ~ ')') }}
where stored.found is null
{%- else %}
select * from {{ ref('stg_raw__events') }}
{%- endif %}
{%- endmacro %}

{% macro pending_arrivals(unstored, stored) -%}
with
ranked as (
    select
        unstored.*,
        -- the key's text compared byte by byte (bytewise), which sorts the events faster
        -- and partitions them the same (10M events: the ranking alone 32-34 s, against
        -- 39-48 s); then the tenant as it is, which splits no partition but lets a
        -- reader's condition on the tenant through (below): PostgreSQL pushes a condition
        -- into a window's input only on a column the window is partitioned by
        row_number() over (
            partition by {{ bytewise('tenant_id') }}, {{ bytewise('idempotency_key') }}, tenant_id
            order by received_at, event_seq
        ) as arrival_rank
    from {{ unstored }} as unstored
),

pending as (
    -- `ranked` is read once: a reader's condition on the tenant (the upcoming invoice's,
    -- the live reads') reaches the events before they are ranked, ranked per tenant
    select
        ranked.event_seq,
        ranked.tenant_id,
        ranked.metric,
        ranked.amount,
        ranked.event_ts,
        ranked.idempotency_key,
        ranked.metadata,
        ranked.received_at,
        ranked.arrival_rank = 1
        {%- if stored is not none %} and kept.found is null{% endif %} as is_first
    from ranked
    {%- if stored is not none %}
    -- a key first seen in an earlier batch is never first again (lateral: index lookups,
    -- for the first of each key only)
    {{ join_one('left', stored, 'kept',
                'ranked.arrival_rank = 1 and kept.is_first
                 and kept.tenant_id = ranked.tenant_id
                 and kept.idempotency_key = ranked.idempotency_key') }}
    {%- endif %}
)

select * from pending
{%- endmacro %}

{#- The horizon of the batch about to be read, as a literal: on PostgreSQL the start of the
    oldest transaction open in the database now, or now when there is none. It is read
    before the batch's statement takes its snapshot, so an event that statement cannot see
    yet belongs to a transaction that began at or after the horizon, and was stamped
    received_at (the transaction's start) no earlier. -#}
{% macro arrivals_horizon() -%}
    {{ return(adapter.dispatch('arrivals_horizon', 'billing')()) }}
{%- endmacro %}
{% macro default__arrivals_horizon() -%}
    current_timestamp()
{%- endmacro %}
{% macro postgres__arrivals_horizon() -%}
    {%- if execute -%}
        {%- set found = run_query(
            "select cast(least(clock_timestamp(), min(xact_start)) as text)
             from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()
               and xact_start is not null") -%}
        cast('{{ found.columns[0].values()[0] }}' as timestamptz)
    {%- else -%}
        now()
    {%- endif -%}
{%- endmacro %}

{#- A post-hook of the arrivals (PostgreSQL): summarize the page ranges of `relation` that
    its BRIN index `index` does not summarize yet, those the batch just wrote or read among
    them (the last range, not filled yet, perhaps apart).
    A read by the index scans every page of a range it does not summarize, and PostgreSQL
    summarizes ranges only as it vacuums the table, which autovacuum does once a fifth of it
    has been inserted since the last time: the reads of what arrived since a horizon (the
    next batch, the live reads: unstored_arrivals, on raw.events.received_at) and of the
    days of a run (on the arrivals' event_ts) would scan up to a fifth of the table.
    Summarizing takes the table's SHARE UPDATE EXCLUSIVE lock, which inserts do not wait
    for; when a vacuum holds it, the vacuum summarizes them, and the batch does not wait. -#}
{% macro summarize_new_ranges(relation, index) -%}
    do $$
    begin
        lock table {{ relation }} in share update exclusive mode nowait;
        perform brin_summarize_new_values('{{ relation.schema }}.{{ index }}');
    exception when lock_not_available then
        null;
    end
    $$
{%- endmacro %}
