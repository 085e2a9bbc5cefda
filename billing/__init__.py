"""The product's shell: the `billing` command, the demo and the reports. It imports the rest
(warehouse, ingest, orchestration, sync); nothing imports it."""
