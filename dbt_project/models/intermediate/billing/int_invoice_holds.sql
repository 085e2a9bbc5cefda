{#- One row per tenant and month of the run whose invoice is held, with the reason: the
    tenant's data is wrong in a way that would bill it wrongly, so its invoice stays out of
    the close until someone fixes the data and runs the month again; every other tenant's
    invoice finalizes and is pushed (DECISIONLOG.md, "Held invoices"). Reasons:
    `overlapping_subscriptions` (two subscriptions at once would bill the same usage twice)
    and `currency_mismatch` (a plan billing in another currency than the tenant pays in).
    Incremental by month, as the drafts: a held draft stays held after later months run. -#}
{{
    config(
        materialized=monthly_view('incremental'),
        pre_hook=empty_run_months(),
        **replace_by('period_start')
    )
}}
with segments as (
    select * from {{ ref('int_subscription_segments') }}
    where not is_rerate
),

tenants as (
    select * from {{ ref('stg_app__tenants') }}
),

overlapping as (
    select
        a.tenant_id,
        a.period_start,
        'overlapping_subscriptions' as reason,
        'subscriptions ' || a.subscription_id || ' and ' || b.subscription_id
            || ' overlap' as detail
    from segments as a
    inner join segments as b
        on b.tenant_id = a.tenant_id
       and b.period_start = a.period_start
       and a.segment_id < b.segment_id
       and a.subscription_id <> b.subscription_id
       and a.segment_start < b.segment_end
       and b.segment_start < a.segment_end
),

mismatched as (
    select
        segments.tenant_id,
        segments.period_start,
        'currency_mismatch' as reason,
        'plan ' || segments.plan_key || ' bills in ' || segments.currency
            || ', the tenant pays in ' || tenants.currency as detail
    from segments
    inner join tenants on tenants.tenant_id = segments.tenant_id
    where segments.currency <> tenants.currency
),

reasons as (
    select * from overlapping
    union all
    select * from mismatched
),

final as (
    -- one reason per tenant and month: the first, named with its detail
    select tenant_id, period_start, min(reason || ': ' || detail) as hold_reason
    from reasons
    group by tenant_id, period_start
)

select tenant_id, period_start, hold_reason from final
