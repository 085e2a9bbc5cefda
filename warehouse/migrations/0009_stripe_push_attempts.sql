-- Every Stripe customer a push of an invoice has used, recorded before it creates anything
-- there: a push that died half-way is recovered under each of them, even after the tenant's
-- stripe_customer_id has changed. Append-only.
create table app.stripe_push_attempts (
    invoice_id  text        not null references app.finalized_invoices,
    customer_id text        not null,
    first_at    timestamptz not null default now(),
    primary key (invoice_id, customer_id)
);

create trigger stripe_push_attempts_append_only before update or delete
    on app.stripe_push_attempts for each statement execute function raw.forbid_change();
