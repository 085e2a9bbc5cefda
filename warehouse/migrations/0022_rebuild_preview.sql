-- The upcoming invoice's view (schema `preview`) is built when a warehouse lacks it (`billing
-- db up`, and after each run), and a run replaces only the views its own models changed. This
-- version changes the preview's SQL alone: it reads its tenant in a subquery, so that the plan
-- each API connection makes once fits every tenant (dbt_project/macros/preview.sql,
-- preview_tenant). Dropped here, it is built again from this version's SQL by `billing db up`
-- or at the end of the next run; until then GET /v1/invoices/upcoming answers 503.
drop schema if exists preview cascade;
