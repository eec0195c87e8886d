-- Buckets over time, postgres dialect. Keep in step with migrations/sqlite.
--
-- Dwell: a membership's dwell clock starts at dwell_anchor_at when a backfill found the person
-- already in the bucket's state before it existed (domain-spec 2.11.4), else at entered_at.
-- dwell_state maps each dwell reaction's label to the instant (ms) it last fired for this
-- membership, as a JSON object; a new membership (a re-join) starts with an empty one.
ALTER TABLE bucket_memberships ADD COLUMN dwell_anchor_at BIGINT;
ALTER TABLE bucket_memberships ADD COLUMN dwell_state TEXT NOT NULL DEFAULT '{}';

-- One row per (tenant, bucket) once the host has seen the bucket: the fingerprint of the
-- criteria its members were computed with, and the state of the backfill that computes them
-- from history. While a backfill is pending or running the clock-driven joins and dwell of
-- that bucket stay quiet (its leaves and maxDwell do not).
CREATE TABLE bucket_configs (
    tenant_id            TEXT    NOT NULL REFERENCES tenants (id),
    bucket_id            TEXT    NOT NULL,
    -- sha256 of the normalised criteria; NULL until a backfill completed with them.
    criteria_hash        TEXT,
    backfill_state       TEXT    NOT NULL
        CHECK (backfill_state IN ('pending', 'running', 'completed', 'failed')),
    -- first-time: the bucket is new; reeval: its criteria changed.
    backfill_mode        TEXT    NOT NULL CHECK (backfill_mode IN ('first-time', 'reeval')),
    -- The fingerprint the pending or running backfill computes.
    target_hash          TEXT    NOT NULL,
    backfill_done        BIGINT  NOT NULL DEFAULT 0,
    backfill_total       BIGINT,
    backfill_error       TEXT,
    backfill_started_at  BIGINT,
    backfill_finished_at BIGINT,
    updated_at           BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, bucket_id)
);
