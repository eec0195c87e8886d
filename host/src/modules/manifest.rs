//! A module's manifest as the host keeps it: converted from what `describe` returned and
//! validated, with errors that name the offending field.
//!
//! Bucket reactions are desugared here into ordinary journeys (appended to
//! [`ModuleManifest::journeys`]): triggered by the bucket's transition event, filtered by a
//! [`JourneyDef::trigger_where`] on the event's properties, entry limit unlimited.

use crate::buckets::criteria::{CriteriaError, ROOT as CRITERIA_ROOT};
use crate::buckets::validate::{check_name, validate_bucket, validate_shape};
use crate::buckets::{
    BucketDef, BucketKind, Condition, DwellSchedule, EventCounts, LeaveReason, ReactionDef,
    ReactionOn, evaluate,
};
use crate::delivery::templates::{TemplateSet, TemplateSource};
use crate::journeys::EntryLimit;
use crate::runtime::bindings::types as wit;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyDef {
    pub id: String,
    pub name: String,
    pub trigger: String,
    pub entry_limit: EntryLimit,
    pub enabled: bool,
    /// What `invocation.handler` carries when the host runs this journey: the journey id for a
    /// declared journey, the reaction's handler for a bucket reaction.
    pub handler: String,
    /// A condition on the triggering event's properties (property conditions only); when it
    /// does not hold the event starts no run (skipped as `trigger_conditions_not_met`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_where: Option<Condition>,
    /// Events that end a person's live runs of this journey.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exit_on: Vec<ExitRule>,
    /// The bucket whose reaction this journey is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_bucket_id: Option<String>,
    /// The least time in ms between two emails this journey sends to one address (any run);
    /// zero disables.
    #[serde(rename = "suppressMs")]
    pub suppress: u64,
}

impl JourneyDef {
    /// The journey a bucket reaction desugars into.
    pub fn from_reaction(bucket: &BucketDef, reaction: &ReactionDef) -> Self {
        Self {
            id: reaction.journey_id.clone(),
            name: format!("{} \u{2014} on {}", bucket.name, reaction.on.kind()),
            trigger: reaction.on.trigger_event(&bucket.id),
            entry_limit: EntryLimit::Unlimited,
            enabled: bucket.enabled,
            handler: reaction.handler.clone(),
            trigger_where: reaction.on.trigger_filter(),
            exit_on: Vec::new(),
            source_bucket_id: Some(bucket.id.clone()),
            suppress: 0,
        }
    }
}

/// An event that ends a person's live runs of a journey: by name, and optionally only when a
/// condition holds on the event's properties.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRule {
    pub event: String,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl ExitRule {
    /// Whether an event named `event_name` with these properties matches the rule.
    pub fn matches(&self, event_name: &str, event_properties: &Map<String, Value>) -> bool {
        self.event == event_name
            && self
                .condition
                .as_ref()
                .is_none_or(|c| evaluate(c, event_properties, &EventCounts::new()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateDef {
    pub key: String,
    pub subject: String,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

impl TemplateDef {
    pub fn source(&self) -> TemplateSource {
        TemplateSource {
            subject: self.subject.clone(),
            text: self.body.clone(),
            html: self.html.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleManifest {
    /// Declared journeys, then the journeys bucket reactions desugar into.
    pub journeys: Vec<JourneyDef>,
    pub templates: Vec<TemplateDef>,
    pub buckets: Vec<BucketDef>,
}

impl ModuleManifest {
    pub fn from_wit(manifest: wit::Manifest) -> Result<Self, String> {
        if manifest.journeys.is_empty() && manifest.buckets.is_empty() {
            return Err("a module must declare at least one journey or bucket".into());
        }
        let mut ids = HashSet::new();
        let mut journeys = Vec::with_capacity(manifest.journeys.len());
        for (i, j) in manifest.journeys.into_iter().enumerate() {
            check_name(&format!("journeys[{i}].id"), &j.id)?;
            check_name(&format!("journeys[{i}].name"), &j.name)?;
            check_name(&format!("journeys[{i}].trigger"), &j.trigger)?;
            if !ids.insert(j.id.clone()) {
                return Err(format!("journeys[{i}].id {:?} is declared twice", j.id));
            }
            let entry_limit = match j.entry_limit {
                wit::EntryLimit::Once => EntryLimit::Once,
                wit::EntryLimit::Unlimited => EntryLimit::Unlimited,
                wit::EntryLimit::OncePer(0) => {
                    return Err(format!(
                        "journeys[{i}].entry-limit once-per needs a period above zero"
                    ));
                }
                wit::EntryLimit::OncePer(ms) => EntryLimit::OncePer(ms),
            };
            let at = format!("journeys[{i}] {:?}", j.id);
            let trigger_where = j
                .trigger_where
                .as_deref()
                .map(|json| event_condition(json, "trigger-where"))
                .transpose()
                .map_err(|e| format!("{at}: {e}"))?;
            let exit_on = j
                .exit_on
                .into_iter()
                .enumerate()
                .map(|(r, rule)| {
                    check_name(&format!("exit-on[{r}].event"), &rule.event)?;
                    let condition = rule
                        .where_
                        .as_deref()
                        .map(|json| event_condition(json, &format!("exit-on[{r}].where")))
                        .transpose()?;
                    Ok(ExitRule {
                        event: rule.event,
                        condition,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| format!("{at}: {e}"))?;
            journeys.push(JourneyDef {
                handler: j.id.clone(),
                id: j.id,
                name: j.name,
                trigger: j.trigger,
                entry_limit,
                enabled: j.enabled,
                trigger_where,
                exit_on,
                source_bucket_id: None,
                suppress: j.suppress,
            });
        }
        let buckets = convert_buckets(manifest.buckets)?;
        add_reaction_journeys(&buckets, &mut journeys)?;
        let templates = manifest
            .templates
            .into_iter()
            .map(|t| TemplateDef {
                key: t.key,
                subject: t.subject,
                body: t.body,
                html: t.html,
            })
            .collect();
        Ok(Self {
            journeys,
            templates,
            buckets,
        })
    }

    /// Templates are compiled by [`TemplateSet::new`]; this only keeps the manifest honest.
    pub fn check_templates_exist(&self, templates: &TemplateSet) -> Result<(), String> {
        for (i, t) in self.templates.iter().enumerate() {
            if !templates.contains(&t.key) {
                return Err(format!("templates[{i}].key {:?} was not registered", t.key));
            }
        }
        Ok(())
    }
}

/// A condition on an event's properties (`trigger-where`, an exit rule's `where`): criteria
/// JSON made of property conditions only. Errors name the field, `field` standing for the
/// criteria root (`trigger-where.all[1].value …`).
fn event_condition(json: &str, field: &str) -> Result<Condition, String> {
    let rename = |e: CriteriaError| {
        let path = e.path.strip_prefix(CRITERIA_ROOT).unwrap_or(&e.path);
        format!("{field}{path} {}", e.message)
    };
    let condition = Condition::from_json_str(json).map_err(rename)?;
    validate_shape(&condition).map_err(rename)?;
    if let Some(Condition::Event(leg)) = condition
        .leaves()
        .find(|leaf| matches!(leaf, Condition::Event(_)))
    {
        return Err(format!(
            "{field} may hold only property conditions (on the event's properties); \
             event condition {:?} is not allowed",
            leg.event
        ));
    }
    Ok(condition)
}

fn convert_buckets(declared: Vec<wit::BucketDef>) -> Result<Vec<BucketDef>, String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut buckets = Vec::with_capacity(declared.len());
    for (i, b) in declared.into_iter().enumerate() {
        let at = format!("buckets[{i}] {:?}", b.id);
        let bucket = convert_bucket(b).map_err(|e| format!("{at}: {e}"))?;
        if let Some(first) = seen.insert(bucket.id.clone(), i) {
            return Err(format!("{at}: id is already declared by buckets[{first}]"));
        }
        buckets.push(bucket);
    }
    Ok(buckets)
}

fn convert_bucket(b: wit::BucketDef) -> Result<BucketDef, String> {
    let criteria = b
        .criteria_json
        .as_deref()
        .map(Condition::from_json_str)
        .transpose()
        .map_err(|e| e.to_string())?;
    let entry_limit = match b.entry_limit {
        wit::EntryLimit::Once => EntryLimit::Once,
        wit::EntryLimit::OncePer(ms) => EntryLimit::OncePer(ms),
        wit::EntryLimit::Unlimited => EntryLimit::Unlimited,
    };
    let reactions = b
        .reactions
        .into_iter()
        .enumerate()
        .map(|(i, r)| convert_reaction(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    let bucket = BucketDef {
        id: b.id,
        name: b.name,
        description: b.description,
        enabled: b.enabled,
        kind: match b.kind {
            wit::BucketKind::Computed => BucketKind::Computed,
            wit::BucketKind::Manual => BucketKind::Manual,
        },
        criteria,
        time_based: b.time_based,
        fast_expiry: b.fast_expiry,
        min_dwell_ms: b.min_dwell_ms,
        max_dwell_ms: b.max_dwell_ms,
        entry_limit,
        reactions,
    };
    validate_bucket(&bucket)?;
    Ok(bucket)
}

fn convert_reaction(i: usize, r: wit::ReactionDef) -> Result<ReactionDef, String> {
    let on = match r.on {
        wit::ReactionOn::Enter(options) => ReactionOn::Enter {
            first_entry_only: options.first_entry_only,
        },
        wit::ReactionOn::Leave(options) => ReactionOn::Leave {
            reasons: options
                .reasons
                .map(|reasons| {
                    reasons
                        .iter()
                        .enumerate()
                        .map(|(j, reason)| {
                            LeaveReason::parse(reason).ok_or_else(|| {
                                let known: Vec<&str> =
                                    LeaveReason::ALL.iter().map(|r| r.as_str()).collect();
                                format!(
                                    "reactions[{i}].on.leave.reasons[{j}] {reason:?} is not a \
                                     leave reason (one of {})",
                                    known.join(", ")
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
        },
        wit::ReactionOn::Dwell(options) => ReactionOn::Dwell {
            schedule: match (options.after_ms, options.every_ms) {
                (Some(ms), None) => DwellSchedule::After(ms),
                (None, Some(ms)) => DwellSchedule::Every(ms),
                _ => {
                    return Err(format!(
                        "reactions[{i}].on.dwell needs exactly one of after-ms and every-ms"
                    ));
                }
            },
        },
    };
    Ok(ReactionDef {
        journey_id: r.journey_id,
        handler: r.handler,
        on,
    })
}

/// Appends each reaction's journey, refusing an id that another reaction already has.
///
/// A declared journey whose id is a reaction's `journey-id` *declares* that reaction's
/// journey instead of colliding with it: the reaction then runs with the declared journey's
/// exit rules, suppress window and name (enabled only while both the journey and the bucket
/// are). That is how a reaction gets `exit-on` — "stop when the person leaves the bucket" —
/// without a field the WIT records lack, so components built before it still load. The
/// declaration must agree with what the reaction is: triggered by its transition event,
/// entry limit unlimited, no trigger filter of its own (the reaction's options filter).
fn add_reaction_journeys(
    buckets: &[BucketDef],
    journeys: &mut Vec<JourneyDef>,
) -> Result<(), String> {
    let declared: HashMap<String, (usize, JourneyDef)> = journeys
        .iter()
        .enumerate()
        .map(|(i, j)| (j.id.clone(), (i, j.clone())))
        .collect();
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut adopted = HashSet::new();
    let mut reactions = Vec::new();
    for (b, bucket) in buckets.iter().enumerate() {
        for (r, reaction) in bucket.reactions.iter().enumerate() {
            let field = format!("buckets[{b}] {:?}: reactions[{r}].journey-id", bucket.id);
            if let Some(owner) = owners.get(&reaction.journey_id) {
                return Err(format!(
                    "{field} {:?} collides with {owner} {:?}",
                    reaction.journey_id, reaction.journey_id
                ));
            }
            owners.insert(reaction.journey_id.clone(), field);
            let mut journey = JourneyDef::from_reaction(bucket, reaction);
            if let Some((i, declaration)) = declared.get(&reaction.journey_id) {
                adopt_declaration(&mut journey, reaction.on.kind(), *i, declaration)?;
                adopted.insert(*i);
            }
            reactions.push(journey);
        }
    }
    let mut i = 0;
    journeys.retain(|_| {
        i += 1;
        !adopted.contains(&(i - 1))
    });
    journeys.extend(reactions);
    Ok(())
}

/// Gives a reaction's journey what journey `i` declares for it (see
/// [`add_reaction_journeys`]), or says why the declaration does not fit the reaction.
fn adopt_declaration(
    reaction: &mut JourneyDef,
    kind: &str,
    i: usize,
    declared: &JourneyDef,
) -> Result<(), String> {
    let at = format!(
        "journeys[{i}] {:?} has the journey id of bucket {:?}'s {kind} reaction, so it declares \
         that reaction's journey:",
        declared.id,
        reaction.source_bucket_id.as_deref().unwrap_or_default(),
    );
    if declared.trigger != reaction.trigger {
        return Err(format!(
            "{at} its trigger must be {:?}, not {:?}",
            reaction.trigger, declared.trigger
        ));
    }
    if declared.entry_limit != EntryLimit::Unlimited {
        return Err(format!("{at} its entry-limit must be unlimited"));
    }
    if declared.trigger_where.is_some() {
        return Err(format!(
            "{at} it must have no trigger-where (the reaction's options filter its trigger)"
        ));
    }
    reaction.name = declared.name.clone();
    reaction.enabled = reaction.enabled && declared.enabled;
    reaction.exit_on = declared.exit_on.clone();
    reaction.suppress = declared.suppress;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journey(id: &str, trigger: &str, limit: wit::EntryLimit) -> wit::JourneyDef {
        wit::JourneyDef {
            id: id.into(),
            name: "A journey".into(),
            trigger: trigger.into(),
            trigger_where: None,
            exit_on: vec![],
            entry_limit: limit,
            enabled: true,
            suppress: 0,
        }
    }

    fn one_journey(j: wit::JourneyDef) -> Result<ModuleManifest, String> {
        ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![j],
            templates: vec![],
            buckets: vec![],
        })
    }

    fn exit_rule(event: &str, condition: Option<&str>) -> wit::ExitRule {
        wit::ExitRule {
            event: event.into(),
            where_: condition.map(str::to_owned),
        }
    }

    #[test]
    fn given_a_trigger_where_and_exit_rules_when_loaded_then_they_parse_and_match_event_properties()
    {
        let mut j = journey("trial", "trial.started", wit::EntryLimit::Once);
        j.trigger_where = Some(
            r#"{"type":"property","property":"plan","operator":"in","value":["pro","team"]}"#
                .into(),
        );
        j.exit_on = vec![
            exit_rule("account.deleted", None),
            exit_rule(
                "order.paid",
                Some(r#"{"type":"property","property":"amount","operator":"gt","value":0}"#),
            ),
        ];
        let m = one_journey(j).unwrap();
        let trial = &m.journeys[0];
        let props = |v: Value| v.as_object().cloned().unwrap();
        assert!(crate::journeys::router::trigger_filter_holds(
            trial,
            &props(serde_json::json!({"plan": "pro"}))
        ));
        assert!(!crate::journeys::router::trigger_filter_holds(
            trial,
            &props(serde_json::json!({"plan": "free"}))
        ));
        let [deleted, paid] = &trial.exit_on[..] else {
            panic!("two exit rules: {:?}", trial.exit_on)
        };
        assert!(deleted.matches("account.deleted", &Map::new()));
        assert!(!deleted.matches("account.created", &Map::new()));
        assert!(paid.matches("order.paid", &props(serde_json::json!({"amount": 5}))));
        assert!(!paid.matches("order.paid", &props(serde_json::json!({"amount": 0}))));
        assert!(!paid.matches("order.paid", &Map::new()));
    }

    #[test]
    fn given_a_bad_trigger_where_when_loaded_then_the_error_names_the_journey_and_field() {
        let mut j = journey("trial", "trial.started", wit::EntryLimit::Once);
        j.trigger_where = Some(r#"{"type":"all","conditions":[]}"#.into());
        let err = one_journey(j.clone()).unwrap_err();
        assert!(
            err.starts_with(r#"journeys[0] "trial": trigger-where.conditions must not be empty"#),
            "{err}"
        );
        j.trigger_where = Some("{nope".into());
        let err = one_journey(j.clone()).unwrap_err();
        assert!(
            err.starts_with(r#"journeys[0] "trial": trigger-where is not valid JSON"#),
            "{err}"
        );
        j.trigger_where = Some(r#"{"type":"event","event":"x","check":"exists"}"#.into());
        let err = one_journey(j).unwrap_err();
        assert!(
            err.starts_with(
                r#"journeys[0] "trial": trigger-where may hold only property conditions"#
            ),
            "{err}"
        );
    }

    #[test]
    fn given_a_bad_exit_rule_when_loaded_then_the_error_names_the_journey_and_rule() {
        let mut j = journey("trial", "trial.started", wit::EntryLimit::Once);
        j.exit_on = vec![exit_rule("a", None), exit_rule(" ", None)];
        assert_eq!(
            one_journey(j.clone()).unwrap_err(),
            r#"journeys[0] "trial": exit-on[1].event must not be empty"#
        );
        j.exit_on = vec![exit_rule(
            "order.paid",
            Some(r#"{"type":"property","property":"amount","operator":"gt","value":"5"}"#),
        )];
        let err = one_journey(j).unwrap_err();
        assert!(
            err.starts_with(r#"journeys[0] "trial": exit-on[0].where.value"#),
            "{err}"
        );
    }

    #[test]
    fn a_valid_manifest_converts_with_its_entry_limits() {
        let m = ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![
                journey("a", "x", wit::EntryLimit::OncePer(1000)),
                journey("b", "y", wit::EntryLimit::Unlimited),
            ],
            templates: vec![],
            buckets: vec![],
        })
        .unwrap();
        assert_eq!(m.journeys[0].entry_limit, EntryLimit::OncePer(1000));
        assert_eq!(m.journeys[1].entry_limit, EntryLimit::Unlimited);
    }

    #[test]
    fn an_empty_trigger_is_refused_naming_the_field() {
        let err = ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![journey("a", " ", wit::EntryLimit::Once)],
            templates: vec![],
            buckets: vec![],
        })
        .unwrap_err();
        assert_eq!(err, "journeys[0].trigger must not be empty");
    }

    #[test]
    fn a_journeys_suppress_window_and_a_templates_html_body_are_kept() {
        let mut j = journey("a", "x", wit::EntryLimit::Unlimited);
        j.suppress = 3_600_000;
        let m = ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![j],
            templates: vec![wit::TemplateDef {
                key: "news".into(),
                subject: "s".into(),
                body: "b".into(),
                html: Some("<p>h</p>".into()),
            }],
            buckets: vec![],
        })
        .unwrap();
        assert_eq!(m.journeys[0].suppress, 3_600_000);
        assert_eq!(m.templates[0].source().html.as_deref(), Some("<p>h</p>"));
    }

    #[test]
    fn a_duplicate_journey_id_is_refused() {
        let err = ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![
                journey("a", "x", wit::EntryLimit::Once),
                journey("a", "y", wit::EntryLimit::Once),
            ],
            templates: vec![],
            buckets: vec![],
        })
        .unwrap_err();
        assert!(err.contains("journeys[1].id"), "{err}");
    }

    fn bucket(id: &str, criteria: Option<&str>) -> wit::BucketDef {
        wit::BucketDef {
            id: id.into(),
            name: "A bucket".into(),
            description: None,
            enabled: true,
            kind: if criteria.is_some() {
                wit::BucketKind::Computed
            } else {
                wit::BucketKind::Manual
            },
            criteria_json: criteria.map(str::to_owned),
            time_based: None,
            fast_expiry: false,
            min_dwell_ms: None,
            max_dwell_ms: None,
            entry_limit: wit::EntryLimit::Unlimited,
            reactions: vec![],
        }
    }

    fn reaction(journey_id: &str, on: wit::ReactionOn) -> wit::ReactionDef {
        wit::ReactionDef {
            journey_id: journey_id.into(),
            handler: journey_id.into(),
            on,
        }
    }

    const ACTIVE: &str = r#"{"type":"event","event":"app.active","check":"exists"}"#;

    fn with_buckets(buckets: Vec<wit::BucketDef>) -> Result<ModuleManifest, String> {
        ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![journey("welcome", "user.signed_up", wit::EntryLimit::Once)],
            templates: vec![],
            buckets,
        })
    }

    fn dwell(after_ms: Option<u64>, every_ms: Option<u64>) -> wit::ReactionOn {
        wit::ReactionOn::Dwell(wit::DwellOptions { after_ms, every_ms })
    }

    #[test]
    fn given_dwell_reactions_when_loaded_then_each_is_a_journey_on_its_labelled_event() {
        let mut b = bucket("went-dormant", Some(ACTIVE));
        b.reactions = vec![
            reaction(
                "bucket-went-dormant-on-dwell-after-259200000",
                dwell(Some(259_200_000), None),
            ),
            reaction(
                "bucket-went-dormant-on-dwell-every-86400000",
                dwell(None, Some(86_400_000)),
            ),
        ];
        let m = with_buckets(vec![b]).unwrap();
        assert_eq!(m.journeys.len(), 3);
        assert_eq!(
            m.journeys[1].trigger,
            "bucket:dwell:went-dormant:after-259200000"
        );
        assert_eq!(
            m.journeys[2].trigger,
            "bucket:dwell:went-dormant:every-86400000"
        );
        assert_eq!(m.journeys[1].trigger_where, None);
        assert_eq!(
            m.buckets[0].dwell_schedules().collect::<Vec<_>>(),
            [
                DwellSchedule::After(259_200_000),
                DwellSchedule::Every(86_400_000)
            ]
        );
    }

    #[test]
    fn given_a_dwell_with_both_none_zero_or_a_twin_when_loaded_then_it_is_refused() {
        for (reactions, expected) in [
            (
                vec![dwell(Some(1), Some(1))],
                "exactly one of after-ms and every-ms",
            ),
            (
                vec![dwell(None, None)],
                "exactly one of after-ms and every-ms",
            ),
            (vec![dwell(Some(0), None)], "above zero"),
            (
                vec![dwell(Some(5), None), dwell(Some(5), None)],
                "a second dwell after-5",
            ),
        ] {
            let mut b = bucket("b", Some(ACTIVE));
            b.reactions = reactions
                .into_iter()
                .enumerate()
                .map(|(i, on)| reaction(&format!("r{i}"), on))
                .collect();
            let err = with_buckets(vec![b]).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn given_a_bucket_with_reactions_when_loaded_then_each_reaction_becomes_a_filtered_journey() {
        let mut b = bucket("power-users", Some(ACTIVE));
        b.name = "Power users".into();
        b.reactions = vec![
            reaction(
                "bucket-power-users-on-enter",
                wit::ReactionOn::Enter(wit::EnterOptions {
                    first_entry_only: true,
                }),
            ),
            reaction(
                "bucket-power-users-on-leave",
                wit::ReactionOn::Leave(wit::LeaveOptions {
                    reasons: Some(vec!["criteria".into(), "maxDwell".into()]),
                }),
            ),
        ];
        let m = with_buckets(vec![b]).unwrap();
        assert_eq!(m.buckets.len(), 1);
        assert_eq!(m.buckets[0].kind, BucketKind::Computed);
        assert_eq!(m.journeys.len(), 3);
        let enter = &m.journeys[1];
        assert_eq!(enter.id, "bucket-power-users-on-enter");
        assert_eq!(enter.handler, "bucket-power-users-on-enter");
        assert_eq!(enter.name, "Power users \u{2014} on enter");
        assert_eq!(enter.trigger, "bucket:entered:power-users");
        assert_eq!(enter.entry_limit, EntryLimit::Unlimited);
        assert_eq!(enter.source_bucket_id.as_deref(), Some("power-users"));
        assert_eq!(
            enter.trigger_where.as_ref().unwrap().to_json(),
            serde_json::json!({"type": "property", "property": "isFirstEntry",
                               "operator": "eq", "value": true})
        );
        let leave = &m.journeys[2];
        assert_eq!(leave.trigger, "bucket:left:power-users");
        assert_eq!(
            leave.trigger_where.as_ref().unwrap().to_json(),
            serde_json::json!({"type": "property", "property": "reason",
                               "operator": "in", "value": ["criteria", "maxDwell"]})
        );
        assert_eq!(m.journeys[0].handler, "welcome");
        assert!(m.journeys[0].trigger_where.is_none());
    }

    #[test]
    fn given_a_bad_window_in_the_second_bucket_when_loaded_then_the_error_names_bucket_and_field() {
        let err = with_buckets(vec![
            bucket("a", Some(ACTIVE)),
            bucket(
                "power-users",
                Some(r#"{"type":"all","conditions":[{"type":"event","event":"x","check":"exists","withinMs":-1}]}"#),
            ),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            r#"buckets[1] "power-users": criteria.all[0].withinMs must be above zero"#
        );
    }

    #[test]
    fn given_an_unknown_criteria_field_when_loaded_then_the_error_names_it() {
        let err = with_buckets(vec![bucket(
            "b",
            Some(r#"{"type":"event","event":"x","check":"exists","within":"7d"}"#),
        )])
        .unwrap_err();
        assert!(
            err.starts_with(
                r#"buckets[0] "b": criteria.within is not a field of an event condition"#
            ),
            "{err}"
        );
        let err = with_buckets(vec![bucket("b", Some("{nope"))]).unwrap_err();
        assert!(
            err.starts_with(r#"buckets[0] "b": criteria is not valid JSON"#),
            "{err}"
        );
    }

    #[test]
    fn given_bucket_rules_when_broken_then_the_bucket_and_field_are_named() {
        let mut manual_with_criteria = bucket("m", Some(ACTIVE));
        manual_with_criteria.kind = wit::BucketKind::Manual;
        assert!(
            with_buckets(vec![manual_with_criteria])
                .unwrap_err()
                .starts_with(r#"buckets[0] "m": criteria-json must be left out"#)
        );
        let mut computed_without = bucket("c", None);
        computed_without.kind = wit::BucketKind::Computed;
        assert_eq!(
            with_buckets(vec![computed_without]).unwrap_err(),
            r#"buckets[0] "c": criteria-json is required for a computed bucket"#
        );
        let mut dwell = bucket("d", Some(ACTIVE));
        dwell.min_dwell_ms = Some(10);
        dwell.max_dwell_ms = Some(5);
        assert_eq!(
            with_buckets(vec![dwell]).unwrap_err(),
            r#"buckets[0] "d": max-dwell-ms (5) must not be below min-dwell-ms (10)"#
        );
        let negative_only = bucket(
            "n",
            Some(r#"{"type":"property","property":"plan","operator":"not_exists"}"#),
        );
        assert!(
            with_buckets(vec![negative_only])
                .unwrap_err()
                .starts_with(r#"buckets[0] "n": criteria must have at least one positive"#)
        );
        let bucket_leg = bucket(
            "r",
            Some(r#"{"type":"event","event":"bucket:left:x","check":"exists"}"#),
        );
        assert!(
            with_buckets(vec![bucket_leg])
                .unwrap_err()
                .starts_with(r#"buckets[0] "r": criteria.event "bucket:left:x""#)
        );
        let mut bad_reason = bucket("l", Some(ACTIVE));
        bad_reason.reactions = vec![reaction(
            "x",
            wit::ReactionOn::Leave(wit::LeaveOptions {
                reasons: Some(vec!["criteria".into(), "max_dwell".into()]),
            }),
        )];
        assert_eq!(
            with_buckets(vec![bad_reason]).unwrap_err(),
            r#"buckets[0] "l": reactions[0].on.leave.reasons[1] "max_dwell" is not a leave reason (one of criteria, maxDwell, manual)"#
        );
    }

    #[test]
    fn given_a_journey_declaring_an_enter_reactions_journey_when_loaded_then_the_reaction_takes_its_exit_rules()
     {
        // Given a bucket with an enter reaction, and a journey-def of the reaction's id on its
        // transition event with exit rules (what the SDK's `enter_until_left` writes)
        let mut b = bucket("trialists", Some(ACTIVE));
        b.reactions = vec![reaction(
            "bucket-trialists-on-enter",
            wit::ReactionOn::Enter(wit::EnterOptions {
                first_entry_only: true,
            }),
        )];
        let mut declared = journey(
            "bucket-trialists-on-enter",
            "bucket:entered:trialists",
            wit::EntryLimit::Unlimited,
        );
        declared.name = "Nurture trialists".into();
        declared.suppress = 60_000;
        declared.exit_on = vec![exit_rule("bucket:left:trialists", None)];
        let manifest = |declared: wit::JourneyDef, b: wit::BucketDef| {
            ModuleManifest::from_wit(wit::Manifest {
                journeys: vec![
                    declared,
                    journey("welcome", "user.signed_up", wit::EntryLimit::Once),
                ],
                templates: vec![],
                buckets: vec![b],
            })
        };
        // When the module loads
        let m = manifest(declared.clone(), b.clone()).unwrap();
        // Then there is one journey of that id: the reaction (after the declared journeys),
        // with the declared exit rules, suppress window and name and the reaction's filter
        let ids: Vec<&str> = m.journeys.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["welcome", "bucket-trialists-on-enter"]);
        let enter = &m.journeys[1];
        assert_eq!(enter.source_bucket_id.as_deref(), Some("trialists"));
        assert_eq!(enter.handler, "bucket-trialists-on-enter");
        assert_eq!(enter.name, "Nurture trialists");
        assert_eq!(enter.suppress, 60_000);
        assert!(enter.exit_on[0].matches("bucket:left:trialists", &Map::new()));
        assert!(
            enter.trigger_where.is_some(),
            "first-entry-only still filters"
        );
        assert!(enter.enabled);

        // And a declaration that does not fit the reaction is refused, naming both
        let mut disabled = b.clone();
        disabled.enabled = false;
        assert!(!manifest(declared.clone(), disabled).unwrap().journeys[1].enabled);
        let mut limited = declared.clone();
        limited.entry_limit = wit::EntryLimit::Once;
        assert_eq!(
            manifest(limited, b.clone()).unwrap_err(),
            r#"journeys[0] "bucket-trialists-on-enter" has the journey id of bucket "trialists"'s enter reaction, so it declares that reaction's journey: its entry-limit must be unlimited"#
        );
        let mut filtered = declared;
        filtered.trigger_where =
            Some(r#"{"type":"property","property":"plan","operator":"eq","value":"pro"}"#.into());
        assert!(manifest(filtered, b).unwrap_err().ends_with(
            "it must have no trigger-where (the reaction's options filter its trigger)"
        ));
    }

    #[test]
    fn given_a_reaction_id_equal_to_a_journey_id_when_loaded_then_both_are_named() {
        let mut b = bucket("vip", Some(ACTIVE));
        b.reactions = vec![reaction(
            "welcome",
            wit::ReactionOn::Enter(wit::EnterOptions {
                first_entry_only: false,
            }),
        )];
        assert_eq!(
            with_buckets(vec![b]).unwrap_err(),
            r#"journeys[0] "welcome" has the journey id of bucket "vip"'s enter reaction, so it declares that reaction's journey: its trigger must be "bucket:entered:vip", not "user.signed_up""#
        );
        let mut a = bucket("a", Some(ACTIVE));
        a.reactions = vec![reaction(
            "same",
            wit::ReactionOn::Enter(wit::EnterOptions {
                first_entry_only: false,
            }),
        )];
        let mut b = bucket("b", Some(ACTIVE));
        b.reactions = a.reactions.clone();
        assert_eq!(
            with_buckets(vec![a, b]).unwrap_err(),
            r#"buckets[1] "b": reactions[0].journey-id "same" collides with buckets[0] "a": reactions[0].journey-id "same""#
        );
    }

    /// The shared validity cases, a module of one bucket or one journey each (see the file's
    /// `about`), as the WIT manifest `describe` would return.
    fn shared_case_manifest(case: &Value) -> wit::Manifest {
        let text = |fragment: &Value, field: &str, default: &str| {
            fragment
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        let json_text = |fragment: &Value, field: &str| fragment.get(field).map(Value::to_string);
        let ms = |fragment: &Value, field: &str| fragment.get(field).and_then(Value::as_u64);
        let mut manifest = wit::Manifest {
            journeys: vec![],
            templates: vec![],
            buckets: vec![],
        };
        if let Some(b) = case.get("bucket") {
            let id = text(b, "id", "b");
            let manual = b.get("manual").and_then(Value::as_bool) == Some(true);
            let mut def = bucket(&id, None);
            def.name = text(b, "name", &id);
            def.kind = if manual {
                wit::BucketKind::Manual
            } else {
                wit::BucketKind::Computed
            };
            def.criteria_json = json_text(b, "criteria");
            def.min_dwell_ms = ms(b, "minDwellMs");
            def.max_dwell_ms = ms(b, "maxDwellMs");
            if let Some(period) = ms(b, "oncePerMs") {
                def.entry_limit = wit::EntryLimit::OncePer(period);
            }
            if let Some(reasons) = b.get("leaveReasons").and_then(Value::as_array) {
                def.reactions.push(reaction(
                    &format!("bucket-{id}-on-leave"),
                    wit::ReactionOn::Leave(wit::LeaveOptions {
                        reasons: Some(
                            reasons
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect(),
                        ),
                    }),
                ));
            }
            if let Some(rules) = b.get("enterExitOn").and_then(Value::as_array) {
                // As the SDK writes an enter reaction with exit rules: the reaction, and a
                // journey-def of its id declaring its exit rules.
                let reaction_id = format!("bucket-{id}-on-enter");
                def.reactions.push(reaction(
                    &reaction_id,
                    wit::ReactionOn::Enter(wit::EnterOptions {
                        first_entry_only: false,
                    }),
                ));
                let mut declared = journey(
                    &reaction_id,
                    &format!("bucket:entered:{id}"),
                    wit::EntryLimit::Unlimited,
                );
                declared.exit_on = rules
                    .iter()
                    .map(|rule| wit::ExitRule {
                        event: text(rule, "event", ""),
                        where_: json_text(rule, "where"),
                    })
                    .collect();
                manifest.journeys.push(declared);
            }
            manifest.buckets.push(def);
        }
        if let Some(j) = case.get("journey") {
            let limit = ms(j, "oncePerMs").map_or(wit::EntryLimit::Once, wit::EntryLimit::OncePer);
            let mut def = journey(&text(j, "id", "j"), &text(j, "trigger", "x"), limit);
            def.trigger_where = json_text(j, "where");
            def.exit_on = j
                .get("exitOn")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|rule| wit::ExitRule {
                    event: text(rule, "event", ""),
                    where_: json_text(rule, "where"),
                })
                .collect();
            manifest.journeys.push(def);
        }
        manifest
    }

    #[test]
    fn given_the_shared_validity_cases_when_loaded_then_the_host_judges_each_as_the_sdk_does() {
        // The same file drives the Rust SDK's `Module::validate` test
        // (guest-sdk/rust/tests/validity.rs): a case the host refuses, the SDK refuses too,
        // with the same words.
        let doc: Value = serde_json::from_str(include_str!(
            "../../../guest-sdk/rust/tests/validity_cases.json"
        ))
        .unwrap();
        let cases = doc["cases"].as_array().expect("a list of cases");
        assert!(cases.len() > 20, "the shared cases went missing");
        for case in cases {
            let name = case["case"].as_str().unwrap();
            let verdict = ModuleManifest::from_wit(shared_case_manifest(case)).map(|_| ());
            match case.get("error").and_then(Value::as_str) {
                None => assert_eq!(verdict, Ok(()), "{name}"),
                Some(expected) => {
                    let err = verdict.expect_err(name);
                    assert!(
                        err.contains(expected),
                        "{name}: expected {expected:?} in the refusal, got {err:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn given_a_bucket_id_declared_twice_when_loaded_then_it_is_refused() {
        assert_eq!(
            with_buckets(vec![bucket("vip", Some(ACTIVE)), bucket("vip", None)]).unwrap_err(),
            r#"buckets[1] "vip": id is already declared by buckets[0]"#
        );
    }

    #[test]
    fn given_a_module_with_only_buckets_when_loaded_then_it_is_accepted_and_an_empty_one_is_not() {
        let m = ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![],
            templates: vec![],
            buckets: vec![bucket("manual", None)],
        })
        .unwrap();
        assert_eq!(m.buckets[0].kind, BucketKind::Manual);
        assert!(m.journeys.is_empty());
        assert_eq!(
            ModuleManifest::from_wit(wit::Manifest {
                journeys: vec![],
                templates: vec![],
                buckets: vec![],
            })
            .unwrap_err(),
            "a module must declare at least one journey or bucket"
        );
    }
}
