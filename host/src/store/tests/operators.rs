//! The operator's tenant lifecycle: suspension holds a tenant's runs and emails and loses
//! nothing; deletion removes every row of the tenant, as the database's own catalog lists its
//! tables, and nothing of another tenant.

use super::*;
use crate::ids::ApiKeyId;
use crate::store::NewApiKey;
use crate::tenancy::Scope;

/// Rows the store's API does not write directly, one per table; `$1` is the tenant's id.
const RAW_ROWS: [&str; 16] = [
    "INSERT INTO contact_aliases (tenant_id, kind, value, contact_id, reason, created_at) \
     VALUES ($1, 'key', $1, (SELECT id FROM contacts WHERE tenant_id = $1 LIMIT 1), 'promote', 0)",
    "INSERT INTO journal (run_id, seq, tenant_id, kind, request, response, recorded_at) \
     VALUES ((SELECT id FROM runs WHERE tenant_id = $1 LIMIT 1), 100, $1, 'now', '{}', '{}', 0)",
    "INSERT INTO run_effects (run_id, seq, tenant_id, kind, payload, created_at) \
     VALUES ((SELECT id FROM runs WHERE tenant_id = $1 LIMIT 1), 100, $1, 'trigger', '{}', 0)",
    "INSERT INTO module_versions (tenant_id, hash, name, manifest, deployed_at) \
     VALUES ($1, 'hash-1', 'welcome', '{}', 0)",
    "INSERT INTO modules (tenant_id, name, active_hash, origin, updated_at) \
     VALUES ($1, 'welcome', 'hash-1', 'api', 0)",
    "INSERT INTO journey_configs (tenant_id, journey_id, enabled, updated_at) \
     VALUES ($1, 'welcome', true, 0)",
    "INSERT INTO journey_skips (tenant_id, journey_id, reason, count) \
     VALUES ($1, 'welcome', 'disabled', 1)",
    "INSERT INTO email_templates (tenant_id, key, subject, text_body, created_at, updated_at) \
     VALUES ($1, 'welcome', 'Hi', 'Hello', 0, 0)",
    "INSERT INTO email_preferences (tenant_id, contact_key, email, unsubscribed, updated_at) \
     VALUES ($1, 'ada', 'ada@example.com', true, 0)",
    "INSERT INTO email_signing_keys (tenant_id, secret, created_at) VALUES ($1, 'secret', 0) \
     ON CONFLICT DO NOTHING",
    "INSERT INTO email_senders (tenant_id, from_address, transport, created_at, updated_at) \
     VALUES ($1, 'hello@example.com', '{}', 0, 0) ON CONFLICT DO NOTHING",
    "INSERT INTO bucket_configs (tenant_id, bucket_id, backfill_state, backfill_mode, \
     target_hash, updated_at) VALUES ($1, 'vip', 'pending', 'first-time', 'h', 0)",
    "INSERT INTO bucket_absence_cursors (tenant_id, bucket_id, event_name, within_ms, \
     after_at, after_id) VALUES ($1, 'vip', 'login', 1, 0, 'e')",
    "INSERT INTO reconcile_state (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
    "INSERT INTO tenant_limits (tenant_id, activations_in_flight, updated_at) VALUES ($1, 4, 0)",
    // A day of 1970, in a shard of its own: the ingest and commit above count today's.
    "INSERT INTO tenant_usage (tenant_id, day, shard, events) VALUES ($1, 1, 1, 1)",
];

/// A membership; SQLite keys memberships by the tenant's number (migration 0016).
const SQLITE_MEMBERSHIP: &str = "INSERT INTO bucket_memberships (id, tenant, bucket_id, \
     contact_key, status, entry_count, source, entered_at, last_evaluated_at, updated_at) \
     VALUES ($1 || '-m', (SELECT number FROM tenants WHERE id = $1), 'vip', 'ada', 'active', 1, \
     'manual', 0, 0, 0)";
const PG_MEMBERSHIP: &str = "INSERT INTO bucket_memberships (id, tenant_id, bucket_id, \
     contact_key, status, entry_count, source, entered_at, last_evaluated_at, updated_at) \
     VALUES ($1 || '-m', $1, 'vip', 'ada', 'active', 1, 'manual', 0, 0, 0)";
/// SQLite keeps last-seen times apart from contacts (migration 0003).
const SQLITE_ACTIVITY: &str = "INSERT INTO contact_activity (contact_id, last_seen_at) \
     SELECT id, 0 FROM contacts WHERE tenant_id = $1 ON CONFLICT (contact_id) DO NOTHING";

/// Data of `tenant` in every table: a contact, its event, a waiting run with its timer and a
/// queued email (through the store, as ingest and an activation write them), a key, and a row
/// in each other table.
async fn fill_every_table(f: &Fixture, tenant: &TenantId, tag: &str, at: i64) {
    let (_, started) = ingest_stored(
        f,
        event(tenant, "ada", at),
        &[welcome(EntryLimit::Unlimited)],
    )
    .await;
    let run = started[0].clone();
    let claimed = claim_due(f, "w1", at).await;
    assert!(claimed.iter().any(|c| c.run.id == run));
    let mut waiting = waiting_commit(f, &run, "w1", at + HOUR);
    waiting.tenant_id = tenant.clone();
    let mut mail = email(f, &run, 0, "ada@example.com");
    mail.tenant_id = tenant.clone();
    waiting.emails = vec![mail];
    assert!(f.store.commit_activation(waiting).await.unwrap());
    f.store
        .create_api_key(NewApiKey {
            id: ApiKeyId::generate(),
            tenant_id: tenant.clone(),
            name: "admin".into(),
            key_hash: format!("hash-{tag}"),
            scopes: Scope::ALL.to_vec(),
            created_at: Timestamp(at),
        })
        .await
        .unwrap();
    let mut statements = RAW_ROWS.to_vec();
    match f.db.backend() {
        Backend::Sqlite => statements.extend([SQLITE_MEMBERSHIP, SQLITE_ACTIVITY]),
        Backend::Postgres => statements.push(PG_MEMBERSHIP),
    }
    for sql in statements {
        f.db.execute(sql, &[tenant.as_str()])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

store_test!(
    given_two_tenants_with_data_in_every_table_when_one_is_deleted_then_no_row_of_it_remains,
    |f| async move {
        // Given acme and globex, each with rows in every table that holds tenants' data
        let globex = second_tenant(&f).await;
        fill_every_table(&f, &f.tenant, "acme", T0).await;
        fill_every_table(&f, &globex, "globex", T0 + 1).await;
        let acme_before = f.db.tenant_rows(f.tenant.as_str()).await;
        let empty: Vec<&String> = acme_before
            .iter()
            .filter(|(_, rows)| **rows == 0)
            .map(|(table, _)| table)
            .collect();
        assert!(
            empty.is_empty(),
            "the test must fill every table holding tenants' rows: {empty:?}"
        );
        let globex_before = f.db.tenant_rows(globex.as_str()).await;

        // When acme is deleted
        assert!(f.store.delete_tenant(&f.tenant).await.unwrap());

        // Then no row of it remains in any table, and globex's rows are all there
        let left: Vec<(String, i64)> =
            f.db.tenant_rows(f.tenant.as_str())
                .await
                .into_iter()
                .filter(|(_, rows)| *rows > 0)
                .collect();
        assert!(
            left.is_empty(),
            "rows of the deleted tenant remain: {left:?}"
        );
        assert_eq!(f.db.tenant_rows(globex.as_str()).await, globex_before);
        assert!(f.store.tenant_by_id(&f.tenant).await.unwrap().is_none());
        assert!(
            f.store
                .api_key_by_hash("hash-acme")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            f.store
                .api_key_by_hash("hash-globex")
                .await
                .unwrap()
                .is_some()
        );
        // And deleting it again finds nothing
        assert!(!f.store.delete_tenant(&f.tenant).await.unwrap());
    }
);

store_test!(
    given_a_suspended_tenant_when_its_runs_fall_due_then_none_is_claimed_until_it_resumes,
    |f| async move {
        // Given a due run in acme and one in globex, and a key of acme
        let globex = second_tenant(&f).await;
        let ours = start_run(&f, "ada", T0).await;
        let (_, theirs) = ingest_stored(
            &f,
            event(&globex, "bob", T0 + 1),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;
        f.store
            .create_api_key(NewApiKey {
                id: ApiKeyId::generate(),
                tenant_id: f.tenant.clone(),
                name: "admin".into(),
                key_hash: "hash-acme".into(),
                scopes: vec![Scope::Admin],
                created_at: Timestamp(T0),
            })
            .await
            .unwrap();

        // When acme is suspended, twice
        let at = Timestamp(T0 + HOUR);
        let suspended = f.store.set_tenant_suspended(&f.tenant, Some(at)).await;
        let again = f
            .store
            .set_tenant_suspended(&f.tenant, Some(Timestamp(T0 + 2 * HOUR)))
            .await;

        // Then it is suspended since the first time, and its key says so
        assert_eq!(suspended.unwrap().unwrap().suspended_at, Some(at));
        assert_eq!(again.unwrap().unwrap().suspended_at, Some(at));
        let key = f.store.api_key_by_hash("hash-acme").await.unwrap().unwrap();
        assert_eq!(key.tenant.suspended_at, Some(at));
        // And only globex's run is claimed, while acme's does not count as due
        let claimed = claim_due(&f, "w1", T0 + 3 * HOUR).await;
        let ids: Vec<&RunId> = claimed.iter().map(|c| &c.run.id).collect();
        assert_eq!(ids, vec![&theirs[0]]);
        assert_eq!(f.store.next_due_at().await.unwrap(), None);

        // When acme resumes
        let resumed = f.store.set_tenant_suspended(&f.tenant, None).await.unwrap();
        assert_eq!(resumed.unwrap().suspended_at, None);

        // Then its run, due all along, is due and claimed
        assert!(f.store.next_due_at().await.unwrap().is_some());
        let claimed = claim_due(&f, "w1", T0 + 3 * HOUR).await;
        let ids: Vec<&RunId> = claimed.iter().map(|c| &c.run.id).collect();
        assert_eq!(ids, vec![&ours]);
        // And an unknown tenant is none to suspend
        let nobody = TenantId::generate();
        assert!(
            f.store
                .set_tenant_suspended(&nobody, Some(at))
                .await
                .unwrap()
                .is_none()
        );
    }
);

store_test!(
    given_a_suspended_tenant_with_a_queued_email_when_the_outbox_is_claimed_then_it_waits_until_the_tenant_resumes,
    |f| async move {
        // Given a queued email of acme, which is suspended
        run_with_queued_email(&f).await;
        f.store
            .set_tenant_suspended(&f.tenant, Some(Timestamp(T0)))
            .await
            .unwrap();

        // When the outbox is claimed, then nothing is
        let claimed = f.store.claim_outbox(&real_lease("d1"), 10).await.unwrap();
        assert!(claimed.is_empty(), "{claimed:?}");

        // When acme resumes, then its email is claimed
        f.store.set_tenant_suspended(&f.tenant, None).await.unwrap();
        let claimed = f.store.claim_outbox(&real_lease("d1"), 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].tenant_id, f.tenant);
    }
);

store_test!(
    given_operator_keys_when_looked_up_then_they_are_apart_from_tenant_keys,
    |f| async move {
        // Given no operator key yet
        assert!(!f.store.operator_keys_exist().await.unwrap());

        // When one is created
        let key = f
            .store
            .create_operator_key(crate::store::NewOperatorKey {
                id: ApiKeyId::generate(),
                name: "ops".into(),
                key_hash: "hash-ops".into(),
                created_at: Timestamp(T0),
            })
            .await
            .unwrap();

        // Then it is found as an operator key only, and tenants are listed oldest first
        assert!(f.store.operator_keys_exist().await.unwrap());
        assert_eq!(
            f.store.operator_key_by_hash("hash-ops").await.unwrap(),
            Some(key)
        );
        assert!(f.store.api_key_by_hash("hash-ops").await.unwrap().is_none());
        assert!(
            f.store
                .operator_key_by_hash("nope")
                .await
                .unwrap()
                .is_none()
        );
        let globex = second_tenant(&f).await;
        let names: Vec<String> = f
            .store
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["acme", "globex"]);
        assert_eq!(
            f.store.tenant_by_id(&globex).await.unwrap().unwrap().name,
            "globex"
        );
    }
);
