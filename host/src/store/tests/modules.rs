//! The module catalog: versions stored with their components, each tenant's active set at a
//! revision, deploys that commit only over the revision they checked, rollbacks, removals,
//! live runs per version and pruning.

use super::*;
use crate::ids::ApiKeyId;
use crate::store::{ModuleChange, ModuleComponent, ModuleOrigin, ModuleRecord, NewModuleVersion};

fn version(name: &str, hash: &str, wasm: &[u8]) -> NewModuleVersion {
    NewModuleVersion {
        name: name.into(),
        hash: hash.into(),
        manifest: json!({ "journeys": [{ "id": format!("{name}-journey") }] }),
        wasm: wasm.into(),
        deployed_by: Some(ApiKeyId("key-1".into())),
    }
}

fn deploy(name: &str, hash: &str, wasm: &[u8]) -> ModuleChange {
    ModuleChange::Deploy {
        version: version(name, hash, wasm),
        origin: ModuleOrigin::Api,
    }
}

fn active(set: &crate::store::ModuleSet) -> Vec<(&str, Option<&str>)> {
    set.modules
        .iter()
        .map(|m: &ModuleRecord| (m.name.as_str(), m.active_hash.as_deref()))
        .collect()
}

store_test!(
    given_a_deploy_when_it_commits_over_the_revision_it_read_then_the_version_is_active_with_its_bytes,
    |f| async move {
        // Given a tenant with no modules
        let empty = f.store.module_set(&f.tenant).await.unwrap();
        assert_eq!(empty.revision, 0);
        assert!(empty.modules.is_empty());

        // When a version is deployed over revision 0
        let revision = f
            .store
            .change_modules(&f.tenant, 0, &[deploy("welcome", "hash-1", b"\0asm-1")], Timestamp(T0))
            .await
            .unwrap();

        // Then it is the module's active version, its component is stored, and it is listed
        assert_eq!(revision, Some(1));
        let set = f.store.module_set(&f.tenant).await.unwrap();
        assert_eq!(set.revision, 1);
        assert_eq!(active(&set), vec![("welcome", Some("hash-1"))]);
        assert_eq!(set.modules[0].origin, ModuleOrigin::Api);
        assert_eq!(set.modules[0].active_bytes, 6);
        assert_eq!(
            f.store.module_component(&f.tenant, "hash-1", true).await.unwrap(),
            Some(ModuleComponent {
                name: "welcome".into(),
                wasm: Some(b"\0asm-1".to_vec())
            })
        );
        assert_eq!(
            f.store.module_component(&f.tenant, "hash-1", false).await.unwrap(),
            Some(ModuleComponent {
                name: "welcome".into(),
                wasm: None
            })
        );
        let versions = f.store.module_versions(&f.tenant, "welcome").await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].size_bytes, 6);
        assert_eq!(versions[0].deployed_by, Some(ApiKeyId("key-1".into())));
        assert_eq!(versions[0].activated_at, Some(Timestamp(T0)));
        assert_eq!(versions[0].manifest["journeys"][0]["id"], "welcome-journey");
        assert_eq!(
            f.store.module_revisions().await.unwrap(),
            vec![(f.tenant.clone(), 1)]
        );
    }
);

store_test!(
    given_a_deploy_over_a_stale_revision_when_it_commits_then_nothing_is_written,
    |f| async move {
        // Given a deploy at revision 1
        f.store
            .change_modules(
                &f.tenant,
                0,
                &[deploy("welcome", "hash-1", b"one")],
                Timestamp(T0),
            )
            .await
            .unwrap();

        // When another deploy checked against revision 0 tries to commit
        let stale = f
            .store
            .change_modules(
                &f.tenant,
                0,
                &[deploy("other", "hash-2", b"two")],
                Timestamp(T0 + 1),
            )
            .await
            .unwrap();

        // Then it is refused and left no trace
        assert_eq!(stale, None);
        let set = f.store.module_set(&f.tenant).await.unwrap();
        assert_eq!(set.revision, 1);
        assert_eq!(active(&set), vec![("welcome", Some("hash-1"))]);
        assert_eq!(
            f.store
                .module_component(&f.tenant, "hash-2", true)
                .await
                .unwrap(),
            None
        );
    }
);

store_test!(
    given_two_versions_when_rolled_back_and_removed_then_the_set_follows_and_versions_stay,
    |f| async move {
        // Given v1 then v2 of one module, and another module
        let at = |ms: i64| Timestamp(T0 + ms);
        f.store
            .change_modules(
                &f.tenant,
                0,
                &[deploy("welcome", "v1", b"1"), deploy("extra", "x1", b"x")],
                at(0),
            )
            .await
            .unwrap();
        f.store
            .change_modules(&f.tenant, 1, &[deploy("welcome", "v2", b"22")], at(10))
            .await
            .unwrap();
        let versions = f.store.module_versions(&f.tenant, "welcome").await.unwrap();
        let hashes: Vec<&str> = versions.iter().map(|v| v.hash.as_str()).collect();
        assert_eq!(hashes, vec!["v2", "v1"], "last activated first");

        // When v1 is activated again
        let rollback = ModuleChange::Activate {
            name: "welcome".into(),
            hash: "v1".into(),
            origin: ModuleOrigin::Api,
        };
        assert_eq!(
            f.store
                .change_modules(&f.tenant, 2, &[rollback], at(20))
                .await
                .unwrap(),
            Some(3)
        );

        // Then v1 is active and listed first, and the set counts v1's size
        let set = f.store.module_set(&f.tenant).await.unwrap();
        assert_eq!(
            active(&set),
            vec![("extra", Some("x1")), ("welcome", Some("v1"))]
        );
        let sizes: Vec<u64> = set.modules.iter().map(|m| m.active_bytes).collect();
        assert_eq!(sizes, vec![1, 1]);
        let versions = f.store.module_versions(&f.tenant, "welcome").await.unwrap();
        assert_eq!(versions[0].hash, "v1");
        assert_eq!(versions[0].activated_at, Some(at(20)));

        // When the module is removed
        let remove = ModuleChange::Remove {
            name: "welcome".into(),
        };
        f.store
            .change_modules(&f.tenant, 3, &[remove], at(30))
            .await
            .unwrap();

        // Then it has no active version (and counts nothing) but keeps its versions and their
        // bytes
        let set = f.store.module_set(&f.tenant).await.unwrap();
        assert_eq!(active(&set), vec![("extra", Some("x1")), ("welcome", None)]);
        assert_eq!(set.modules[1].active_bytes, 0);
        assert_eq!(
            f.store
                .module_versions(&f.tenant, "welcome")
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(
            f.store
                .module_component(&f.tenant, "v2", true)
                .await
                .unwrap()
                .unwrap()
                .wasm
                .is_some()
        );
    }
);

store_test!(
    given_versions_with_and_without_live_runs_when_pruned_then_only_unneeded_old_ones_go,
    |f| async move {
        // Given four versions of one module, a live run on the oldest ("hash-1", which
        // `start_run` pins its runs to) and the newest active
        for (revision, hash) in ["hash-1", "v2", "v3", "v4"].into_iter().enumerate() {
            f.store
                .change_modules(
                    &f.tenant,
                    revision as i64,
                    &[deploy("welcome", hash, hash.as_bytes())],
                    Timestamp(T0 + revision as i64),
                )
                .await
                .unwrap();
        }
        start_run(&f, "ada", T0).await;
        let versions = f.store.module_versions(&f.tenant, "welcome").await.unwrap();
        let live: Vec<(&str, u64)> = versions
            .iter()
            .map(|v| (v.hash.as_str(), v.live_runs))
            .collect();
        assert_eq!(live, vec![("v4", 0), ("v3", 0), ("v2", 0), ("hash-1", 1)]);

        // When pruned keeping one spare version
        let pruned = f
            .store
            .prune_module_versions(&f.tenant, "welcome", 1)
            .await
            .unwrap();

        // Then the active one, the newest spare and the one with a live run stay
        assert_eq!(pruned, vec!["v2".to_owned()]);
        let left: Vec<String> = f
            .store
            .module_versions(&f.tenant, "welcome")
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.hash)
            .collect();
        assert_eq!(left, vec!["v4", "v3", "hash-1"]);
    }
);

store_test!(
    given_modules_in_one_tenant_when_another_tenant_looks_then_it_sees_none,
    |f| async move {
        // Given a module deployed in tenant A
        f.store
            .change_modules(
                &f.tenant,
                0,
                &[deploy("welcome", "hash-1", b"1")],
                Timestamp(T0),
            )
            .await
            .unwrap();

        // When tenant B looks
        let b = second_tenant(&f).await;

        // Then it sees no module, no version and no component, and its revision is its own
        let set = f.store.module_set(&b).await.unwrap();
        assert!(set.modules.is_empty());
        assert_eq!(set.revision, 0);
        assert!(
            f.store
                .module_versions(&b, "welcome")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            f.store.module_component(&b, "hash-1", true).await.unwrap(),
            None
        );
        assert_eq!(
            f.store
                .prune_module_versions(&b, "welcome", 0)
                .await
                .unwrap()
                .len(),
            0
        );
    }
);
