-- Journey administration, PostgreSQL dialect. Keep in step with migrations/sqlite.
--
-- The admin switch per tenant and journey (PATCH /v1/journeys/{id}): read by the enrollment
-- guards inside every ingest transaction. No row = as the module declares.
CREATE TABLE journey_configs (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    journey_id TEXT    NOT NULL,
    enabled    BOOLEAN NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, journey_id)
);

-- How many trigger events each enrollment guard turned away, per tenant, journey and reason
-- (the SkipReason names). Incremented in the ingest transaction that skipped them.
CREATE TABLE journey_skips (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    journey_id TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    count      BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (tenant_id, journey_id, reason)
);

-- Run counts by journey and status (GET /v1/journeys) read this index alone.
CREATE INDEX runs_by_journey_status ON runs (tenant_id, journey_id, status);
