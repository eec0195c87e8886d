-- Per-tenant limits, and fair claims across tenants. SQLite dialect. Keep in step with
-- migrations/postgres.

-- A tenant's own limits, set through the operator API. A NULL column takes the host's default
-- (its command line), so changing a default reaches every tenant that did not set its own.
CREATE TABLE tenant_limits (
    tenant_id             TEXT   NOT NULL PRIMARY KEY REFERENCES tenants (id),
    -- Activations of the tenant's runs leased at once, over every host.
    activations_in_flight BIGINT,
    -- CPU time and linear memory one activation may use.
    cpu_budget_ms         BIGINT,
    memory_mb             BIGINT,
    -- Events per second the tenant may ingest, and how many at once above that rate.
    ingest_rate           BIGINT,
    ingest_burst          BIGINT,
    -- The deployed modules' total size.
    module_bytes          BIGINT,
    -- Journal steps one run may take.
    run_steps             BIGINT,
    updated_at            BIGINT NOT NULL
);

-- The leased timers (activations in flight, or leases a dead host left to lapse), by tenant:
-- a claim counts each tenant's in flight against its limit without walking its due timers.
CREATE INDEX timers_leased ON timers (tenant_id, lease_until) WHERE lease_until IS NOT NULL;

-- Each tenant's due timers in order: a claim takes a few from every tenant with due work.
CREATE INDEX timers_by_tenant_due ON timers (tenant_id, due_at, run_id);
