{#- Invoiced, paid and outstanding money per invoice month and currency. Only finalized
    invoices are invoiced (drafts are not sent yet; void ones are not owed); paid is what
    Stripe's webhooks marked paid. A view over fct_invoices: a payment shows at once. -#}
{{ config(materialized='view') }}

with invoices as (
    select * from {{ ref('fct_invoices') }}
    where status not in ('draft', 'void')
),

final as (
    select
        period_start as month,
        currency,
        cast(sum(total_minor) as bigint) as invoiced_minor,
        cast(sum(case when status = 'paid' then total_minor else 0 end) as bigint)
            as paid_minor,
        cast(sum(case when status = 'paid' then 0 else total_minor end) as bigint)
            as outstanding_minor,
        count(*) as invoice_count,
        count(distinct tenant_id) as tenant_count
    from invoices
    group by period_start, currency
)

select month, currency, invoiced_minor, paid_minor, outstanding_minor, invoice_count,
       tenant_count
from final
