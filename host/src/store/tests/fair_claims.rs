//! Claims are fair across tenants and keep each under its activations-in-flight limit, counted
//! over every lease in the database (every host's), whatever the backend.

use super::*;

/// Starts `n` runs of `tenant`, all due at `at`.
async fn flood(f: &Fixture, tenant: &TenantId, n: usize, at: i64) -> Vec<RunId> {
    let mut runs = Vec::with_capacity(n);
    for i in 0..n {
        let (_, started) = ingest_stored(
            f,
            event(tenant, &format!("flood-{i}"), at),
            &[welcome(EntryLimit::Unlimited)],
        )
        .await;
        runs.extend(started);
    }
    runs
}

async fn claim(f: &Fixture, owner: &str, at: i64, limit: u32, in_flight: u32) -> Vec<RunId> {
    f.store
        .claim_due_runs(Timestamp(at), &real_lease(owner), limit, in_flight)
        .await
        .unwrap()
        .into_iter()
        .map(|claimed| claimed.run.id)
        .collect()
}

async fn set_in_flight_limit(f: &Fixture, tenant: &TenantId, limit: i64) {
    f.db.execute(
        "INSERT INTO tenant_limits (tenant_id, activations_in_flight, updated_at) \
         VALUES ($1, CAST($2 AS BIGINT), 0) ON CONFLICT (tenant_id) DO UPDATE \
         SET activations_in_flight = excluded.activations_in_flight",
        &[tenant.as_str(), &limit.to_string()],
    )
    .await
    .unwrap();
}

store_test!(
    given_one_tenant_flooding_when_another_has_one_run_due_later_then_it_is_claimed_second,
    |f| async move {
        // Given acme with 40 runs due since T0 and globex with one run due later
        let acme = flood(&f, &f.tenant, 40, T0).await;
        let globex = second_tenant(&f).await;
        let theirs = flood(&f, &globex, 1, T0 + 1_000).await;

        // When a claim of 8 is made
        let claimed = claim(&f, "w1", T0 + 1_000, 8, 64).await;

        // Then globex's run comes second: after acme's oldest, before acme's second
        assert_eq!(claimed.len(), 8);
        assert_eq!(claimed[0], acme[0]);
        assert_eq!(claimed[1], theirs[0]);
        assert!(claimed[2..].iter().all(|run| acme.contains(run)));
    }
);

store_test!(
    given_in_flight_limits_when_claims_are_made_then_no_tenant_passes_its_own_or_the_default,
    |f| async move {
        // Given acme with 10 due runs and a limit of 3, and globex with 10 and no limit of its own
        flood(&f, &f.tenant, 10, T0).await;
        set_in_flight_limit(&f, &f.tenant, 3).await;
        let globex = second_tenant(&f).await;
        let theirs = flood(&f, &globex, 10, T0).await;

        // When two hosts claim as much as they can, under a default of 4
        let first = claim(&f, "host-a", T0, 64, 4).await;
        let second = claim(&f, "host-b", T0, 64, 4).await;

        // Then acme has 3 in flight and globex 4, the first claim took them all
        let of_globex = first.iter().filter(|run| theirs.contains(run)).count();
        assert_eq!((first.len() - of_globex, of_globex), (3, 4));
        assert!(second.is_empty(), "the leases of another host count too");

        // When one of globex's activations ends
        let done = first.iter().find(|run| theirs.contains(run)).unwrap();
        let mut completed = commit(&f, done, "host-a", RunTransition::Completed);
        completed.tenant_id = globex.clone();
        assert!(f.store.commit_activation(completed).await.unwrap());

        // Then a claim takes one more of globex's, still none of acme's
        let third = claim(&f, "host-b", T0, 64, 4).await;
        assert_eq!(third.len(), 1);
        assert!(theirs.contains(&third[0]));

        // When acme's limit is lowered below what it has in flight, then raised
        set_in_flight_limit(&f, &f.tenant, 1).await;
        assert!(claim(&f, "host-b", T0, 64, 4).await.is_empty());
        set_in_flight_limit(&f, &f.tenant, 6).await;

        // Then the raised limit is room at once: three more of acme's
        let fourth = claim(&f, "host-b", T0, 64, 4).await;
        assert_eq!(fourth.len(), 3);
        assert!(fourth.iter().all(|run| !theirs.contains(run)));
    }
);

store_test!(
    given_a_host_that_died_holding_leases_when_they_lapse_then_they_no_longer_count_in_flight,
    |f| async move {
        // Given two of acme's runs leased by a host whose leases lapsed a minute ago
        let runs = flood(&f, &f.tenant, 3, T0).await;
        let long_ago = Clock::real_now().0 - 120_000;
        let dead = f
            .store
            .claim_due_runs(Timestamp(T0), &lease("dead", long_ago), 2, 2)
            .await
            .unwrap();
        assert_eq!(dead.len(), 2);

        // When another host claims under a limit of 2
        let claimed = claim(&f, "alive", T0, 64, 2).await;

        // Then the lapsed leases neither count nor stay unclaimed: two runs again
        assert_eq!(claimed.len(), 2);
        assert!(claimed.iter().all(|run| runs.contains(run)));
    }
);
