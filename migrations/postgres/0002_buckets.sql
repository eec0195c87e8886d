-- Bucket memberships, PostgreSQL dialect. Keep in step with migrations/sqlite.
--
-- One row per membership epoch: a person joins (a new row, status active), later leaves (the
-- same row, status left). entry_count is the epoch: 1 + every earlier row of the same person
-- and bucket. At most one active row per (tenant, bucket, person), enforced by the index.
CREATE TABLE bucket_memberships (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
    bucket_id         TEXT    NOT NULL,
    -- The contact's resolved key, like every history table.
    contact_key       TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'left')),
    entry_count       BIGINT  NOT NULL CHECK (entry_count >= 1),
    -- What made the join: event (real time), manual (the API), reconcile, backfill.
    source            TEXT    NOT NULL
        CHECK (source IN ('event', 'manual', 'reconcile', 'backfill')),
    entered_at        BIGINT  NOT NULL,
    left_at           BIGINT,
    -- criteria, maxDwell, manual; merged: closed because the person merged into another
    -- contact that was already a member; deleted: the contact was deleted (no transition).
    leave_reason      TEXT
        CHECK (leave_reason IN ('criteria', 'maxDwell', 'manual', 'merged', 'deleted')),
    -- A deferred leave (minDwell) or a criteria window's end; max_dwell_at is set once.
    expires_at        BIGINT,
    max_dwell_at      BIGINT,
    last_evaluated_at BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

-- One active membership per person and bucket.
CREATE UNIQUE INDEX bucket_memberships_one_active
    ON bucket_memberships (tenant_id, bucket_id, contact_key) WHERE status = 'active';
-- The member list's keyset order (membership ids are UUIDv7 strings).
CREATE INDEX bucket_memberships_members
    ON bucket_memberships (tenant_id, bucket_id, id) WHERE status = 'active';
-- A person's memberships (epochs, last leave, the contact view, re-pointing on merge).
CREATE INDEX bucket_memberships_by_contact
    ON bucket_memberships (tenant_id, contact_key, bucket_id);
-- Closed memberships per bucket, for counts. Partial on purpose: an index over every status
-- would also match the active-membership lookup (tenant, bucket, person, active), and a
-- planner without statistics may pick it and walk every member of the bucket.
CREATE INDEX bucket_memberships_left
    ON bucket_memberships (tenant_id, bucket_id) WHERE status = 'left';
