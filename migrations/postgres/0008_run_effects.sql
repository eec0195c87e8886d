-- A journey's effects besides email (`trigger`: an event; `update-contact`: a contact patch),
-- stored by the commit of the activation that recorded them and deleted once applied
-- (journeys::effects). An event is ingested with the idempotency key `run:<run_id>:<seq>`, so
-- applying one twice (a crash between applying and deleting) stores it once.
CREATE TABLE run_effects (
    run_id      TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    tenant_id   TEXT    NOT NULL,
    -- trigger | update-contact
    kind        TEXT    NOT NULL,
    -- The effect as JSON (store::Effect).
    payload     TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    lease_owner TEXT,
    -- Real clock: leased until, or (after a failure, without an owner) not retried before.
    lease_until BIGINT,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    last_error  TEXT,
    PRIMARY KEY (run_id, seq)
);

CREATE INDEX run_effects_due ON run_effects (lease_until);
