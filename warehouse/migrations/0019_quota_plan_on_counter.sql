-- A quota check looks the plan and its quota up once and keeps them on its counter, until
-- they may change: the plan in effect (app.plan_at) and its quota (the plan's version, the
-- charge) cost most of a check, and they change only when the subscription history or
-- the catalog's plans do, or when a change recorded for later takes effect. Both are
-- covered:
--   * app.quota_plans_stamp counts the changes: a statement adding subscription events
--     (raw.subscription_events is append-only) moves its `subscriptions` row, one changing
--     app.plan_versions or app.plan_charges its `catalog` row, in that statement's
--     transaction, so a check sees the new stamp (the sum of the rows) exactly when it sees
--     the change. A counter keeps the stamp it looked the plan up under; another stamp is a
--     new look-up. The checks only read the stamp: a catalog apply or a subscription change
--     holding it never makes a check wait. Two rows, because a catalog apply changes plans
--     before it takes the subscription history's lock (warehouse.subscriptions) and a
--     subscription change holds that lock before its events move a stamp: one row would
--     have them wait for each other.
--   * a look-up for the moment `plan_checked_at` holds until `plan_valid_until`: the
--     first of the tenant's subscription events effective later, the plan's next version,
--     the end of the counter's month. (A cancel at period end takes effect at the next
--     month, never before its `effective_at`: the horizon is on the safe side.)
create table app.quota_plans_stamp (
    source text primary key check (source in ('subscriptions', 'catalog')),
    stamp  bigint not null
);
insert into app.quota_plans_stamp (source, stamp) values ('subscriptions', 0), ('catalog', 0);
do $$
begin
    if exists (select from pg_roles where rolname = 'billing_api') then
        grant select on app.quota_plans_stamp to billing_api;
    end if;
end $$;

alter table app.quota_counters
    add column plan_key         text,
    add column quota_limit      numeric,
    add column quota_policy     text,
    add column plan_stamp       bigint,
    add column plan_checked_at  timestamptz,
    add column plan_valid_until timestamptz;

-- security definer: the API's role adds subscription events without a grant on the stamp
create function app.quota_plans_changed() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    update app.quota_plans_stamp set stamp = stamp + 1 where source = tg_argv[0];
    return null;
end
$$;

create trigger subscription_events_move_quota_plans_stamp
    after insert on raw.subscription_events
    for each statement execute function app.quota_plans_changed('subscriptions');
create trigger plan_versions_move_quota_plans_stamp
    after insert or update or delete or truncate on app.plan_versions
    for each statement execute function app.quota_plans_changed('catalog');
create trigger plan_charges_move_quota_plans_stamp
    after insert or update or delete or truncate on app.plan_charges
    for each statement execute function app.quota_plans_changed('catalog');

-- The check of 0007, same answers, in fewer statements: the counter is locked first and
-- brings the plan it kept; only a counter whose plan may have changed looks it up again.
-- Returns status `needs_seed`, having written nothing, when the month's counter does not
-- exist yet (the caller creates it from the warehouse's usage and calls again), and
-- `no_subscription` when no plan is in effect.
drop function app.quota_check(text, text, numeric, text, timestamptz);
create function app.quota_check(
    p_tenant text, p_metric text, p_amount numeric, p_key text, p_now timestamptz,
    out status text, out allowed boolean, out used numeric, out quota_limit numeric,
    out policy text, out period_start timestamptz, out period_end timestamptz
)
language plpgsql as $$
declare
    v_plan  text;
    v_kept  boolean;
    v_stamp bigint;
    v_until timestamptz;
    v_seen  app.quota_checks;
begin
    period_start := date_trunc('month', p_now, 'UTC');
    period_end := period_start + interval '1 month';
    -- the counter, locked: checks of one tenant and metric take turns from here
    select q.used, q.plan_key, q.quota_limit, q.quota_policy, s.stamp,
           q.plan_stamp = s.stamp and q.plan_checked_at <= p_now and p_now < q.plan_valid_until
    into used, v_plan, quota_limit, policy, v_stamp, v_kept
    from app.quota_counters q
    cross join (select sum(stamp)::bigint as stamp from app.quota_plans_stamp) as s
    where q.tenant_id = p_tenant and q.metric = p_metric
      and q.period_start = quota_check.period_start
    for update of q;
    if not found or not coalesce(v_kept, false) then
        v_plan := app.plan_at(p_tenant, p_now);
        if v_plan is null then
            status := 'no_subscription';
            allowed := false;
            used := null;
            return;
        end if;
        -- the plan's version in effect and its charge for the metric (none: no quota)
        select c.quota_limit, c.quota_policy into quota_limit, policy
        from (select v.version from app.plan_versions v
              where v.plan_key = v_plan and v.effective_from <= p_now
              order by v.effective_from desc limit 1) as version
        left join app.plan_charges c
            on c.plan_key = v_plan and c.version = version.version and c.metric = p_metric;
        if used is null then
            -- a month's first check writes nothing: the caller seeds the counter, calls again
            status := 'needs_seed';
            return;
        end if;
        v_until := least(
            period_end,
            (select min(e.effective_at) from raw.subscription_events e
             where e.tenant_id = p_tenant and e.effective_at > p_now),
            (select min(v.effective_from) from app.plan_versions v
             where v.plan_key = v_plan and v.effective_from > p_now)
        );
        update app.quota_counters q
        set plan_key = v_plan, quota_limit = quota_check.quota_limit,
            quota_policy = quota_check.policy, plan_stamp = v_stamp, plan_checked_at = p_now,
            plan_valid_until = v_until
        where q.tenant_id = p_tenant and q.metric = p_metric
          and q.period_start = quota_check.period_start;
    end if;
    policy := coalesce(policy, 'none');
    if p_key is not null then
        select * into v_seen from app.quota_checks c
        where c.tenant_id = p_tenant and c.idempotency_key = p_key;
        if found then
            status := 'replayed';
            allowed := v_seen.allowed;
            used := v_seen.used;
            period_start := v_seen.period_start;
            period_end := v_seen.period_start + interval '1 month';
            return;
        end if;
    end if;
    allowed := quota_limit is null or policy = 'soft' or used + p_amount <= quota_limit;
    if allowed then
        update app.quota_counters q set used = q.used + p_amount
        where q.tenant_id = p_tenant and q.metric = p_metric
          and q.period_start = quota_check.period_start
        returning q.used into used;
    end if;
    if p_key is not null then
        -- the same key for another metric, at the same moment, is the one race the counter
        -- lock does not cover: the primary key refuses the second, which then fails
        insert into app.quota_checks
            (tenant_id, idempotency_key, metric, amount, period_start, allowed, used)
        values (p_tenant, p_key, p_metric, p_amount, period_start, allowed, used);
    end if;
    status := 'ok';
end
$$;
