-- One per-person membership index instead of two, sqlite dialect (SQLite only).
--
-- Every join inserted into two indexes keyed by person: `bucket_memberships_one_active` (the
-- one-active-row rule, active rows only) and `bucket_memberships_by_contact` (every row, for
-- the epoch count and for re-pointing a person's rows). Both land on a random page per join,
-- and each dirty page is written to the WAL at every commit. One unique index over every row
-- does both jobs: its last column is '' for the active row and the row's own id for a left
-- one, so two active rows of one person and bucket collide and left rows never do. Reads by
-- person (`tenant, contact_key[, bucket_id]`) use its prefix as they used the old index.
CREATE UNIQUE INDEX bucket_memberships_by_person
    ON bucket_memberships (tenant, contact_key, bucket_id,
                           (CASE WHEN status = 'active' THEN '' ELSE id END));
DROP INDEX bucket_memberships_one_active;
DROP INDEX bucket_memberships_by_contact;
