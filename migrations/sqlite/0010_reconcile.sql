-- The reconcile job, sqlite dialect. Keep in step with migrations/postgres.
--
-- One row per tenant: which host runs the tenant's reconcile passes now (a lease on the real
-- clock, so two hosts never run them at once and a crashed host's lease lapses) and the last
-- schedule tick (host clock, ms) whose passes completed — where the next run resumes, also
-- after a restart or a dev-clock advance.
CREATE TABLE reconcile_state (
    tenant_id     TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    lease_owner   TEXT,
    lease_until   INTEGER,
    last_tick_at  INTEGER
);

-- Oldest-evaluated first: the criteria and dwell passes' order.
CREATE INDEX bucket_memberships_evaluated
    ON bucket_memberships (tenant_id, bucket_id, last_evaluated_at) WHERE status = 'active';
-- Max-dwell deadlines, and window/min-dwell deadlines (the fast-expiry timers: an active
-- membership of a fast-expiry bucket is due to be re-checked at its expires_at).
CREATE INDEX bucket_memberships_max_dwell
    ON bucket_memberships (tenant_id, bucket_id, max_dwell_at)
    WHERE status = 'active' AND max_dwell_at IS NOT NULL;
CREATE INDEX bucket_memberships_expires
    ON bucket_memberships (tenant_id, bucket_id, expires_at)
    WHERE status = 'active' AND expires_at IS NOT NULL;
-- Who ever fired an event, and the window edges the catch-up looks for.
CREATE INDEX events_by_name ON events (tenant_id, name, occurred_at);
