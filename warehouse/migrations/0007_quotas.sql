-- Quotas: one counter per tenant, metric and calendar month (UTC), and every check that
-- carried an idempotency key, so that a retried check never increments twice.
create table app.quota_counters (
    tenant_id    text        not null,
    metric       text        not null,
    period_start timestamptz not null,
    used         numeric     not null,
    seeded_with  numeric     not null,
    created_at   timestamptz not null default now(),
    primary key (tenant_id, metric, period_start)
);

create table app.quota_checks (
    tenant_id       text        not null,
    idempotency_key text        not null,
    metric          text        not null,
    amount          numeric     not null,
    period_start    timestamptz not null,
    allowed         boolean,
    used            numeric,
    checked_at      timestamptz not null default now(),
    primary key (tenant_id, idempotency_key)
);

create index subscription_events_by_tenant on raw.subscription_events (tenant_id, effective_at);

-- The plan a tenant is on at a moment, from the subscription history (the rules of
-- int_subscription_intervals: cancel at period end takes effect at the next month).
create function app.plan_at(p_tenant text, p_at timestamptz) returns text
language sql stable as $$
    select plan_key
    from (
        select distinct on (subscription_id) subscription_id, action, plan_key, effective
        from (
            select subscription_id, action, plan_key, event_seq,
                   case when action = 'cancel' and at_period_end
                        then date_trunc('month', effective_at, 'UTC') + interval '1 month'
                        else effective_at end as effective
            from raw.subscription_events
            where tenant_id = p_tenant
        ) as history
        where effective <= p_at
        order by subscription_id, effective desc, event_seq desc
    ) as current_state
    where action in ('start', 'change_plan')
    order by effective desc
    limit 1
$$;

-- One quota check in one statement. Returns status `needs_seed`, having written nothing,
-- when the month's counter does not exist yet: the caller creates it from the warehouse's
-- usage and calls again. The counter row is locked for the decision, so concurrent checks against a
-- hard limit are serialized and never let more through than the limit.
create function app.quota_check(
    p_tenant text, p_metric text, p_amount numeric, p_key text, p_now timestamptz
) returns table (
    status text, allowed boolean, used numeric, quota_limit numeric, policy text,
    period_start timestamptz, period_end timestamptz
)
language plpgsql as $$
declare
    v_start   timestamptz := date_trunc('month', p_now, 'UTC');
    v_end     timestamptz := date_trunc('month', p_now, 'UTC') + interval '1 month';
    v_plan    text;
    v_limit   numeric;
    v_policy  text;
    v_used    numeric;
    v_allowed boolean;
begin
    -- the plan in effect now and its quota for the metric (null: no quota)
    select plan_now.plan_key, c.quota_limit, c.quota_policy
    into v_plan, v_limit, v_policy
    from (select app.plan_at(p_tenant, p_now) as plan_key) as plan_now
    left join lateral (
        select v.version from app.plan_versions v
        where v.plan_key = plan_now.plan_key and v.effective_from <= p_now
        order by v.effective_from desc limit 1
    ) as version on true
    left join app.plan_charges c
        on c.plan_key = plan_now.plan_key and c.version = version.version
        and c.metric = p_metric;
    if v_plan is null then
        return query select 'no_subscription', false, null::numeric, null::numeric,
                            null::text, v_start, v_end;
        return;
    end if;
    -- the counter, locked: checks of one tenant and metric take turns from here
    select q.used into v_used from app.quota_counters q
    where q.tenant_id = p_tenant and q.metric = p_metric and q.period_start = v_start
    for update;
    if not found then
        -- a month's first check writes nothing: the caller seeds the counter, calls again
        return query select 'needs_seed', null::boolean, null::numeric, v_limit, v_policy,
                            v_start, v_end;
        return;
    end if;
    if p_key is not null then
        return query select 'replayed', c.allowed, c.used, v_limit, coalesce(v_policy, 'none'),
                            c.period_start, c.period_start + interval '1 month'
                     from app.quota_checks c
                     where c.tenant_id = p_tenant and c.idempotency_key = p_key;
        if found then
            return;
        end if;
    end if;
    v_allowed := v_limit is null or v_policy = 'soft' or v_used + p_amount <= v_limit;
    if v_allowed then
        update app.quota_counters q set used = q.used + p_amount
        where q.tenant_id = p_tenant and q.metric = p_metric and q.period_start = v_start
        returning q.used into v_used;
    end if;
    if p_key is not null then
        -- the same key for another metric, at the same moment, is the one race the counter
        -- lock does not cover: the primary key refuses the second, which then fails
        insert into app.quota_checks
            (tenant_id, idempotency_key, metric, amount, period_start, allowed, used)
        values (p_tenant, p_key, p_metric, p_amount, v_start, v_allowed, v_used);
    end if;
    return query select 'ok', v_allowed, v_used, v_limit, coalesce(v_policy, 'none'),
                        v_start, v_end;
end
$$;
