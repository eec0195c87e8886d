//! Test guest for the ingest benchmark (`tests/benches/ingest.rs`): 50 computed buckets, no
//! journeys, no reactions.
//!
//! - 45 are about event names and contact properties the bench's workload never sends
//!   ([`unrelated`]): the host's bucket index should keep them off the ingest path.
//! - 5 are about event names (`feature.used`, `project.created`, `teammate.invited`) and
//!   contact properties (`plan`, `seats`, `country`, `marketingOptIn`, `signupSource`) the
//!   bench does send, so some events are evaluated against criteria and change memberships.
//!   Each returning user's `plan` and `seats` are stable, except that 2% of events carry a
//!   changed plan the next event reverts, so `paying` churns (enter, leave, re-enter) far more
//!   often than real contacts would.

use waymark_guest::prelude::*;

/// The themes the unrelated buckets are about, for names that read like a real product's.
const THEMES: [&str; 9] = [
    "webinar",
    "survey",
    "referral",
    "mobile",
    "integration",
    "export",
    "billing",
    "support",
    "community",
];

/// Unrelated bucket `k` (0..45): event names `<theme>.*_<k>` and contact properties
/// `<theme>_*_<k>`, which the bench never sends. Five shapes, by `k % 5`: a count in a window,
/// a property value, went-dormant, a composite with a negation, and an `any`.
fn unrelated(k: usize) -> Bucket {
    let theme = THEMES[k % THEMES.len()];
    let criteria = match k % 5 {
        0 => event(format!("{theme}.attended_{k}"))
            .within(days(7))
            .at_least(3),
        1 => prop(format!("{theme}_tier_{k}")).eq("gold"),
        2 => all([
            event(format!("{theme}.opened_{k}")).exists(),
            event(format!("{theme}.opened_{k}"))
                .within(days(14))
                .not_exists(),
        ]),
        3 => all([
            prop(format!("{theme}_level_{k}")).is_in(["silver", "gold", "platinum"]),
            prop(format!("{theme}_score_{k}")).gt(10),
            not(event(format!("{theme}.cancelled_{k}")).exists()),
        ]),
        _ => any([
            prop(format!("{theme}_domain_{k}")).contains("acme"),
            event(format!("{theme}.shared_{k}"))
                .within(hours(24))
                .at_least(2),
        ]),
    };
    bucket(format!("{theme}-{k:02}"))
        .name(format!("{theme} segment {k}"))
        .criteria(criteria)
}

waymark_guest::module! {
    buckets: [
        // About what the bench sends.
        bucket("feature-fans")
            .name("Used a feature 3+ times this week")
            .criteria(event("feature.used").within(days(7)).at_least(3)),
        bucket("paying")
            .name("On a paid plan")
            .criteria(prop("plan").is_in(["pro", "enterprise"])),
        bucket("web-builders")
            .name("Signed up on the web, created 2+ projects this month")
            .criteria(all([
                event("project.created").within(days(30)).at_least(2),
                prop("signupSource").eq("web"),
            ])),
        bucket("growing-teams")
            .name("10+ seats and invited 2+ teammates")
            .criteria(all([
                prop("seats").gte(10),
                event("teammate.invited").at_least(2),
            ])),
        bucket("eu-opted-in")
            .name("EU, opted in to marketing")
            .criteria(all([
                prop("country").is_in(["DE", "FR", "NL"]),
                prop("marketingOptIn").eq(true),
            ])),
        // About what it never sends.
        unrelated(0),
        unrelated(1),
        unrelated(2),
        unrelated(3),
        unrelated(4),
        unrelated(5),
        unrelated(6),
        unrelated(7),
        unrelated(8),
        unrelated(9),
        unrelated(10),
        unrelated(11),
        unrelated(12),
        unrelated(13),
        unrelated(14),
        unrelated(15),
        unrelated(16),
        unrelated(17),
        unrelated(18),
        unrelated(19),
        unrelated(20),
        unrelated(21),
        unrelated(22),
        unrelated(23),
        unrelated(24),
        unrelated(25),
        unrelated(26),
        unrelated(27),
        unrelated(28),
        unrelated(29),
        unrelated(30),
        unrelated(31),
        unrelated(32),
        unrelated(33),
        unrelated(34),
        unrelated(35),
        unrelated(36),
        unrelated(37),
        unrelated(38),
        unrelated(39),
        unrelated(40),
        unrelated(41),
        unrelated(42),
        unrelated(43),
        unrelated(44),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declares_fifty_buckets_with_unique_ids() {
        let module = waymark_module();
        assert_eq!(module.buckets().len(), 50);
        assert_eq!(module.validate(), Ok(()));
    }
}
