{#- The one place money is rounded: an exact amount in major units to integer minor units,
    half away from zero (ROUND_HALF_UP), with the currency's ISO 4217 exponent. -#}
{% macro to_minor_units(amount_major, minor_unit) -%}
    cast(round(({{ amount_major }}) * {{ power_of_ten(minor_unit) }}, 0) as bigint)
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
