//! The events the load benches send: new people sign up, known people come back and do
//! things, all drawn from a seeded PRNG so every run sends the same sequence.

use serde_json::{Value, json};

/// A small deterministic PRNG (SplitMix64): the same workload on every run and backend.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A contact's plan.
pub const PLANS: &[&str] = &["free", "starter", "pro", "enterprise"];
/// A contact's country.
pub const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "NL", "BR", "JP"];
/// Where an event came from.
pub const SOURCES: &[&str] = &["web", "ios", "android", "api"];
/// The app's pages.
pub const PAGES: &[&str] = &["/dashboard", "/pricing", "/settings", "/reports", "/docs"];

/// Person `key` signs up (`user.signed_up`, with their email and first contact properties).
pub fn sign_up(rng: &mut Rng, key: &str) -> Value {
    json!({
        "name": "user.signed_up",
        "userId": key,
        "email": format!("{key}@example.com"),
        "eventProperties": {
            "source": rng.pick(SOURCES),
            "campaign": format!("campaign-{}", rng.below(20)),
            "referrer": "https://www.google.com/",
        },
        "contactProperties": {
            "plan": "free",
            "country": rng.pick(COUNTRIES),
            "signupSource": rng.pick(SOURCES),
            "marketingOptIn": rng.below(2) == 0,
        },
    })
}

/// What a known person does when they come back: the event's name and `eventProperties`.
pub type Activity = fn(&mut Rng) -> (&'static str, Value);

/// Who new people are.
pub enum Newcomers {
    /// They join the known people, numbered after them, and may come back.
    Join,
    /// `{prefix}{n}` for the `n`th, apart from the known people: they never come back.
    Apart(&'static str),
}

/// Generates events: `new_user_percent`% of them (all while no one is known) sign-ups of new
/// people, the rest an [`Activity`] of a known person picked at random, with their contact
/// properties (and, on 30%, their email). Every second event carries a unique idempotency key.
pub struct Workload {
    rng: Rng,
    new_user_percent: u64,
    /// Known people, `{prefix}0` to `{prefix}{known - 1}`: those who come back (a bench that
    /// seeds people itself sets it).
    pub known: u64,
    prefix: &'static str,
    newcomers: Newcomers,
    activity: Activity,
    /// New people so far, when they stay apart.
    new_users: u64,
    sequence: u64,
}

impl Workload {
    /// No one known yet; known people are `{prefix}{i}`.
    pub fn new(
        seed: u64,
        new_user_percent: u64,
        prefix: &'static str,
        newcomers: Newcomers,
        activity: Activity,
    ) -> Workload {
        Workload {
            rng: Rng(seed),
            new_user_percent,
            known: 0,
            prefix,
            newcomers,
            activity,
            new_users: 0,
            sequence: 0,
        }
    }

    /// The next event.
    pub fn event(&mut self) -> Value {
        self.sequence += 1;
        let rng = &mut self.rng;
        let mut event = if self.known == 0 || rng.below(100) < self.new_user_percent {
            let key = match self.newcomers {
                Newcomers::Join => {
                    let n = self.known;
                    self.known += 1;
                    format!("{}{n}", self.prefix)
                }
                Newcomers::Apart(prefix) => {
                    let n = self.new_users;
                    self.new_users += 1;
                    format!("{prefix}{n}")
                }
            };
            sign_up(rng, &key)
        } else {
            let user = rng.below(self.known);
            let key = format!("{}{user}", self.prefix);
            let (name, properties) = (self.activity)(rng);
            let mut event = json!({
                "name": name,
                "userId": key,
                "eventProperties": properties,
                // A producer sends the person's current state: stable per user (a hash of the
                // id), except that 2% of events carry a changed plan (an upgrade or downgrade
                // the next event reverts), so property buckets see some real churn.
                "contactProperties": {
                    "plan": if rng.below(100) < 2 { rng.pick(PLANS) } else { PLANS[(user.wrapping_mul(0x9E37_79B9) >> 7) as usize % PLANS.len()] },
                    "lastActivePage": rng.pick(PAGES),
                    "seats": 1 + (user.wrapping_mul(0x85EB_CA6B) >> 9) % 50,
                },
            });
            // Some producers send the email with every event.
            if rng.below(10) < 3 {
                event["email"] = json!(format!("{key}@example.com"));
            }
            event
        };
        if self.sequence.is_multiple_of(2) {
            event["idempotencyKey"] = json!(format!("evt-{:016x}-{}", rng.next(), self.sequence));
        }
        event
    }
}
