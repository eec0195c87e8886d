-- Email: tenant templates, unsubscribe preferences, signing secrets, and the richer outbox
-- (HTML bodies, the journey and unsubscribe link of each email, the `suppressed` status).
-- SQLite dialect. Keep in step with migrations/postgres.

-- Templates a tenant manages through the API. They override a module's shipped template of
-- the same key (see delivery::templates), so copy changes need no redeploy.
CREATE TABLE email_templates (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    key        TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    -- Plain-text body.
    text_body  TEXT    NOT NULL,
    -- HTML body, rendered with HTML autoescaping; absent: text-only email.
    html_body  TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- A person's email preferences. A row is keyed by the contact's resolved key AND the address
-- it applies to: a send is suppressed when either the recipient's contact or the recipient
-- address has opted out. Merges re-point rows to the survivor and OR the flags, so an
-- opt-out is never lost.
CREATE TABLE email_preferences (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    contact_key     TEXT    NOT NULL,
    -- Normalised (trimmed, lowercase).
    email           TEXT    NOT NULL,
    unsubscribed    INTEGER NOT NULL DEFAULT 0 CHECK (unsubscribed IN (0, 1)),
    unsubscribed_at INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, contact_key, email)
);

CREATE INDEX email_preferences_by_email ON email_preferences (tenant_id, email);

-- The HMAC key that signs a tenant's unsubscribe links: made once, shared by every host on
-- the database.
CREATE TABLE email_signing_keys (
    tenant_id  TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- The outbox gains columns and the `suppressed` status. SQLite cannot alter a CHECK, so the
-- table is rebuilt (nothing references it) with the same constraints and indexes.
CREATE TABLE emails_rebuilt (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id),
    run_id            TEXT    REFERENCES runs (id) ON DELETE SET NULL,
    step_seq          INTEGER,
    contact_key       TEXT    NOT NULL,
    -- The journey whose run queued it (for its suppress window).
    journey_id        TEXT,
    -- Normalised (trimmed, lowercase).
    to_address        TEXT    NOT NULL,
    template          TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    body              TEXT    NOT NULL,
    -- Absent: a text-only email.
    html_body         TEXT,
    -- The List-Unsubscribe target, signed for this person.
    unsubscribe_url   TEXT,
    -- cancelled: never sent, the contact was deleted first. suppressed: recorded, never sent
    -- (see suppressed_reason).
    status            TEXT    NOT NULL
        CHECK (status IN ('queued', 'sent', 'failed', 'cancelled', 'suppressed')),
    -- unsubscribed | journey_suppress_window
    suppressed_reason TEXT,
    -- Delivery attempts made so far.
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    sent_at           INTEGER,
    -- Real clock: when the delivery worker may (re)try it.
    next_attempt_at   INTEGER NOT NULL,
    lease_owner       TEXT,
    -- Real clock.
    lease_until       INTEGER,
    -- An activation's send-email step queues exactly one email.
    UNIQUE (run_id, step_seq)
);

INSERT INTO emails_rebuilt (id, tenant_id, run_id, step_seq, contact_key, journey_id,
    to_address, template, subject, body, status, attempts, last_error, created_at, sent_at,
    next_attempt_at, lease_owner, lease_until)
SELECT e.id, e.tenant_id, e.run_id, e.step_seq, e.contact_key,
    (SELECT r.journey_id FROM runs r WHERE r.id = e.run_id),
    e.to_address, e.template, e.subject, e.body, e.status, e.attempts, e.last_error,
    e.created_at, e.sent_at, e.next_attempt_at, e.lease_owner, e.lease_until
FROM emails e;

DROP TABLE emails;
ALTER TABLE emails_rebuilt RENAME TO emails;

CREATE INDEX emails_outbox ON emails (next_attempt_at) WHERE status = 'queued';
CREATE INDEX emails_by_tenant ON emails (tenant_id, created_at);
CREATE INDEX emails_by_to ON emails (tenant_id, to_address, created_at);
CREATE INDEX emails_by_contact ON emails (tenant_id, contact_key, created_at);
