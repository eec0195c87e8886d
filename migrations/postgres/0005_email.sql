-- Email: tenant templates, unsubscribe preferences, signing secrets, and the richer outbox
-- (HTML bodies, the journey and unsubscribe link of each email, the `suppressed` status).
-- PostgreSQL dialect. Keep in step with migrations/sqlite.

-- Templates a tenant manages through the API. They override a module's shipped template of
-- the same key (see delivery::templates), so copy changes need no redeploy.
CREATE TABLE email_templates (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    key        TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    -- Plain-text body.
    text_body  TEXT   NOT NULL,
    -- HTML body, rendered with HTML autoescaping; absent: text-only email.
    html_body  TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
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
    unsubscribed    BOOLEAN NOT NULL DEFAULT FALSE,
    unsubscribed_at BIGINT,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, contact_key, email)
);

CREATE INDEX email_preferences_by_email ON email_preferences (tenant_id, email);

-- The HMAC key that signs a tenant's unsubscribe links: made once, shared by every host on
-- the database.
CREATE TABLE email_signing_keys (
    tenant_id  TEXT   NOT NULL PRIMARY KEY REFERENCES tenants (id),
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- The journey whose run queued the email (for its suppress window).
ALTER TABLE emails ADD COLUMN journey_id TEXT;
-- Absent: a text-only email.
ALTER TABLE emails ADD COLUMN html_body TEXT;
-- The List-Unsubscribe target, signed for this person.
ALTER TABLE emails ADD COLUMN unsubscribe_url TEXT;
-- unsubscribed | journey_suppress_window
ALTER TABLE emails ADD COLUMN suppressed_reason TEXT;
UPDATE emails e SET journey_id = r.journey_id FROM runs r WHERE r.id = e.run_id;

-- suppressed: recorded, never sent (see suppressed_reason).
ALTER TABLE emails DROP CONSTRAINT emails_status_check;
ALTER TABLE emails ADD CONSTRAINT emails_status_check
    CHECK (status IN ('queued', 'sent', 'failed', 'cancelled', 'suppressed'));
