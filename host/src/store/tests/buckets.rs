//! Bucket membership reads: counts, keyset pages of members, one person's membership and a
//! contact's memberships. Membership rows are written with raw SQL (the write side has its own
//! tests); what is checked here is what the reads show: live contacts only, active rows only
//! as members, and paging that visits every member exactly once.

use super::*;
use crate::store::{BucketCounts, MemberPage, MemberPageRequest};
use std::collections::{HashMap, HashSet};

/// A live contact with user id `user` (its key) and email `<user>@example.com`.
async fn person(f: &Fixture, user: &str) -> String {
    let email = format!("{user}@example.com");
    f.store
        .upsert_plain(
            &f.tenant,
            &Identity::new(Some(user), Some(&email), None),
            &Map::new(),
            Timestamp(T0),
        )
        .await
        .unwrap()
        .contact
        .key
}

/// Inserts a membership row of `contact_key` in `bucket` with this epoch and status, entered
/// at `at`; its id.
async fn membership(
    f: &Fixture,
    bucket: &str,
    contact_key: &str,
    entry_count: u32,
    status: &str,
    at: i64,
) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let (entry_count, at) = (entry_count.to_string(), at.to_string());
    // SQLite stores the tenant's number (migration 0016), PostgreSQL its id.
    macro_rules! insert_into {
        ($tenant:literal, $value:literal) => {
            concat!(
                "INSERT INTO bucket_memberships (id, ",
                $tenant,
                ", bucket_id, contact_key, status, entry_count, source, entered_at, left_at, \
                 leave_reason, last_evaluated_at, updated_at) VALUES ($1, ",
                $value,
                ", $3, $4, $5, CAST($6 AS BIGINT), 'event', CAST($7 AS BIGINT), \
                 CASE WHEN $5 = 'left' THEN CAST($7 AS BIGINT) END, \
                 CASE WHEN $5 = 'left' THEN 'criteria' END, CAST($7 AS BIGINT), \
                 CAST($7 AS BIGINT))"
            )
        };
    }
    let sql = match f.db.backend() {
        Backend::Sqlite => insert_into!("tenant", "(SELECT number FROM tenants WHERE id = $2)"),
        Backend::Postgres => insert_into!("tenant_id", "$2"),
    };
    f.db.execute(
        sql,
        &[
            &id,
            f.tenant.as_str(),
            bucket,
            contact_key,
            status,
            &entry_count,
            &at,
        ],
    )
    .await
    .unwrap();
    id
}

/// A current member of `bucket` (first epoch); the membership id.
async fn join(f: &Fixture, bucket: &str, contact_key: &str) -> String {
    membership(f, bucket, contact_key, 1, "active", T0).await
}

/// Closes the membership `id`, as a leave would.
async fn leave(f: &Fixture, id: &str) {
    let changed =
        f.db.execute(
            "UPDATE bucket_memberships SET status = 'left', left_at = updated_at, \
             leave_reason = 'criteria' WHERE id = $1",
            &[id],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
}

async fn page(f: &Fixture, bucket: &str, limit: Option<u32>, cursor: Option<String>) -> MemberPage {
    f.store
        .bucket_members(&f.tenant, bucket, &MemberPageRequest { limit, cursor })
        .await
        .unwrap()
}

/// Every page of `bucket` from the first, `limit` at a time, with `between` run after each
/// page; the membership ids seen, in order, and the number of pages.
async fn walk<F, Fut>(f: &Fixture, bucket: &str, limit: u32, mut between: F) -> (Vec<String>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, None);
    loop {
        let got = page(f, bucket, Some(limit), cursor.take()).await;
        pages += 1;
        assert!(got.members.len() <= limit as usize);
        seen.extend(got.members.iter().map(|m| m.id.clone()));
        match got.next_cursor {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "the cursor is the last row's id");
                cursor = Some(next);
            }
            None => return (seen, pages),
        }
        between(pages).await;
        assert!(pages < 1000, "paging does not end");
    }
}

fn counts(active: u64, left: u64) -> BucketCounts {
    BucketCounts { active, left }
}

store_test!(
    given_members_of_which_one_was_deleted_when_counted_then_only_live_contacts_count,
    |f| async move {
        // Given ada, bob and cy in "vip", dan who left it, ada also in "trial"
        let (ada, bob, cy, dan) = (
            person(&f, "ada").await,
            person(&f, "bob").await,
            person(&f, "cy").await,
            person(&f, "dan").await,
        );
        for key in [&ada, &bob, &cy] {
            join(&f, "vip", key).await;
        }
        membership(&f, "vip", &dan, 1, "left", T0).await;
        join(&f, "trial", &ada).await;
        // And bob was deleted afterwards (his row stays active in the table)
        f.store
            .delete_contact(&f.tenant, &bob, Timestamp(T0 + HOUR))
            .await
            .unwrap()
            .expect("bob is deleted");

        // When every bucket is counted at once
        let all = f.store.bucket_counts(&f.tenant).await.unwrap();
        // Then bob counts nowhere and left rows are counted apart
        assert_eq!(
            all,
            HashMap::from([
                ("vip".to_owned(), counts(2, 1)),
                ("trial".to_owned(), counts(1, 0)),
            ])
        );
        // And one bucket's counts agree; a bucket without rows has zero
        assert_eq!(
            f.store.bucket_counts_of(&f.tenant, "vip").await.unwrap(),
            counts(2, 1)
        );
        assert_eq!(
            f.store.bucket_counts_of(&f.tenant, "nobody").await.unwrap(),
            BucketCounts::default()
        );
        // And bob is neither listed, nor a member, nor has memberships
        let listed = page(&f, "vip", None, None).await;
        assert_eq!(listed.total, 2);
        let keys: Vec<&str> = listed
            .members
            .iter()
            .map(|m| m.contact_key.as_str())
            .collect();
        assert!(keys.contains(&"ada") && keys.contains(&"cy") && !keys.contains(&"bob"));
        assert_eq!(
            f.store
                .bucket_membership(&f.tenant, "vip", &bob)
                .await
                .unwrap(),
            None
        );
        assert!(
            f.store
                .contact_memberships(&f.tenant, &bob)
                .await
                .unwrap()
                .is_empty()
        );
        // And another tenant sees none of it
        let other = second_tenant(&f).await;
        assert!(f.store.bucket_counts(&other).await.unwrap().is_empty());
        assert_eq!(page(&f, "vip", None, None).await.members.len(), 2);
        let elsewhere = f
            .store
            .bucket_members(&other, "vip", &MemberPageRequest::default())
            .await
            .unwrap();
        assert_eq!(elsewhere, MemberPage::default());
    }
);

store_test!(
    given_a_person_who_left_when_asked_then_they_are_not_a_member_until_they_rejoin,
    |f| async move {
        // Given ada, whose first membership of "vip" ended
        let ada = person(&f, "ada").await;
        membership(&f, "vip", &ada, 1, "left", T0).await;

        // When asked, then she is not a member and is not listed
        let not_member = f
            .store
            .bucket_membership(&f.tenant, "vip", &ada)
            .await
            .unwrap();
        assert_eq!(not_member, None);
        assert_eq!(page(&f, "vip", None, None).await.total, 0);
        assert!(
            f.store
                .contact_memberships(&f.tenant, &ada)
                .await
                .unwrap()
                .is_empty()
        );

        // When she enters again (her second epoch)
        let id = membership(&f, "vip", &ada, 2, "active", T0 + HOUR).await;
        // Then she is a member with epoch 2, entered then
        let member = f
            .store
            .bucket_membership(&f.tenant, "vip", &ada)
            .await
            .unwrap()
            .expect("a member");
        assert_eq!(
            (
                member.id.as_str(),
                member.bucket_id.as_str(),
                member.contact_key.as_str()
            ),
            (id.as_str(), "vip", "ada")
        );
        assert_eq!(
            (member.entry_count, member.entered_at),
            (2, Timestamp(T0 + HOUR))
        );
        assert_eq!(
            f.store.bucket_counts_of(&f.tenant, "vip").await.unwrap(),
            counts(1, 1)
        );
        // And the member list shows her email and epoch
        let listed = page(&f, "vip", None, None).await;
        assert_eq!(listed.members.len(), 1);
        let row = &listed.members[0];
        assert_eq!(row.email.as_deref(), Some("ada@example.com"));
        assert_eq!((row.entry_count, row.entered_at), (2, Timestamp(T0 + HOUR)));
        // And her contact's memberships list it
        assert_eq!(
            f.store.contact_memberships(&f.tenant, &ada).await.unwrap(),
            vec![member]
        );
    }
);

store_test!(
    given_a_contact_whose_key_changed_when_asked_by_an_old_key_then_its_membership_is_found,
    |f| async move {
        // Given an email-only contact that later gained user id "u1" (its key now)
        let first = f
            .store
            .upsert_plain(
                &f.tenant,
                &Identity::new(None, Some("ada@example.com"), None),
                &Map::new(),
                Timestamp(T0),
            )
            .await
            .unwrap()
            .contact;
        let now = f
            .store
            .upsert_plain(
                &f.tenant,
                &Identity::new(Some("u1"), Some("ada@example.com"), None),
                &Map::new(),
                Timestamp(T0 + 1),
            )
            .await
            .unwrap()
            .contact;
        assert_eq!((now.id.clone(), now.key.as_str()), (first.id.clone(), "u1"));
        assert_ne!(first.key, "u1");
        // And a membership under the resolved key
        let id = join(&f, "vip", "u1").await;

        // When asked by the old key and by the current one
        for key in [first.key.as_str(), "u1"] {
            let found = f
                .store
                .bucket_membership(&f.tenant, "vip", key)
                .await
                .unwrap();
            // Then the membership is found
            assert_eq!(found.map(|m| m.id), Some(id.clone()), "by {key:?}");
        }
        // And an unknown key, or another bucket, finds none
        for (bucket, key) in [("vip", "nobody"), ("trial", "u1")] {
            let found = f
                .store
                .bucket_membership(&f.tenant, bucket, key)
                .await
                .unwrap();
            assert_eq!(found, None);
        }
    }
);

store_test!(
    given_members_when_paged_then_each_appears_exactly_once_in_id_order,
    |f| async move {
        // Given 7 members of "vip" and one of "trial"
        let mut ids = Vec::new();
        for i in 0..7 {
            let key = person(&f, &format!("p{i}")).await;
            ids.push(join(&f, "vip", &key).await);
        }
        join(&f, "trial", "p0").await;
        ids.sort();

        // When paged three at a time
        let (seen, pages) = walk(&f, "vip", 3, |_| async {}).await;
        // Then three pages visit every member once, in membership-id order
        assert_eq!((seen, pages), (ids.clone(), 3));
        // And every page reports the total
        let first = page(&f, "vip", Some(3), None).await;
        assert_eq!(first.total, 7);

        // When the members fill the last page exactly
        let (seen, pages) = walk(&f, "vip", 7, |_| async {}).await;
        // Then there is no next page (and no empty page to fetch)
        assert_eq!((seen, pages), (ids.clone(), 1));

        // When the cursor is past the last member
        let past = page(&f, "vip", Some(3), ids.last().cloned()).await;
        // Then the page is empty and the last
        assert!(past.members.is_empty() && past.next_cursor.is_none());
        assert_eq!(past.total, 7);
    }
);

store_test!(
    given_members_joining_and_leaving_between_pages_when_paged_then_steady_members_appear_once,
    |f| async move {
        // Given 12 members
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for i in 0..12 {
            let key = person(&f, &format!("p{i:02}")).await;
            ids.push(join(&f, "vip", &key).await);
            keys.push(key);
        }
        let by_id: Vec<String> = {
            let mut sorted = ids.clone();
            sorted.sort();
            sorted
        };
        // The churn: after each page, one member not yet seen and one already seen leave,
        // and two newcomers join.
        let churned = std::sync::Mutex::new(HashSet::new());
        let newcomer = std::sync::atomic::AtomicU32::new(0);
        let f = &f;
        let (seen, _) = walk(f, "vip", 4, |pages| {
            let by_id = &by_id;
            let churned = &churned;
            let newcomer = &newcomer;
            async move {
                let later = by_id[by_id.len() - pages as usize].clone();
                let earlier = by_id[pages as usize - 1].clone();
                for id in [later, earlier] {
                    if churned.lock().unwrap().insert(id.clone()) {
                        leave(f, &id).await;
                    }
                }
                for _ in 0..2 {
                    let n = newcomer.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let key = person(f, &format!("new{n}")).await;
                    join(f, "vip", &key).await;
                }
            }
        })
        .await;

        // Then no membership is listed twice
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "a member appeared twice: {seen:?}"
        );
        // And every member present throughout the walk was listed
        let churned = churned.into_inner().unwrap();
        for id in by_id.iter().filter(|id| !churned.contains(*id)) {
            assert!(
                seen.contains(id),
                "{id} was present throughout but not listed"
            );
        }
        // And the ids came in ascending order
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
    }
);

store_test!(
    given_more_members_than_a_page_holds_when_a_larger_page_is_asked_then_it_is_clamped,
    |f| async move {
        // Given 105 members
        for i in 0..105 {
            let key = person(&f, &format!("p{i:03}")).await;
            join(&f, "vip", &key).await;
        }

        // When 500 are asked for, then 100 come, with a cursor to the rest
        let big = page(&f, "vip", Some(500), None).await;
        assert_eq!(big.members.len(), 100);
        assert_eq!(big.total, 105);
        let rest = page(&f, "vip", Some(500), big.next_cursor.clone()).await;
        assert_eq!(rest.members.len(), 5);
        assert_eq!(rest.next_cursor, None);
        // When no limit is given, then a page holds 50
        let default = page(&f, "vip", None, None).await;
        assert_eq!(default.members.len(), 50);
        assert!(default.next_cursor.is_some());
    }
);

#[test]
fn given_page_requests_when_sized_then_the_default_is_50_and_the_range_1_to_100() {
    let size = |limit| {
        MemberPageRequest {
            limit,
            cursor: None,
        }
        .page_size()
    };
    assert_eq!(size(None), 50);
    assert_eq!(size(Some(1)), 1);
    assert_eq!(size(Some(100)), 100);
    assert_eq!(size(Some(101)), 100);
    assert_eq!(size(Some(0)), 1);
}
