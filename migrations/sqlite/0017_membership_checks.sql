-- Membership checks without value lists, sqlite dialect (SQLite only).
--
-- SQLite evaluates `CHECK (x IN ('a', 'b', 'c'))` by building a temporary B-tree of the list
-- on every insert and update of the row (a list of more than two values is not turned into
-- comparisons): the three checks of this table made a join cost about twice what its inserts
-- do. The same rules, written as comparisons, cost nothing measurable. Every row, column and
-- index is kept as it was.
CREATE TABLE bucket_memberships_checked (
    id                TEXT    NOT NULL PRIMARY KEY,
    -- tenants.number of the tenant the membership belongs to.
    tenant            INTEGER NOT NULL,
    bucket_id         TEXT    NOT NULL,
    -- The contact's resolved key, like every history table.
    contact_key       TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status = 'active' OR status = 'left'),
    entry_count       INTEGER NOT NULL CHECK (entry_count >= 1),
    source            TEXT    NOT NULL
        CHECK (source = 'event' OR source = 'manual' OR source = 'reconcile'
               OR source = 'backfill'),
    entered_at        INTEGER NOT NULL,
    left_at           INTEGER,
    leave_reason      TEXT
        CHECK (leave_reason IS NULL OR leave_reason = 'criteria' OR leave_reason = 'maxDwell'
               OR leave_reason = 'manual' OR leave_reason = 'merged'
               OR leave_reason = 'deleted'),
    expires_at        INTEGER,
    max_dwell_at      INTEGER,
    last_evaluated_at INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    dwell_anchor_at   INTEGER,
    dwell_state       TEXT    NOT NULL DEFAULT '{}'
);

INSERT INTO bucket_memberships_checked
    (id, tenant, bucket_id, contact_key, status, entry_count, source, entered_at, left_at,
     leave_reason, expires_at, max_dwell_at, last_evaluated_at, updated_at, dwell_anchor_at,
     dwell_state)
SELECT id, tenant, bucket_id, contact_key, status, entry_count, source, entered_at, left_at,
       leave_reason, expires_at, max_dwell_at, last_evaluated_at, updated_at, dwell_anchor_at,
       dwell_state
FROM bucket_memberships
ORDER BY rowid;

DROP TABLE bucket_memberships;
ALTER TABLE bucket_memberships_checked RENAME TO bucket_memberships;

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
