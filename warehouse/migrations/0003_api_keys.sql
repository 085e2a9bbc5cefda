-- Tenant API keys: only a SHA-256 of the key is stored; the key is shown once at creation.
create table app.api_keys (
    key_id     text primary key,
    key_sha256 text        not null unique,
    tenant_id  text        not null,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);
