-- Finalized invoices are frozen here, copied from the marts when a month is finalized.
-- Append-only: a finalized invoice never changes; its payment status moves in
-- app.invoice_status_events.
create or replace function raw.forbid_change() returns trigger language plpgsql as $$
begin
    raise exception '%.% is append-only: % is not allowed', tg_table_schema, tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create table app.finalized_invoices (
    invoice_id     text primary key,
    tenant_id      text        not null,
    currency       text        not null,
    period_start   timestamptz not null,
    period_end     timestamptz not null,
    subtotal_minor bigint      not null,
    tax_minor      bigint      not null,
    total_minor    bigint      not null,
    finalized_at   timestamptz not null default now(),
    unique (tenant_id, currency, period_start)
);

create table app.finalized_invoice_lines (
    invoice_id             text        not null references app.finalized_invoices,
    line_id                text        not null,
    tenant_id              text        not null,
    line_type              text        not null,
    metric                 text,
    plan_key               text,
    quantity               numeric,
    billable_quantity      numeric,
    amount_minor           bigint      not null,
    currency               text        not null,
    description            text        not null,
    service_start          timestamptz,
    service_end            timestamptz,
    period_start           timestamptz not null,
    corrected_period_start timestamptz,
    primary key (invoice_id, line_id)
);

create table app.invoice_status_events (
    event_seq           bigint generated always as identity primary key,
    invoice_id          text        not null references app.finalized_invoices,
    status              text        not null
        check (status in ('finalized', 'pending', 'paid', 'payment_failed', 'void')),
    provider_invoice_id text,
    source              text        not null,
    occurred_at         timestamptz not null default now()
);

create trigger finalized_invoices_frozen before update or delete on app.finalized_invoices
    for each statement execute function raw.forbid_change();
create trigger finalized_invoices_no_truncate before truncate on app.finalized_invoices
    for each statement execute function raw.forbid_change();
create trigger finalized_invoice_lines_frozen before update or delete
    on app.finalized_invoice_lines for each statement execute function raw.forbid_change();
create trigger finalized_invoice_lines_no_truncate before truncate
    on app.finalized_invoice_lines for each statement execute function raw.forbid_change();
