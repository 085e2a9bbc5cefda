"""The warehouse: settings, the PostgreSQL connection (embedded or external) and migrations.

The bottom of the import graph: it depends on no other package of the project.
"""
