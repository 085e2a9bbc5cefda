-- The quota counters are few rows updated thousands of times a second: room on each page
-- for the new row versions (HOT updates, no index churn), and vacuum kept close behind.
alter table app.quota_counters set (
    fillfactor = 20,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000
);
