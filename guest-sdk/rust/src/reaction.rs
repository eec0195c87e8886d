//! What a bucket reaction (or any journey triggered by a `bucket:entered:<id>` /
//! `bucket:left:<id>` event) knows about the transition that started it: the extras of the
//! trigger event, typed.

use crate::ctx::Ctx;

/// The bucket transition a run was triggered by.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketTransition {
    pub bucket_id: String,
    pub bucket_name: String,
    /// `true` for `bucket:entered:*`, `false` for `bucket:left:*` and `bucket:dwell:*`.
    pub entered: bool,
    /// The membership's epoch: 1 for the person's first entry into this bucket.
    pub entry_count: u64,
    /// Left only: `criteria`, `maxDwell` or `manual`.
    pub reason: Option<String>,
    /// Dwell only: 1 for an `after` dwell; for an `every` dwell the number of whole
    /// intervals since the person entered.
    pub dwell_count: Option<u64>,
}

impl BucketTransition {
    /// Whether this is a dwell reaction's trigger.
    pub fn is_dwell(&self) -> bool {
        self.dwell_count.is_some()
    }

    /// Whether this is the person's first entry (always false for a leave).
    pub fn is_first_entry(&self) -> bool {
        self.entered && self.entry_count == 1
    }
}

impl Ctx {
    /// The bucket transition that triggered this run, when it was one.
    ///
    /// ```
    /// use waymark_guest::prelude::*;
    ///
    /// fn on_enter(ctx: &Ctx) -> JourneyResult {
    ///     if ctx.bucket_transition().is_some_and(|t| t.is_first_entry()) {
    ///         ctx.send_email(email("welcome-to-the-club"))?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn bucket_transition(&self) -> Option<BucketTransition> {
        let trigger = self.trigger();
        let entered = match trigger.property_str("transition")? {
            "entered" => true,
            "left" | "dwell" => false,
            _ => return None,
        };
        Some(BucketTransition {
            bucket_id: trigger.property_str("bucketId")?.to_owned(),
            bucket_name: trigger
                .property_str("bucketName")
                .unwrap_or_default()
                .to_owned(),
            entered,
            entry_count: trigger
                .property_i64("entryCount")
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(1),
            reason: trigger.property_str("reason").map(str::to_owned),
            dwell_count: trigger
                .property_i64("dwellCount")
                .and_then(|n| u64::try_from(n).ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::testing::TestHost;

    fn sends_when_first(ctx: &Ctx) -> JourneyResult {
        let transition = ctx.bucket_transition().expect("triggered by a transition");
        if transition.is_first_entry() {
            ctx.send_email(email("first"))?;
        }
        if let Some(reason) = transition.reason {
            ctx.send_email(email(format!("left-{reason}")))?;
        }
        Ok(())
    }

    fn run(trigger: Event) -> Vec<String> {
        let module = Module::new().journey(journey("r").on("bucket:entered:b"), sends_when_first);
        let run = TestHost::new().run(&module, "r", Person::new("u1"), trigger);
        assert!(run.result.is_ok(), "{:?}", run.result);
        run.emails().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn given_a_first_entry_trigger_when_a_reaction_reads_it_then_it_sees_the_extras() {
        let first = Event::new("bucket:entered:b")
            .with_property("bucketId", "b")
            .with_property("transition", "entered")
            .with_property("entryCount", 1);
        assert_eq!(run(first), ["first"]);
        let again = Event::new("bucket:entered:b")
            .with_property("bucketId", "b")
            .with_property("transition", "entered")
            .with_property("entryCount", 2);
        assert!(run(again).is_empty());
    }

    #[test]
    fn given_a_dwell_trigger_when_a_reaction_reads_it_then_it_sees_the_dwell_count() {
        fn counts(ctx: &Ctx) -> JourneyResult {
            let t = ctx.bucket_transition().expect("a transition");
            assert!(t.is_dwell() && !t.entered);
            ctx.send_email(email(format!("dwell-{}", t.dwell_count.unwrap_or(0))))?;
            Ok(())
        }
        let module = Module::new().journey(journey("r").on("bucket:dwell:b:every-1"), counts);
        let trigger = Event::new("bucket:dwell:b:every-1")
            .with_property("bucketId", "b")
            .with_property("transition", "dwell")
            .with_property("entryCount", 2)
            .with_property("dwellCount", 4);
        let run = TestHost::new().run(&module, "r", Person::new("u1"), trigger);
        assert!(run.result.is_ok(), "{:?}", run.result);
        let sent: Vec<String> = run.emails().iter().map(|e| e.to_string()).collect();
        assert_eq!(sent, ["dwell-4"]);
    }

    #[test]
    fn given_a_leave_trigger_when_a_reaction_reads_it_then_it_sees_the_reason() {
        let left = Event::new("bucket:left:b")
            .with_property("bucketId", "b")
            .with_property("transition", "left")
            .with_property("entryCount", 1)
            .with_property("reason", "maxDwell");
        assert_eq!(run(left), ["left-maxDwell"]);
    }
}
