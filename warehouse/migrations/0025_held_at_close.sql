-- One row per invoice a close held (the tenant's data would bill it wrongly: dbt's
-- int_invoice_holds), written by the close in the transaction that freezes the month's
-- other invoices. Until that tenant's invoice of the month is frozen too (a later close,
-- after the data is fixed), the month is not re-rated for it: its late usage would
-- otherwise be billed as adjustments on the next invoice, the held month's whole amount
-- with it, and again when the held invoice is finalized (DECISIONLOG.md, "A held month
-- is not re-rated"). Nothing removes a row: once the invoice is frozen, the frozen copy
-- decides (int_invoice_rerate_months reads both).
create table app.held_invoices (
    tenant_id    text not null,
    period_start timestamptz not null,
    held_at      timestamptz not null default now(),
    hold_reason  text,
    primary key (tenant_id, period_start)
);

-- the invoices held by closes before this migration: those of a closed month still held in
-- the marts (none where no monthly run has built them yet)
do $$
begin
    if to_regclass('marts.fct_invoices') is not null then
        insert into app.held_invoices (tenant_id, period_start, hold_reason)
        select invoices.tenant_id, invoices.period_start, invoices.hold_reason
        from marts.fct_invoices as invoices
        inner join app.closed_months as closed on closed.period_start = invoices.period_start
        where invoices.status = 'held'
        on conflict do nothing;
    end if;
    if exists (select from pg_roles where rolname = 'billing_api') then
        grant select on app.held_invoices to billing_api;
    end if;
end $$;
