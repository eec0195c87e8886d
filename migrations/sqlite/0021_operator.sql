-- The operator: keys that manage tenants (never a tenant's data), and tenant suspension.
-- SQLite dialect. Keep in step with migrations/postgres.

-- Set while the tenant is suspended: its keys are refused, its runs are not claimed and its
-- queued emails are not delivered until it is resumed (cleared).
ALTER TABLE tenants ADD COLUMN suspended_at INTEGER;

-- Keys of the host's operator, apart from tenants' keys: no tenant, no scopes. A secret is
-- looked up in `api_keys` first, then here, and authenticates only the operator routes.
CREATE TABLE operator_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    -- sha256 of the secret, never the secret.
    key_hash    TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
