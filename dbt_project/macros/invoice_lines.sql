{#- The columns of an invoice line, in one order: the draft lines, their frozen copies
    (`app.finalized_invoice_lines`, the same names; the finalize copies the table's columns
    by name) and `fct_invoice_lines` list them from here. `overrides` maps a column to the
    expression that gives it in one branch of a union. -#}
{% macro invoice_line_columns(overrides={}) -%}
    {%- set columns = [
        'invoice_id', 'line_id', 'tenant_id', 'line_type', 'metric', 'plan_key', 'quantity',
        'billable_quantity', 'amount_minor', 'currency', 'description', 'service_start',
        'service_end', 'period_start', 'corrected_period_start', 'dimensions', 'discount_id',
        'grant_id', 'corrected_line_type',
    ] -%}
    {%- for column in columns -%}
        {{ overrides[column] ~ ' as ' ~ column if column in overrides else column }}
        {{- ', ' if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

{#- What was billed: a finalized invoice (drafts and held ones may still change), not void
    (revenue, MRR). A draft has no `finalized_at`, so on fct_invoices (a view) PostgreSQL
    leaves its drafts out unread. -#}
{% macro is_billed_invoice(invoices) -%}
    {{ invoices }}.finalized_at is not null and {{ invoices }}.status <> 'void'
{%- endmacro %}
