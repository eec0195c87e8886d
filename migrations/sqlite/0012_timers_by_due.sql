-- Timers, SQLite only (PostgreSQL's index has had both columns since 0001).
--
-- Due timers are claimed in (due_at, run_id) order. With due_at alone the index does not give
-- that order (a TEXT primary key is not the rowid), so every claim sorted all due timers: with
-- a burst of 40,000 runs due at once, each claim of a few runs sorted 40,000 rows.
DROP INDEX timers_by_due;
CREATE INDEX timers_by_due ON timers (due_at, run_id);
