{#- Generic test: within each partition, no two [start, end) intervals overlap. -#}
{% test no_overlapping_intervals(model, key_column, partition_by, start_column, end_column) %}
with intervals as (
    select {{ key_column }} as k, {{ partition_by }} as part,
           {{ start_column }} as s, {{ end_column }} as e
    from {{ model }}
)
select a.part, a.k, a.s, a.e, b.k as other_key, b.s as other_start, b.e as other_end
from intervals a
join intervals b on a.part = b.part and a.k < b.k and a.s < b.e and b.s < a.e
{% endtest %}
