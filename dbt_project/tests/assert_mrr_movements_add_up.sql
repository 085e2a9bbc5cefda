{#- Month over month, per currency: last month's MRR plus the change of every row equals
    this month's MRR, and each movement moves in its own direction (new, reactivation and
    expansion up; contraction and churn down; unchanged not at all). Returns offenders. -#}
with mrr as (
    select
        month,
        tenant_id,
        currency,
        mrr_minor,
        movement,
        mrr_minor - coalesce(
            lag(mrr_minor) over (partition by tenant_id, currency order by month), 0
        ) as change_minor,
        lag(month) over (partition by tenant_id, currency order by month) as previous_month
    from {{ ref('fct_mrr_monthly') }}
),

wrong_direction as (
    select month, currency, tenant_id, movement
    from mrr
    where (movement in ('new', 'reactivation', 'expansion') and change_minor <= 0)
       or (movement in ('contraction', 'churn') and change_minor >= 0)
       or (movement = 'unchanged' and change_minor <> 0)
       or (movement = 'churn' and mrr_minor <> 0)
       -- a tenant's rows are consecutive months, except after a churn
       or (previous_month is not null and movement not in ('new', 'reactivation')
           and previous_month <> {{ dbt.dateadd('month', -1, 'month') }})
),

totals as (
    select month, currency, sum(mrr_minor) as total_minor, sum(change_minor) as change_minor
    from mrr
    group by month, currency
),

bridge as (
    select
        month,
        currency,
        total_minor,
        coalesce(lag(total_minor) over (partition by currency order by month), 0)
            + change_minor as bridged_minor
    from totals
)

select month, currency, cast(null as {{ dbt.type_string() }}) as tenant_id, 'bridge' as movement
from bridge
where total_minor <> bridged_minor
union all
select month, currency, tenant_id, movement
from wrong_direction
