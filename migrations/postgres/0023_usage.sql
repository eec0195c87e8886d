-- Usage per tenant: what its work counted, per UTC day of the host clock. PostgreSQL dialect.
-- Keep in step with migrations/sqlite.
--
-- Each count is added by the transaction that does the work (an ingest batch, a commit of
-- activations, an email marked sent), so a crash or a rerun never loses or doubles one: a
-- rolled-back transaction takes its counts with it.
--
-- Shards. Every host process and every concurrent transaction of one tenant would otherwise
-- update the one row of (tenant, day), each waiting for the one before it to commit. So a row
-- is (tenant, day, shard): a transaction adds its counts to one shard (the host takes them in
-- turn, from a random start per process), and a read sums a day's shards. Two transactions
-- contend only when they picked the same shard.
--
-- Deadlocks. The counter upsert is the last statement of every transaction that counts, and
-- it takes its rows in (tenant, day) order: a transaction holding a counter row waits for no
-- other lock afterwards, and two taking several rows take them in the same order.
--
-- Updates are frequent and change no indexed column: pages are left half empty so the new
-- version of a row fits beside the old one (a HOT update, no index write).
CREATE TABLE tenant_usage (
    tenant_id    TEXT     NOT NULL REFERENCES tenants (id),
    -- Days since 1970-01-01, UTC, of the host clock (the dev clock moves it).
    day          INTEGER  NOT NULL,
    shard        SMALLINT NOT NULL,
    -- Events ingested and stored (not duplicates of an idempotency key, not refused ones).
    events       BIGINT   NOT NULL DEFAULT 0,
    -- Activations committed, failures included; and the time their guests ran, in µs.
    activations  BIGINT   NOT NULL DEFAULT 0,
    cpu_us       BIGINT   NOT NULL DEFAULT 0,
    -- Emails handed to the transport and marked sent.
    emails_sent  BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, shard)
) WITH (fillfactor = 50);
