-- One row per successful pipeline run: what it built and which arrivals it had seen, so
-- that the next daily run can rebuild the days late events arrived for.
create table app.pipeline_runs (
    run_id           bigint generated always as identity primary key,
    kind             text        not null check (kind in ('daily', 'monthly')),
    window_start     date        not null,
    window_end       date        not null,
    extra_days       date[]      not null default '{}',
    received_through timestamptz,
    started_at       timestamptz not null,
    finished_at      timestamptz not null default now()
);
