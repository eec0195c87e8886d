-- A tenant's own sender: its From and Reply-To and the transport its email goes out through
-- (its SMTP server, or an HTTP provider). Without a row the tenant sends with the host's
-- command-line transport and From. SQLite dialect. Keep in step with migrations/postgres.
CREATE TABLE email_senders (
    tenant_id    TEXT    NOT NULL PRIMARY KEY REFERENCES tenants (id),
    from_name    TEXT,
    from_address TEXT    NOT NULL,
    reply_to     TEXT,
    -- The transport's settings as JSON, without its secret (see delivery::senders).
    transport    TEXT    NOT NULL,
    -- The transport's password or API key, sealed (AEAD) under the host's secrets key: never
    -- stored in the clear. Absent: the transport needs none.
    secret       TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
