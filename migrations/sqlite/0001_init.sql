-- Waymark schema, SQLite dialect. Keep in step with migrations/postgres.
--
-- Conventions: every tenant-owned table carries tenant_id; timestamps are INTEGER milliseconds
-- since the Unix epoch (host clock unless the column says otherwise: lease_until and
-- next_attempt_at are on the real clock); JSON is stored as TEXT.

CREATE TABLE tenants (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    -- sha256 of the secret, never the secret.
    key_hash    TEXT    NOT NULL UNIQUE,
    -- Space-separated scope names (ingest read admin deploy).
    scopes      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

-- One row per person. `key` is the resolved key history is stored under (user id, else
-- anonymous id, else id; see contacts::resolved_key). A deleted contact keeps its row (and its
-- external_id and key, so history still lines up) but stops resolving: every unique index
-- below covers live rows only, so the same user id may later create a new contact.
CREATE TABLE contacts (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    key           TEXT    NOT NULL,
    external_id   TEXT,
    -- Normalised (trimmed, lowercase).
    email         TEXT,
    anonymous_id  TEXT,
    properties    TEXT    NOT NULL DEFAULT '{}',
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    deleted_at    INTEGER
);

CREATE UNIQUE INDEX contacts_live_key ON contacts (tenant_id, key)
    WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX contacts_live_external_id ON contacts (tenant_id, external_id)
    WHERE deleted_at IS NULL AND external_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_live_email ON contacts (tenant_id, email)
    WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE UNIQUE INDEX contacts_live_anonymous_id ON contacts (tenant_id, anonymous_id)
    WHERE deleted_at IS NULL AND anonymous_id IS NOT NULL;

-- Identity values a contact no longer carries in its own columns (a key it had before, the
-- keys of contacts merged into it, values it gained) that must still lead to it.
-- kind: external | email | anonymous | key; reason: promote | merge.
CREATE TABLE contact_aliases (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    kind            TEXT    NOT NULL CHECK (kind IN ('external', 'email', 'anonymous', 'key')),
    value           TEXT    NOT NULL,
    contact_id      TEXT    NOT NULL REFERENCES contacts (id),
    -- The contact merged away, for merges.
    from_contact_id TEXT,
    reason          TEXT    NOT NULL CHECK (reason IN ('promote', 'merge')),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind, value)
) WITHOUT ROWID;

CREATE INDEX contact_aliases_by_contact ON contact_aliases (contact_id);

CREATE TABLE events (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    -- The contact's resolved key (no foreign key: history outlives a contact's key).
    contact_key     TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    properties      TEXT    NOT NULL DEFAULT '{}',
    occurred_at     INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    idempotency_key TEXT,
    -- NULL keys are distinct, so events without a key never collide.
    UNIQUE (tenant_id, idempotency_key)
);

-- A person's events of one name in a window: what event conditions count (buckets, history).
-- A person's timeline reads its prefix. There is deliberately no index by name alone: each
-- index costs every ingest a B-tree insert.
CREATE INDEX events_by_contact ON events (tenant_id, contact_key, name, occurred_at);

CREATE TABLE module_versions (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    -- sha256 of the wasm.
    hash        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    manifest    TEXT    NOT NULL,
    loaded_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, hash)
) WITHOUT ROWID;

CREATE TABLE runs (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    journey_id   TEXT    NOT NULL,
    module_hash  TEXT    NOT NULL,
    contact_key  TEXT    NOT NULL,
    status       TEXT    NOT NULL
        CHECK (status IN ('active', 'waiting', 'completed', 'failed', 'exited')),
    -- RunInput: the person snapshot and the trigger event.
    input        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    wake_at      INTEGER,
    activations  INTEGER NOT NULL DEFAULT 0,
    error        TEXT
);

-- One live run per person and journey, whatever the entry limit.
CREATE UNIQUE INDEX runs_one_live_per_contact
    ON runs (tenant_id, journey_id, contact_key)
    WHERE status IN ('active', 'waiting');
-- Entry-limit checks (prior runs of one journey by one person) and the contact filter.
CREATE INDEX runs_by_contact ON runs (tenant_id, contact_key, journey_id, created_at);
-- List filters, newest first.
CREATE INDEX runs_by_tenant ON runs (tenant_id, created_at);
CREATE INDEX runs_by_journey ON runs (tenant_id, journey_id, created_at);
CREATE INDEX runs_by_status ON runs (tenant_id, status, created_at);

CREATE TABLE journal (
    run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    tenant_id   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    request     TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- At most one timer per run: when it is due (host clock) the scheduler claims the run.
CREATE TABLE timers (
    run_id      TEXT    NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    tenant_id   TEXT    NOT NULL,
    due_at      INTEGER NOT NULL,
    lease_owner TEXT,
    -- Real clock.
    lease_until INTEGER,
    -- Claims since the timer was last set.
    attempts    INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX timers_by_due ON timers (due_at);

CREATE TABLE emails (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    run_id          TEXT    REFERENCES runs (id) ON DELETE SET NULL,
    step_seq        INTEGER,
    contact_key     TEXT    NOT NULL,
    -- Normalised (trimmed, lowercase).
    to_address      TEXT    NOT NULL,
    template        TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    -- cancelled: never sent, the contact was deleted first.
    status          TEXT    NOT NULL
        CHECK (status IN ('queued', 'sent', 'failed', 'cancelled')),
    -- Delivery attempts made so far.
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    -- Real clock: when the delivery worker may (re)try it.
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    -- Real clock.
    lease_until     INTEGER,
    -- An activation's send-email step queues exactly one email.
    UNIQUE (run_id, step_seq)
);

CREATE INDEX emails_outbox ON emails (next_attempt_at) WHERE status = 'queued';
CREATE INDEX emails_by_tenant ON emails (tenant_id, created_at);
CREATE INDEX emails_by_to ON emails (tenant_id, to_address, created_at);
CREATE INDEX emails_by_contact ON emails (tenant_id, contact_key, created_at);

-- Host-wide settings (not tenant data), e.g. the persisted dev-clock offset.
CREATE TABLE host_settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
