-- Percentage charges (#20): a price's rate on the summed amounts, its fee, minimum and
-- maximum per event, and its free units (events) or free amount per period; null when the
-- price is not a percentage.
alter table app.plan_charges
    add column rate          numeric,
    add column fixed_fee     numeric,
    add column min_per_event numeric,
    add column max_per_event numeric,
    add column free_units    integer,
    add column free_amount   numeric;
alter table app.plan_prices
    add column rate          numeric,
    add column fixed_fee     numeric,
    add column min_per_event numeric,
    add column max_per_event numeric,
    add column free_units    integer,
    add column free_amount   numeric;
