{#- One row per tenant, currency and calendar month (UTC): the invoice, billed in arrears.
    `total_minor` is the subtotal (discounts included) and its tax; `credits_minor` the
    prepaid credits it uses, after tax; `amount_due_minor` what is left to collect.
    A finalized invoice is read from its frozen copy with its latest payment status; a
    draft is summed from its lines, and is `held` (with its reason) when the tenant's data
    would bill it wrongly: the close leaves it out (int_invoice_holds). A view, so that a
    payment status a Stripe webhook stored is read at once, without a dbt run. -#}
{{ config(materialized=monthly_view()) }}
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

{#- the upcoming invoice reads one tenant's (preview_tenant), as fct_invoice_lines: the
    frozen invoices and their status events, ranked below, of that tenant alone -#}
finalized as (
    select * from {{ ref('stg_app__finalized_invoices') }}
    where {{ preview_tenant('tenant_id') }}
),

status_events as (
    select * from {{ ref('stg_app__invoice_status_events') }}
    where invoice_id in (select invoice_id from finalized)
),

tenants as (
    select * from {{ ref('stg_app__tenants') }}
),

holds as (
    select * from {{ ref('int_invoice_holds') }}
),

latest_status as (
    select invoice_id, status, provider_invoice_id
    from (
        select
            status_events.*,
            -- Stripe's outcome (paid, failed, void) wins over our own `pending`, whichever
            -- was recorded last; outcomes are ordered by Stripe's event time.
            row_number() over (
                partition by invoice_id
                order by
                    case when status in ('finalized', 'pending') then 0 else 1 end desc,
                    occurred_at desc,
                    event_seq desc
            ) as recency
        from status_events
    ) as ranked
    where recency = 1
),

provider_ids as (
    select invoice_id, max(provider_invoice_id) as provider_invoice_id
    from status_events
    group by invoice_id
),

draft_subtotals as (
    -- credits are used after tax: they are not in the subtotal
    select
        invoice_id,
        tenant_id,
        currency,
        period_start,
        sum(case when line_type = 'credit' then 0 else amount_minor end) as subtotal_minor,
        -sum(case when line_type = 'credit' then amount_minor else 0 end) as credits_minor
    from lines
    where not exists (select 1 from finalized where finalized.invoice_id = lines.invoice_id)
    group by invoice_id, tenant_id, currency, period_start
),

drafts as (
    select
        draft_subtotals.invoice_id,
        draft_subtotals.tenant_id,
        draft_subtotals.currency,
        draft_subtotals.period_start,
        {{ dbt.dateadd('month', 1, 'draft_subtotals.period_start') }} as period_end,
        case when holds.hold_reason is null then 'draft' else 'held' end as status,
        draft_subtotals.subtotal_minor,
        {{ invoice_tax('draft_subtotals.subtotal_minor', 'tenants.tax_rate') }} as tax_minor,
        draft_subtotals.credits_minor,
        cast(null as {{ dbt.type_string() }}) as provider_invoice_id,
        cast(null as {{ timestamp_type() }}) as finalized_at,
        holds.hold_reason
    from draft_subtotals
    inner join tenants on tenants.tenant_id = draft_subtotals.tenant_id
    left join holds
        on holds.tenant_id = draft_subtotals.tenant_id
       and holds.period_start = draft_subtotals.period_start
),

frozen as (
    select
        finalized.invoice_id,
        finalized.tenant_id,
        finalized.currency,
        finalized.period_start,
        finalized.period_end,
        coalesce(latest_status.status, 'finalized') as status,
        finalized.subtotal_minor,
        finalized.tax_minor,
        finalized.credits_minor,
        provider_ids.provider_invoice_id,
        finalized.finalized_at,
        cast(null as {{ dbt.type_string() }}) as hold_reason
    from finalized
    left join latest_status on latest_status.invoice_id = finalized.invoice_id
    left join provider_ids on provider_ids.invoice_id = finalized.invoice_id
),

all_invoices as (
    select * from drafts
    union all
    select * from frozen
),

final as (
    select
        cast(invoice_id as {{ dbt.type_string() }}) as invoice_id,
        cast(tenant_id as {{ dbt.type_string() }}) as tenant_id,
        cast(currency as {{ dbt.type_string() }}) as currency,
        period_start,
        period_end,
        cast(status as {{ dbt.type_string() }}) as status,
        cast(subtotal_minor as bigint) as subtotal_minor,
        cast(tax_minor as bigint) as tax_minor,
        cast(subtotal_minor + tax_minor as bigint) as total_minor,
        cast(credits_minor as bigint) as credits_minor,
        cast(subtotal_minor + tax_minor - credits_minor as bigint) as amount_due_minor,
        cast(provider_invoice_id as {{ dbt.type_string() }}) as provider_invoice_id,
        finalized_at,
        cast(hold_reason as {{ dbt.type_string() }}) as hold_reason
    from all_invoices
)

select
    invoice_id, tenant_id, currency, period_start, period_end, status, subtotal_minor,
    tax_minor, total_minor, provider_invoice_id, finalized_at, hold_reason, credits_minor,
    amount_due_minor
from final
