-- Commitments, discounts and prepaid credits (#21).
-- A plan version's minimum commitment: the least its usage charges come to per month,
-- prorated with the segments of the month; null without one.
alter table app.plan_versions add column minimum_commitment numeric;

-- Discounts on a tenant: a rate (a fraction of the lines it applies to) or an amount (in
-- the tenant's currency), from a month on, for a number of months or forever (null), on the
-- whole invoice or on named charges (metric keys, or 'base_fee'). A discount is a record:
-- applied again with the same terms it is kept, never edited in place.
create table app.discounts (
    discount_id  text primary key,
    tenant_id    text        not null,
    description  text        not null,
    rate         numeric check (rate > 0 and rate <= 1),
    amount       numeric check (amount > 0),
    currency     text        not null,
    starts       timestamptz not null,
    months       integer check (months > 0),
    applies_to   jsonb,
    created_at   timestamptz not null default now(),
    apply_id     bigint,
    check ((rate is null) <> (amount is null))
);

-- Prepaid credits: grants per tenant, consumed by finalized invoices after tax, in order of
-- priority (lowest first), then expiry (soonest first), then grant time and id. Append-only:
-- a grant is never edited; a void is a record of its own.
create table app.credit_grants (
    grant_id     text primary key,
    tenant_id    text        not null,
    amount       numeric     not null check (amount > 0),
    currency     text        not null,
    granted_at   timestamptz not null,
    expires_at   timestamptz,
    priority     integer     not null default 0,
    description  text        not null default '',
    source       text        not null,
    recorded_at  timestamptz not null default now(),
    check (expires_at is null or expires_at > granted_at)
);

create table app.credit_grant_voids (
    grant_id    text primary key references app.credit_grants,
    reason      text        not null default '',
    source      text        not null,
    voided_at   timestamptz not null default now()
);

create trigger credit_grants_frozen before update or delete on app.credit_grants
    for each statement execute function raw.forbid_change();
create trigger credit_grants_no_truncate before truncate on app.credit_grants
    for each statement execute function raw.forbid_change();
create trigger credit_grant_voids_frozen before update or delete on app.credit_grant_voids
    for each statement execute function raw.forbid_change();
create trigger credit_grant_voids_no_truncate before truncate on app.credit_grant_voids
    for each statement execute function raw.forbid_change();
create trigger discounts_frozen before update or delete on app.discounts
    for each statement execute function raw.forbid_change();

-- An invoice line names the discount or grant it comes from, and an adjustment the type of
-- the line it corrects; a frozen invoice keeps the credits it used (after tax).
alter table app.finalized_invoice_lines
    add column discount_id         text,
    add column grant_id            text,
    add column corrected_line_type text;
alter table app.finalized_invoices
    add column credits_minor bigint not null default 0;
create trigger discounts_no_truncate before truncate on app.discounts
    for each statement execute function raw.forbid_change();

-- the API reads discounts and grants, and records grants and voids (the admin's routes)
do $$
begin
    if exists (select from pg_roles where rolname = 'billing_api') then
        grant select on app.discounts, app.credit_grants, app.credit_grant_voids to billing_api;
        grant insert on app.credit_grants, app.credit_grant_voids to billing_api;
    end if;
end $$;
