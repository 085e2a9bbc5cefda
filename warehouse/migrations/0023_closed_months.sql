-- One row per closed month, written by the close in the transaction that freezes its
-- invoices: the month and its close's watermark, the lowest of its finalized invoices' (a
-- month closed more than once, a tenant's draft finalized later, keeps the lowest:
-- DECISIONLOG.md, "The close"). dbt's int_closed_months reads it. It grouped every frozen
-- invoice instead, twice in each upcoming-invoice read: a cost that grew by a month's
-- invoices every month (10,000 tenants: 120,000 invoices a year). Finalized invoices never
-- change (migration 0004), so the minimums kept here are those of the whole table, always.
create table app.closed_months (
    period_start                timestamptz not null,
    period_end                  timestamptz not null,
    finalized_at                timestamptz not null,
    arrivals_through            bigint,
    subscription_events_through bigint,
    primary key (period_start, period_end)
);

-- least() skips nulls as min() does: an invoice frozen before migration 0010 recorded no
-- watermark, and the month's watermark is that of its other invoices
create function app.close_months() returns trigger language plpgsql as $$
begin
    insert into app.closed_months as closed
        (period_start, period_end, finalized_at, arrivals_through, subscription_events_through)
    select period_start, period_end, min(finalized_at), min(arrivals_through),
           min(subscription_events_through)
    from frozen
    group by period_start, period_end
    on conflict (period_start, period_end) do update set
        finalized_at = least(closed.finalized_at, excluded.finalized_at),
        arrivals_through = least(closed.arrivals_through, excluded.arrivals_through),
        subscription_events_through
            = least(closed.subscription_events_through, excluded.subscription_events_through);
    return null;
end
$$;

create trigger finalized_invoices_close_months after insert on app.finalized_invoices
    referencing new table as frozen
    for each statement execute function app.close_months();
-- the trigger alone writes here: no row is ever removed
create trigger closed_months_kept before delete on app.closed_months
    for each statement execute function raw.forbid_change();
create trigger closed_months_no_truncate before truncate on app.closed_months
    for each statement execute function raw.forbid_change();

-- the months closed before this migration
insert into app.closed_months
    (period_start, period_end, finalized_at, arrivals_through, subscription_events_through)
select period_start, period_end, min(finalized_at), min(arrivals_through),
       min(subscription_events_through)
from app.finalized_invoices
group by period_start, period_end;
-- statistics from the first read on (the upcoming invoice is planned on them: 0021)
analyze app.closed_months;

do $$
begin
    if exists (select from pg_roles where rolname = 'billing_api') then
        grant select on app.closed_months to billing_api;
    end if;
end $$;
