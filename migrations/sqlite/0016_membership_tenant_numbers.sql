-- Memberships by tenant number, sqlite dialect (SQLite only: PostgreSQL keeps tenant ids).
--
-- As events (0014): every membership row is an entry in five or more indexes that start with
-- the tenant, and the 36-character tenant id was the largest part of each entry. A join (one
-- row, every index) cost about twice what it does with a small integer, and every event that
-- can change a bucket seeks the person's active memberships through one of them. Queries name
-- the tenant by id through `tenants.number`.
CREATE TABLE bucket_memberships_numbered (
    id                TEXT    NOT NULL PRIMARY KEY,
    -- tenants.number of the tenant the membership belongs to.
    tenant            INTEGER NOT NULL,
    bucket_id         TEXT    NOT NULL,
    -- The contact's resolved key, like every history table.
    contact_key       TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'left')),
    entry_count       INTEGER NOT NULL CHECK (entry_count >= 1),
    source            TEXT    NOT NULL
        CHECK (source IN ('event', 'manual', 'reconcile', 'backfill')),
    entered_at        INTEGER NOT NULL,
    left_at           INTEGER,
    leave_reason      TEXT
        CHECK (leave_reason IN ('criteria', 'maxDwell', 'manual', 'merged', 'deleted')),
    expires_at        INTEGER,
    max_dwell_at      INTEGER,
    last_evaluated_at INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    dwell_anchor_at   INTEGER,
    dwell_state       TEXT    NOT NULL DEFAULT '{}'
);

INSERT INTO bucket_memberships_numbered
    (id, tenant, bucket_id, contact_key, status, entry_count, source, entered_at, left_at,
     leave_reason, expires_at, max_dwell_at, last_evaluated_at, updated_at, dwell_anchor_at,
     dwell_state)
SELECT m.id, t.number, m.bucket_id, m.contact_key, m.status, m.entry_count, m.source,
       m.entered_at, m.left_at, m.leave_reason, m.expires_at, m.max_dwell_at,
       m.last_evaluated_at, m.updated_at, m.dwell_anchor_at, m.dwell_state
FROM bucket_memberships m JOIN tenants t ON t.id = m.tenant_id
ORDER BY m.rowid;

DROP TABLE bucket_memberships;
ALTER TABLE bucket_memberships_numbered RENAME TO bucket_memberships;

-- As before (0002, 0010, 0015), on the tenant's number.
CREATE UNIQUE INDEX bucket_memberships_one_active
    ON bucket_memberships (tenant, contact_key, bucket_id) WHERE status = 'active';
CREATE INDEX bucket_memberships_members
    ON bucket_memberships (tenant, bucket_id, id) WHERE status = 'active';
CREATE INDEX bucket_memberships_by_contact
    ON bucket_memberships (tenant, contact_key, bucket_id);
CREATE INDEX bucket_memberships_left
    ON bucket_memberships (tenant, bucket_id) WHERE status = 'left';
CREATE INDEX bucket_memberships_evaluated
    ON bucket_memberships (tenant, bucket_id, last_evaluated_at) WHERE status = 'active';
CREATE INDEX bucket_memberships_max_dwell
    ON bucket_memberships (tenant, bucket_id, max_dwell_at)
    WHERE status = 'active' AND max_dwell_at IS NOT NULL;
CREATE INDEX bucket_memberships_expires
    ON bucket_memberships (tenant, bucket_id, expires_at)
    WHERE status = 'active' AND expires_at IS NOT NULL;
