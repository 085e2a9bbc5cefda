{#- The one place money is rounded: an exact amount in major units to integer minor units,
    half away from zero (ROUND_HALF_UP), with the currency's ISO 4217 exponent. -#}
{% macro to_minor_units(amount_major, minor_unit) -%}
    cast(round(({{ amount_major }}) * {{ power_of_ten(minor_unit) }}, 0) as bigint)
{%- endmacro %}

{#- The most a line bills, in major units: 10^12, the catalog's largest amount
    (warehouse/catalog.py, MAX_AMOUNT). A line that comes to more (usage no price could
    bill: a tenant's key may send amounts of 18 digits) bills 0 and holds its tenant's
    invoices (int_invoice_holds), so that one tenant's data never fails every tenant's run
    (bigint out of range). -#}
{% macro max_line_amount() -%}
    1000000000000
{%- endmacro %}

{#- A line's amount in minor units, 0 when it comes to max_line_amount or more. -#}
{% macro line_minor_units(amount_major, minor_unit) -%}
    case when abs({{ amount_major }}) < {{ max_line_amount() }}
         then {{ to_minor_units(amount_major, minor_unit) }} else 0 end
{%- endmacro %}

{#- An invoice's tax: its subtotal (minor units, discounts included) times the tenant's
    rate, rounded once. The drafts' totals (credits are used after tax) and fct_invoices
    read it from here. -#}
{% macro invoice_tax(subtotal_minor, tax_rate) -%}
    {{ to_minor_units(times(subtotal_minor, tax_rate), 0) }}
{%- endmacro %}

{#- 10^n, exactly: PostgreSQL's numeric power; Spark's pow is a double, exact for the powers
    of ten a currency has (0 to 4), made a decimal before it touches money. -#}
{% macro power_of_ten(n) -%}
    {{ return(adapter.dispatch('power_of_ten', 'billing')(n)) }}
{%- endmacro %}
{% macro default__power_of_ten(n) -%}
    power(cast(10 as numeric), {{ n }})
{%- endmacro %}
{% macro spark__power_of_ten(n) -%}
    cast(pow(10, {{ n }}) as decimal(5, 0))
{%- endmacro %}

{#- The exact product of a quantity and a price (or a rate, or seconds and a price).
    PostgreSQL's numeric keeps every digit. Spark keeps 38 digits in all and, when the exact
    product of two decimal(38, 20) would not fit, cuts it to 6 decimals; so there the
    operands are taken as a quantity below 10^16 and a price below 10^10, each with 12
    decimals, whose product keeps 11 (ANSI mode refuses a larger value loudly), and the
    product is stored back at the exact type (DECISIONLOG.md, Spark). -#}
{% macro times(quantity, price) -%}
    {{ return(adapter.dispatch('times', 'billing')(quantity, price)) }}
{%- endmacro %}
{% macro default__times(quantity, price) -%}
    ({{ quantity }}) * ({{ price }})
{%- endmacro %}
{% macro spark__times(quantity, price) -%}
    cast(cast({{ quantity }} as decimal(28, 12)) * cast({{ price }} as decimal(22, 12))
         as {{ decimal_type() }})
{%- endmacro %}
