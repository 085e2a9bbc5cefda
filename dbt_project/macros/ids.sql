{#- The deterministic invoice id of a tenant, currency and month: the one definition, so a
    line and the adjustments billed with it always name the same invoice. -#}
{% macro invoice_id(tenant_id, currency, period_start) -%}
    'inv_' || {{ dbt.right(dbt.hash(dbt.concat([
        tenant_id, "'|'", currency, "'|'",
        "cast(cast(" ~ period_start ~ " as date) as " ~ dbt.type_string() ~ ")"])), 20) }}
{%- endmacro %}
