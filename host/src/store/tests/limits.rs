//! Each tenant's own limits on both backends: a patch sets the limits it names, returns the
//! ones it nulls to the host's default and leaves the rest; tenants keep their own apart; an
//! unknown tenant gets no row; concurrent patches of different limits both stand.

use super::*;
use crate::tenancy::limits::{LimitOverrides, LimitPatch, Setting};

fn patch(edit: impl FnOnce(&mut LimitPatch)) -> LimitPatch {
    let mut patch = LimitPatch::default();
    edit(&mut patch);
    patch
}

store_test!(
    given_a_tenants_limits_when_patched_twice_then_named_ones_change_nulled_ones_go_and_the_rest_stay,
    |f| async move {
        // Given a tenant that never set a limit
        assert_eq!(f.store.tenant_limits(&f.tenant).await.unwrap(), None);
        assert!(f.store.all_tenant_limits().await.unwrap().is_empty());

        // When it is given a CPU budget and a memory cap
        let first = f
            .store
            .change_tenant_limits(
                &f.tenant,
                &patch(|p| {
                    p.cpu_budget_ms = Setting::Own(250);
                    p.memory_mb = Setting::Own(32);
                }),
                Timestamp(T0),
            )
            .await
            .unwrap()
            .unwrap();

        // Then those are its own and the rest the host's defaults
        assert_eq!(
            first.own,
            LimitOverrides {
                cpu_budget_ms: Some(250),
                memory_mb: Some(32),
                ..Default::default()
            }
        );
        assert_eq!(first.updated_at, Timestamp(T0));

        // When a second patch sets its steps and returns its memory cap to the default
        let second = f
            .store
            .change_tenant_limits(
                &f.tenant,
                &patch(|p| {
                    p.run_steps = Setting::Own(50);
                    p.memory_mb = Setting::HostDefault;
                    p.module_bytes = Setting::Own(1 << 30);
                }),
                Timestamp(T0 + HOUR),
            )
            .await
            .unwrap()
            .unwrap();

        // Then the CPU budget stays, the memory cap is the default's, the steps its own
        let expected = LimitOverrides {
            cpu_budget_ms: Some(250),
            run_steps: Some(50),
            module_bytes: Some(1 << 30),
            ..Default::default()
        };
        assert_eq!(second.own, expected);
        assert_eq!(second.updated_at, Timestamp(T0 + HOUR));
        let read = f.store.tenant_limits(&f.tenant).await.unwrap().unwrap();
        assert_eq!(read, second);
        assert_eq!(f.store.all_tenant_limits().await.unwrap(), vec![second]);

        // And another tenant has none of them, and its own apart
        let other = second_tenant(&f).await;
        assert_eq!(f.store.tenant_limits(&other).await.unwrap(), None);
        let theirs = f
            .store
            .change_tenant_limits(
                &other,
                &patch(|p| p.ingest_rate = Setting::Own(0)),
                Timestamp(T0),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(theirs.own.ingest_rate, Some(0));
        assert_eq!(theirs.own.cpu_budget_ms, None);
        let mut all = f.store.all_tenant_limits().await.unwrap();
        all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        assert_eq!(all.len(), 2);
        assert_eq!(
            f.store.tenant_limits(&f.tenant).await.unwrap().unwrap().own,
            expected
        );

        // And an unknown tenant gets nothing, and no row
        let nobody = TenantId::generate();
        assert_eq!(
            f.store
                .change_tenant_limits(
                    &nobody,
                    &patch(|p| p.run_steps = Setting::Own(5)),
                    Timestamp(T0)
                )
                .await
                .unwrap(),
            None
        );
        assert_eq!(f.store.tenant_limits(&nobody).await.unwrap(), None);
        assert_eq!(f.store.all_tenant_limits().await.unwrap().len(), 2);
    }
);

store_test!(
    given_patches_of_different_limits_at_once_when_both_commit_then_both_stand,
    |f| async move {
        // When many pairs of patches, each of another limit, run at once
        for round in 1..=10u64 {
            let cpu_patch = patch(|p| p.cpu_budget_ms = Setting::Own(100 + round));
            let steps_patch = patch(|p| p.run_steps = Setting::Own(round));
            let cpu = f
                .store
                .change_tenant_limits(&f.tenant, &cpu_patch, Timestamp(T0));
            let steps = f
                .store
                .change_tenant_limits(&f.tenant, &steps_patch, Timestamp(T0));
            let (cpu, steps) = tokio::join!(cpu, steps);
            cpu.unwrap().unwrap();
            steps.unwrap().unwrap();

            // Then neither undid the other
            let own = f.store.tenant_limits(&f.tenant).await.unwrap().unwrap().own;
            assert_eq!(
                (own.cpu_budget_ms, own.run_steps),
                (Some(100 + round), Some(round))
            );
        }
    }
);
