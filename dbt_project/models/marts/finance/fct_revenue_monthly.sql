{#- Invoiced, paid and outstanding money per invoice month and currency. Only finalized
    invoices are invoiced (drafts are not sent yet; void ones are not owed): their totals,
    net of discounts (`discounts_minor` shows them), tax included; prepaid credits paid part
    of them (`credits_minor`), and what is paid or outstanding is the rest, as collected.
    Paid is what Stripe's webhooks marked paid. A view over fct_invoices: a payment shows
    at once. -#}
{{ config(materialized='view') }}

with invoices as (
    select * from {{ ref('fct_invoices') }} as invoices
    where {{ is_billed_invoice('invoices') }}
),

lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

discounts as (
    select invoice_id, -sum(amount_minor) as discounts_minor
    from lines
    where line_type = 'discount'
    group by invoice_id
),

final as (
    select
        period_start as month,
        currency,
        cast(sum(total_minor) as bigint) as invoiced_minor,
        cast(sum(case when status = 'paid' then amount_due_minor else 0 end) as bigint)
            as paid_minor,
        cast(sum(case when status = 'paid' then 0 else amount_due_minor end) as bigint)
            as outstanding_minor,
        count(*) as invoice_count,
        count(distinct tenant_id) as tenant_count,
        cast(coalesce(sum(discounts.discounts_minor), 0) as bigint) as discounts_minor,
        cast(sum(credits_minor) as bigint) as credits_minor
    from invoices
    left join discounts on discounts.invoice_id = invoices.invoice_id
    group by period_start, currency
)

select month, currency, invoiced_minor, paid_minor, outstanding_minor, invoice_count,
       tenant_count, discounts_minor, credits_minor
from final
