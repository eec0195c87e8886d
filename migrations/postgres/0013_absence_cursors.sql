-- Absence-join cursors, postgres dialect. Keep in step with migrations/sqlite.
--
-- The clock joins someone to an absence bucket when their last event of a leg's name falls out
-- of the leg's window. Each (bucket, leg) keeps how far its scan of events_by_name got: the
-- (occurred_at, id) of the last event it examined. The next pass reads only the events that
-- left the window since, so a pass costs what crossed the edge, not the tenant's contacts, and
-- people who stay absent but fail the bucket's other conditions are examined once rather than
-- heading every later page.
CREATE TABLE bucket_absence_cursors (
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    bucket_id    TEXT    NOT NULL,
    event_name   TEXT    NOT NULL,
    within_ms    BIGINT  NOT NULL,
    after_at     BIGINT  NOT NULL,
    after_id     TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, bucket_id, event_name, within_ms)
);

-- The scan reads events of one name in (occurred_at, id) order from a cursor. With occurred_at
-- alone in the index, every event sharing the cursor's instant (an import stamps thousands
-- alike) was read and sorted again by each page; with id in it the cursor is a seek.
--
-- Its name is compared bytewise (COLLATE "C"), and the scans that want it say so. Without
-- that, a database without statistics (a fresh one, or autovacuum off) sees it and
-- events_by_contact as equally good for a person's event counts, the hottest read of ingest,
-- and may pick this one: every event of the name read to count one person's.
DROP INDEX events_by_name;
CREATE INDEX events_by_name ON events (tenant_id, (name COLLATE "C"), occurred_at, id);
