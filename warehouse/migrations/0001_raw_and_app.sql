-- raw: append-only landing tables, one row per thing that arrived, stamped with received_at.
-- app: state the product owns (catalog versions, tenants, API keys).
-- Calendar months and days are UTC everywhere (date_trunc on timestamptz follows the session).
do $$ begin
    execute format('alter database %I set timezone to %L', current_database(), 'UTC');
end $$;
set timezone to 'UTC';

create schema if not exists raw;
create schema if not exists app;

create or replace function raw.forbid_change() returns trigger language plpgsql as $$
begin
    raise exception 'raw.% is append-only: % is not allowed', tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create table raw.events (
    event_seq       bigint generated always as identity,
    tenant_id       text        not null,
    metric          text        not null,
    amount          numeric     not null,
    event_ts        timestamptz not null,
    idempotency_key text        not null,
    metadata        jsonb,
    received_at     timestamptz not null default now()
);
create index events_received_at_brin on raw.events using brin (received_at);

create table raw.subscription_events (
    event_seq       bigint generated always as identity,
    subscription_id text        not null,
    tenant_id       text        not null,
    action          text        not null check (action in ('start', 'change_plan', 'cancel')),
    plan_key        text,
    effective_at    timestamptz not null,
    at_period_end   boolean     not null default false,
    source          text        not null,
    received_at     timestamptz not null default now()
);

create trigger events_append_only before update or delete on raw.events
    for each statement execute function raw.forbid_change();
create trigger events_no_truncate before truncate on raw.events
    for each statement execute function raw.forbid_change();
create trigger subscription_events_append_only before update or delete on raw.subscription_events
    for each statement execute function raw.forbid_change();
create trigger subscription_events_no_truncate before truncate on raw.subscription_events
    for each statement execute function raw.forbid_change();

create table app.catalog_applies (
    apply_id   bigint generated always as identity primary key,
    source     text        not null,
    sha256     text        not null,
    applied_at timestamptz not null default now()
);

create table app.metrics (
    metric_key     text primary key,
    aggregation    text    not null,
    property       text,
    allow_negative boolean not null default false,
    apply_id       bigint  not null references app.catalog_applies
);

-- One row per plan version. A plan's first version is in effect since the beginning of
-- time; each later version from the moment it was applied (see DECISIONLOG.md).
create table app.plan_versions (
    plan_key       text        not null,
    version        integer     not null,
    name           text        not null,
    billing_interval text      not null,
    currency       text        not null,
    base_price     numeric     not null,
    effective_from timestamptz not null,
    content_sha256 text        not null,
    apply_id       bigint      not null references app.catalog_applies,
    primary key (plan_key, version)
);

create table app.plan_charges (
    plan_key      text    not null,
    version       integer not null,
    metric        text    not null,
    model         text    not null,
    unit_price    numeric,
    included      numeric not null default 0,
    package_size  numeric,
    package_price numeric,
    quota_limit   numeric,
    quota_policy  text,
    primary key (plan_key, version, metric),
    foreign key (plan_key, version) references app.plan_versions
);

create table app.plan_tiers (
    plan_key   text    not null,
    version    integer not null,
    metric     text    not null,
    tier_index integer not null,
    up_to      numeric,
    unit_price numeric not null,
    flat_fee   numeric not null default 0,
    primary key (plan_key, version, metric, tier_index),
    foreign key (plan_key, version, metric) references app.plan_charges
);

create table app.tenants (
    tenant_id          text primary key,
    name               text    not null,
    currency           text    not null,
    tax_rate           numeric not null default 0,
    stripe_customer_id text,
    apply_id           bigint  not null references app.catalog_applies
);
