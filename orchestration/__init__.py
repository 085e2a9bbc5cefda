"""The run sequence (`pipeline`) and the Dagster definitions that call it.

Imported by the `billing` shell; it imports warehouse, ingest's writer and sync.
"""
