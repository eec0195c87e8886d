-- When a known person was last seen, kept apart from their contact row (SQLite only).
--
-- Almost every event from a known person changes nothing about them but `last_seen_at`.
-- Rewriting the contact row for that dirties one random page of `contacts` per event, and in
-- WAL mode each dirty page is a 4 KiB frame written at commit and again at checkpoint. This
-- table is narrow (an id and a time), so a group commit's bumps land on a few hundred pages
-- instead of one page per person. A contact's last seen time is the later of its row's
-- `last_seen_at` (written whenever the row is rewritten anyway) and this table's.
--
-- No foreign key: contacts are never removed (only soft-deleted), and the parent check would
-- cost every bump another index seek.
--
-- PostgreSQL rewrites a whole row version on any update, narrow or not, so its schema keeps
-- `last_seen_at` on the contact only.
CREATE TABLE contact_activity (
    contact_id   TEXT    NOT NULL PRIMARY KEY,
    last_seen_at INTEGER NOT NULL
) WITHOUT ROWID;
