-- Pricing by dimension (#20): a metric's dimensions (metadata keys whose values split its
-- usage) and a charge's group_by, each a JSON array of keys (null: none); the price of each
-- listed combination of a charge's values, keyed by the combination (a JSON object of the
-- values in group_by order, catalog.dimension_key); the tiers of a combination's price.
-- A charge's own pricing is the price of the values no combination lists (`not_billed`
-- bills them nothing); its tiers keep dimensions ''.
alter table app.metrics add column dimensions text;
alter table app.plan_charges add column group_by text;

create table app.plan_prices (
    plan_key      text    not null,
    version       integer not null,
    metric        text    not null,
    dimensions    text    not null,
    model         text    not null,
    unit_price    numeric,
    included      numeric not null default 0,
    package_size  numeric,
    package_price numeric,
    primary key (plan_key, version, metric, dimensions),
    foreign key (plan_key, version, metric) references app.plan_charges
);

alter table app.plan_tiers add column dimensions text not null default '';
alter table app.plan_tiers drop constraint plan_tiers_pkey;
alter table app.plan_tiers add primary key (plan_key, version, metric, dimensions, tier_index);

-- the frozen lines keep the combination their usage line priced (null: no dimensions)
alter table app.finalized_invoice_lines add column dimensions text;

do $$
begin
    if exists (select from pg_roles where rolname = 'billing_api') then
        grant select on app.plan_prices to billing_api;
    end if;
end $$;
