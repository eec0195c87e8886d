//! A tenant's active set: the modules new runs start on, their journeys indexed by trigger
//! and exit event, and their buckets. Built whole and swapped whole, so an event is routed by
//! one complete set, never half of one deploy and half of the next.

use super::manifest::JourneyDef;
use super::{LoadedModule, ModuleError};
use crate::buckets::BucketRegistry;
use crate::journeys::router::RunCandidate;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub struct ActiveSet {
    /// The catalog revision the set is of (0: none yet).
    pub revision: i64,
    /// By module name.
    pub modules: Vec<Arc<LoadedModule>>,
    /// Declared journeys and bucket reactions, in module order.
    pub(super) journeys: Vec<(Arc<LoadedModule>, JourneyDef)>,
    by_trigger: HashMap<String, Vec<usize>>,
    by_exit_event: HashMap<String, Vec<usize>>,
    pub(super) buckets: Arc<BucketRegistry>,
}

impl ActiveSet {
    /// The set of `modules` (sorted by name here) at `revision`: journey, bucket and template
    /// ids must be unique across them, else the conflict names both modules.
    pub fn build(
        revision: i64,
        mut modules: Vec<Arc<LoadedModule>>,
    ) -> Result<ActiveSet, ModuleError> {
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        let mut set = ActiveSet {
            revision,
            ..ActiveSet::default()
        };
        let mut journey_owners: HashMap<&str, &str> = HashMap::new();
        let mut template_owners: HashMap<&str, &str> = HashMap::new();
        for module in &modules {
            for journey in &module.manifest.journeys {
                claim(&mut journey_owners, "journey", &journey.id, &module.name)?;
                set.index(module, journey);
            }
            for template in &module.manifest.templates {
                claim(
                    &mut template_owners,
                    "template",
                    &template.key,
                    &module.name,
                )?;
            }
        }
        set.buckets = Arc::new(
            BucketRegistry::build(
                modules
                    .iter()
                    .map(|m| (m.name.as_str(), m.manifest.buckets.as_slice())),
            )
            .map_err(|duplicate| ModuleError::Conflict(duplicate.to_string()))?,
        );
        set.modules = modules;
        Ok(set)
    }

    fn index(&mut self, module: &Arc<LoadedModule>, journey: &JourneyDef) {
        let at = self.journeys.len();
        self.by_trigger
            .entry(journey.trigger.clone())
            .or_default()
            .push(at);
        let mut exit_events: Vec<&str> = journey.exit_on.iter().map(|r| r.event.as_str()).collect();
        exit_events.sort_unstable();
        exit_events.dedup();
        for event in exit_events {
            self.by_exit_event
                .entry(event.to_owned())
                .or_default()
                .push(at);
        }
        self.journeys.push((module.clone(), journey.clone()));
    }

    /// The run candidates an event starts: its journeys, enabled or not, with whether their
    /// trigger filter holds ([`crate::journeys::router::candidates_for`]).
    pub fn candidates(
        &self,
        event_name: &str,
        event_properties: &Map<String, Value>,
    ) -> Vec<RunCandidate> {
        crate::journeys::router::candidates_for(
            self.triggered_by(event_name)
                .map(|(module, journey)| (module.hash.as_str(), journey)),
            event_properties,
        )
    }

    /// The ids of the journeys an event ends live runs of: one of their `exitOn` rules names
    /// it and its condition holds on the event's properties. Disabled journeys included.
    pub fn exits(&self, event_name: &str, event_properties: &Map<String, Value>) -> Vec<String> {
        self.exited_by(event_name)
            .filter(|(_, j)| {
                j.exit_on
                    .iter()
                    .any(|rule| rule.matches(event_name, event_properties))
            })
            .map(|(_, j)| j.id.clone())
            .collect()
    }

    /// The journeys whose trigger is `event`.
    pub(super) fn triggered_by<'a>(
        &'a self,
        event: &str,
    ) -> impl Iterator<Item = &'a (Arc<LoadedModule>, JourneyDef)> + use<'a> {
        self.indexed(&self.by_trigger, event)
    }

    /// The journeys with an exit rule on `event`.
    pub(super) fn exited_by<'a>(
        &'a self,
        event: &str,
    ) -> impl Iterator<Item = &'a (Arc<LoadedModule>, JourneyDef)> + use<'a> {
        self.indexed(&self.by_exit_event, event)
    }

    fn indexed<'a>(
        &'a self,
        index: &'a HashMap<String, Vec<usize>>,
        event: &str,
    ) -> impl Iterator<Item = &'a (Arc<LoadedModule>, JourneyDef)> + use<'a> {
        index
            .get(event)
            .into_iter()
            .flatten()
            .map(|&i| &self.journeys[i])
    }
}

/// Record `module` as the owner of `id`, or name the module that owns it already.
fn claim<'a>(
    owners: &mut HashMap<&'a str, &'a str>,
    what: &str,
    id: &'a str,
    module: &'a str,
) -> Result<(), ModuleError> {
    match owners.insert(id, module) {
        Some(other) => Err(ModuleError::Conflict(format!(
            "{what} id {id:?} is declared by both {other:?} and {module:?}"
        ))),
        None => Ok(()),
    }
}
