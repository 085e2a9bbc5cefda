{#- The one place money is rounded: an exact amount in major units to integer minor units,
    half away from zero (ROUND_HALF_UP), with the currency's ISO 4217 exponent. -#}
{% macro to_minor_units(amount_major, minor_unit) -%}
    cast(round(({{ amount_major }}) * power(cast(10 as numeric), {{ minor_unit }}), 0) as bigint)
{%- endmacro %}
