-- The close is a watermark (DECISIONLOG.md, "The close"): a finalized invoice records what
-- it priced, the newest arrival batch dbt had stored and the newest subscription change
-- recorded when its monthly run began. Whatever is stored or recorded after them reaches a
-- later invoice as an adjustment. Invoices finalized before this version have neither and
-- keep the old rule (received after finalized_at).
alter table app.finalized_invoices add column arrivals_through bigint;
alter table app.finalized_invoices add column subscription_events_through bigint;
