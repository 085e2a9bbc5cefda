-- Outbound webhooks (#22, point 3): endpoints the admin registers, the events that happen
-- (an outbox, written in the transaction that makes them happen) and, per endpoint and
-- event, its delivery and every attempt.
create table app.webhook_endpoints (
    endpoint_id  text primary key,
    url          text        not null,
    secret       text        not null,
    -- the event types it receives (null: all) and the tenant (null: every tenant)
    event_types  jsonb,
    tenant_id    text,
    created_at   timestamptz not null default now(),
    disabled_at  timestamptz
);

create table app.webhook_events (
    event_seq   bigint generated always as identity primary key,
    event_id    text        not null unique,
    event_type  text        not null,
    tenant_id   text        not null,
    payload     jsonb       not null,
    created_at  timestamptz not null default now()
);

create table app.webhook_deliveries (
    endpoint_id      text        not null references app.webhook_endpoints,
    event_seq        bigint      not null references app.webhook_events,
    tenant_id        text        not null,
    attempts         integer     not null default 0,
    next_attempt_at  timestamptz not null default now(),
    delivered_at     timestamptz,
    primary key (endpoint_id, event_seq)
);
create index webhook_deliveries_pending on app.webhook_deliveries (endpoint_id, tenant_id, event_seq)
    where delivered_at is null;

create table app.webhook_attempts (
    attempt_seq  bigint generated always as identity primary key,
    endpoint_id  text        not null,
    event_seq    bigint      not null,
    attempted_at timestamptz not null default now(),
    status_code  integer,
    error        text,
    duration_ms  integer     not null
);

create trigger webhook_events_frozen before update or delete on app.webhook_events
    for each statement execute function raw.forbid_change();

-- the API records events (Stripe's payment webhooks) and manages the endpoints
do $$
begin
    if exists (select from pg_roles where rolname = 'billing_api') then
        grant select, insert, update on app.webhook_endpoints to billing_api;
        grant select, insert on app.webhook_events, app.webhook_deliveries to billing_api;
        grant select on app.webhook_attempts to billing_api;
        grant usage on all sequences in schema app to billing_api;
    end if;
end $$;
