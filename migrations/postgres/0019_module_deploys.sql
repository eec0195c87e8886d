-- Modules deployed per tenant: a version keeps its component bytes, so every host on the
-- database can load it, and each tenant's modules are one row each, naming the active version.

ALTER TABLE module_versions RENAME COLUMN loaded_at TO deployed_at;
-- NULL for versions recorded before deploys existed: their file is in the host's module store.
ALTER TABLE module_versions ADD COLUMN wasm BYTEA;
ALTER TABLE module_versions ADD COLUMN size_bytes BIGINT NOT NULL DEFAULT 0;
-- The deploying API key; NULL when a host deployed it from its `--modules` directory.
ALTER TABLE module_versions ADD COLUMN deployed_by TEXT;
-- When the version last became its module's active one (a deploy or a rollback).
ALTER TABLE module_versions ADD COLUMN activated_at BIGINT;

CREATE TABLE modules (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    -- The version new runs start on; NULL once the module is removed (live runs finish on
    -- their own versions).
    active_hash TEXT,
    -- 'api' or 'directory': a `--modules` directory removes the modules it deployed when
    -- their file goes.
    origin      TEXT    NOT NULL CHECK (origin IN ('api', 'directory')),
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Moved by every change of a tenant's modules: a host reloads a tenant whose revision moved,
-- and a deploy commits only over the revision it checked its conflicts against.
ALTER TABLE tenants ADD COLUMN modules_revision BIGINT NOT NULL DEFAULT 0;

-- Live runs per version, for a module's detail and to keep needed versions.
CREATE INDEX runs_live_by_version ON runs (tenant_id, module_hash)
    WHERE status IN ('active', 'waiting');
