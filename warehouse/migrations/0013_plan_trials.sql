-- Trials (#20): a plan version's trial length in days, from the subscription's start, and
-- whether the usage of the trial is billed. A plan without them has no trial.
alter table app.plan_versions
    add column trial_days integer not null default 0 check (trial_days >= 0),
    add column trial_bills_usage boolean not null default false;
