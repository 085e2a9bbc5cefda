-- Stripe: webhooks stored once by their event id, and status events made append-only.
create table app.stripe_webhook_events (
    event_id    text primary key,
    event_type  text        not null,
    created_at  timestamptz not null,
    payload     jsonb       not null,
    invoice_id  text,
    received_at timestamptz not null default now()
);

create index invoice_status_events_by_provider_id
    on app.invoice_status_events (provider_invoice_id) where provider_invoice_id is not null;
create index invoice_status_events_by_invoice on app.invoice_status_events (invoice_id);

-- A status is history: a new status is a new row, never an edit.
create trigger invoice_status_events_append_only before update or delete
    on app.invoice_status_events for each statement execute function raw.forbid_change();
create trigger invoice_status_events_no_truncate before truncate
    on app.invoice_status_events for each statement execute function raw.forbid_change();
create trigger stripe_webhook_events_append_only before update or delete
    on app.stripe_webhook_events for each statement execute function raw.forbid_change();
