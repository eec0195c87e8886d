-- Usage per tenant: what its work counted, per UTC day of the host clock. SQLite dialect.
-- Keep in step with migrations/postgres.
--
-- Each count is added by the transaction that does the work (an ingest batch, a commit of
-- activations, an email marked sent), so a crash or a rerun never loses or doubles one: a
-- rolled-back transaction takes its counts with it. The counter upsert is the last statement
-- of each such transaction.
--
-- The shard column keeps the schema the same as PostgreSQL's, where concurrent transactions
-- of one tenant add to different shards of its day. SQLite has one writer at a time, so
-- every count goes to shard 0; a read sums a day's shards all the same.
CREATE TABLE tenant_usage (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    -- Days since 1970-01-01, UTC, of the host clock (the dev clock moves it).
    day          INTEGER NOT NULL,
    shard        INTEGER NOT NULL,
    -- Events ingested and stored (not duplicates of an idempotency key, not refused ones).
    events       INTEGER NOT NULL DEFAULT 0,
    -- Activations committed, failures included; and the time their guests ran, in µs.
    activations  INTEGER NOT NULL DEFAULT 0,
    cpu_us       INTEGER NOT NULL DEFAULT 0,
    -- Emails handed to the transport and marked sent.
    emails_sent  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, shard)
) WITHOUT ROWID;
