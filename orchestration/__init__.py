"""Runs the product: the `billing` CLI, the dbt pipeline and the Dagster definitions.

The top of the import graph: nothing imports orchestration.
"""
