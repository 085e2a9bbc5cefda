{#- A model's SQL names what it reads by schema and name, not database: a database copied
    under another name (the tests' template, a restored backup) holds the same SQL, so
    the views it holds stay as they are (materializations.sql keeps a view whose SQL is
    unchanged) and so do the API's views that read them. dbt's own ref and source, with
    the database left out; a unit test's fixtures are not relations and pass as they are. -#}
{% macro ref() -%}
    {%- set version = kwargs.get('version') or kwargs.get('v') -%}
    {%- if (varargs | length) == 1 -%}
        {%- set found = builtins.ref(varargs[0], version=version) if version
                        else builtins.ref(varargs[0]) -%}
    {%- else -%}
        {%- set found = builtins.ref(varargs[0], varargs[1], version=version) if version
                        else builtins.ref(varargs[0], varargs[1]) -%}
    {%- endif -%}
    {{ return(without_database(found)) }}
{%- endmacro %}

{% macro source(source_name, table_name) -%}
    {{ return(without_database(builtins.source(source_name, table_name))) }}
{%- endmacro %}

{% macro without_database(relation) -%}
    {%- if relation is not string and relation.include is defined -%}
        {{ return(relation.include(database=false)) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
