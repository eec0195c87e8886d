-- Bucket backfill jobs, sqlite dialect. Keep in step with migrations/postgres.
--
-- A backfill scans the tenant's live contacts in pages (keyset on contacts.id); each page is
-- one transaction that also advances backfill_cursor, so a backfill another host takes over
-- (its lease ran out) resumes after the last committed page. joined/left count what it
-- changed. lease_until is on the real clock, like every other lease.
ALTER TABLE bucket_configs ADD COLUMN backfill_cursor TEXT;
ALTER TABLE bucket_configs ADD COLUMN backfill_joined INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bucket_configs ADD COLUMN backfill_left INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bucket_configs ADD COLUMN lease_owner TEXT;
ALTER TABLE bucket_configs ADD COLUMN lease_until INTEGER;
