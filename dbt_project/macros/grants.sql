{#- A post-hook of each model the API reads (int_usage_live, fct_invoices,
    fct_invoice_lines): its role, billing_api (warehouse/migrations/0012), may select it,
    and nothing else dbt builds. A view is read with its owner's rights, so the API needs
    no grant on what the view reads. PostgreSQL, when the role exists. -#}
{% macro grant_to_api() -%}
    {%- if target.type == 'postgres' -%}
    do $grant$ begin
        if exists (select from pg_roles where rolname = 'billing_api') then
            grant usage on schema {{ this.schema }} to billing_api;
            grant select on {{ this }} to billing_api;
        end if;
    end $grant$
    {%- endif -%}
{%- endmacro %}
