-- The plan a tenant is on at a moment, from the subscription history, by the rules of
-- int_subscription_intervals: cancel at period end takes effect at the next month, and the
-- first cancel ends the subscription (a plan change scheduled after it is dropped, where
-- 0007's version still found it).
create or replace function app.plan_at(p_tenant text, p_at timestamptz) returns text
language sql stable as $$
    with history as (
        select subscription_id, action, plan_key, event_seq,
               case when action = 'cancel' and at_period_end
                    then date_trunc('month', effective_at, 'UTC') + interval '1 month'
                    else effective_at end as effective
        from raw.subscription_events
        where tenant_id = p_tenant
    )
    select plan_key
    from (
        select distinct on (subscription_id) subscription_id, plan_key, effective
        from history
        where effective <= p_at
          and action in ('start', 'change_plan')
          and not exists (
                select 1 from history as ended
                where ended.subscription_id = history.subscription_id
                  and ended.action = 'cancel'
                  and ended.effective <= p_at
              )
        order by subscription_id, effective desc, event_seq desc
    ) as current_state
    order by effective desc
    limit 1
$$;
