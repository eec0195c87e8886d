-- The one-active-membership index by person first, sqlite dialect (SQLite only).
--
-- Every event that can change a bucket reads the person's active memberships. By
-- (tenant, bucket, person) this unique index could not serve that read, which went through
-- bucket_memberships_by_contact instead and looked up every membership row the person ever had
-- to test its status: a read that grew with each join and leave. The same columns by
-- (tenant, person, bucket) keep the same rule (uniqueness does not depend on the order, and
-- ON CONFLICT names the columns in any order) and make the read a seek over the active rows
-- alone; a lookup of one person in one bucket still seeks on all three columns.
DROP INDEX bucket_memberships_one_active;
CREATE UNIQUE INDEX bucket_memberships_one_active
    ON bucket_memberships (tenant_id, contact_key, bucket_id) WHERE status = 'active';
