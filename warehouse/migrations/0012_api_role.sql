-- The API's role, billing_api: it inserts usage and subscription changes, reads what it
-- serves, keeps its quota counters and stores Stripe's webhooks, and nothing more: no
-- update or delete on raw, no DDL, no superuser. The embedded server creates it with a
-- login (warehouse/embedded.py); on an external PostgreSQL create it (or a login role in it)
-- before `billing db up`, as README.md says. Without CREATEROLE and without the role, the
-- grants are skipped with a notice and the API keeps the URL it is given.
-- A migration that adds a table the API uses grants it here too; dbt's models the API
-- reads are granted by the dbt macro grant_to_api.
do $$
begin
    if not exists (select from pg_roles where rolname = 'billing_api') then
        begin
            create role billing_api nologin;
        exception when insufficient_privilege then
            raise notice 'role billing_api does not exist and cannot be created here: no grants';
            return;
        end;
    end if;
    grant usage on schema raw, app to billing_api;
    -- usage lands, append-only (raw.forbid_change stops everyone else too)
    grant select, insert on raw.events, raw.subscription_events to billing_api;
    -- the subscription history's writers queue on a table lock (warehouse.subscriptions);
    -- MAINTAIN (PostgreSQL 17 and later) allows the lock without update, delete or truncate
    if current_setting('server_version_num')::int >= 170000 then
        execute 'grant maintain on raw.subscription_events to billing_api';
    else
        raise notice 'PostgreSQL before 17: billing_api cannot lock the subscription history';
    end if;
    grant select on all tables in schema app to billing_api;
    grant insert, update on app.quota_counters to billing_api;
    grant insert on app.quota_checks, app.stripe_webhook_events, app.invoice_status_events
        to billing_api;
    grant usage on all sequences in schema raw, app to billing_api;
    grant execute on all functions in schema app to billing_api;
    -- the schemas dbt builds into, made here so that their usage can be granted once
    create schema if not exists staging;
    create schema if not exists intermediate;
    create schema if not exists marts;
    grant usage on schema intermediate, marts to billing_api;
    -- on a warehouse dbt has built before, what the API reads (dbt's grant_to_api grants
    -- them from the next build on)
    if to_regclass('marts.fct_invoices') is not null then
        grant select on marts.fct_invoices to billing_api;
    end if;
    if to_regclass('marts.fct_invoice_lines') is not null then
        grant select on marts.fct_invoice_lines to billing_api;
    end if;
end $$;
