-- The BRIN index on raw.events.received_at finds what arrived since a time (the arrivals'
-- next batch, and the live reads of what arrived since the last: dbt macro
-- unstored_arrivals). A page range it has not summarized matches any condition, so a read
-- scans every such range. Without autosummarize a range is summarized only when the table
-- is vacuumed, which autovacuum does once a fifth of the table has been inserted since the
-- last time: up to a fifth of the events scanned by every such read. With it, each range
-- filled asks autovacuum to summarize it at its next round (about a minute). The daily
-- run's arrivals summarize the ranges their batch read (dbt macro summarize_new_ranges).
alter index raw.events_received_at_brin set (autosummarize = on);
