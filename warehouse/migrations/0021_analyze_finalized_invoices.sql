-- Statistics for the closed months, before the first close. The upcoming invoice's plan
-- joins the closed months (app.finalized_invoices) to a tenant's late events; with the
-- table never analyzed the planner guesses 200 months and scans the tenant's events first.
-- The plan is made once per connection for whichever tenant reads first, so a big tenant's
-- plan served every later read (10M events: 2 s a read). Autovacuum analyzes the table
-- only after 50 changes; each close analyzes it (orchestration.pipeline.finalize_month).
analyze app.finalized_invoices;
