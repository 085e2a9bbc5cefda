-- Usage alerts (#22, point 2): a threshold per tenant and metric, in quantity or in amount
-- (minor units of the tenant's currency), and each crossing, once per alert and month.
create table app.usage_alerts (
    alert_id     text primary key,
    tenant_id    text        not null references app.tenants,
    metric       text        not null,
    kind         text        not null check (kind in ('quantity', 'amount')),
    threshold    numeric     not null check (threshold > 0),
    created_at   timestamptz not null default now(),
    disabled_at  timestamptz
);
create index usage_alerts_active on app.usage_alerts (tenant_id) where disabled_at is null;

create table app.usage_alert_firings (
    alert_id      text        not null references app.usage_alerts,
    period_start  timestamptz not null,
    -- what the month came to when the crossing was seen, and who saw it
    value         numeric     not null,
    source        text        not null check (source in ('ingest', 'run')),
    fired_at      timestamptz not null default now(),
    primary key (alert_id, period_start)
);

create trigger usage_alert_firings_frozen before update or delete on app.usage_alert_firings
    for each statement execute function raw.forbid_change();

-- the API manages the alerts and records the crossings it sees after ingest
do $$
begin
    if exists (select from pg_roles where rolname = 'billing_api') then
        grant select, insert, update on app.usage_alerts to billing_api;
        grant select, insert on app.usage_alert_firings to billing_api;
    end if;
end $$;
