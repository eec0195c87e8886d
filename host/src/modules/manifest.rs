//! A module's manifest as the host keeps it: converted from what `describe` returned and
//! validated, with errors that name the offending field.

use crate::delivery::templates::TemplateSet;
use crate::journeys::EntryLimit;
use crate::runtime::bindings::types as wit;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyDef {
    pub id: String,
    pub name: String,
    pub trigger: String,
    pub entry_limit: EntryLimit,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateDef {
    pub key: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleManifest {
    pub journeys: Vec<JourneyDef>,
    pub templates: Vec<TemplateDef>,
}

const MAX_ID_LEN: usize = 200;

fn check_name(field: String, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(format!("{field} is longer than {MAX_ID_LEN} characters"));
    }
    Ok(())
}

impl ModuleManifest {
    pub fn from_wit(manifest: wit::Manifest) -> Result<Self, String> {
        if manifest.journeys.is_empty() {
            return Err("journeys must declare at least one journey".into());
        }
        let mut ids = HashSet::new();
        let mut journeys = Vec::with_capacity(manifest.journeys.len());
        for (i, j) in manifest.journeys.into_iter().enumerate() {
            check_name(format!("journeys[{i}].id"), &j.id)?;
            check_name(format!("journeys[{i}].name"), &j.name)?;
            check_name(format!("journeys[{i}].trigger"), &j.trigger)?;
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
            journeys.push(JourneyDef {
                id: j.id,
                name: j.name,
                trigger: j.trigger,
                entry_limit,
                enabled: j.enabled,
            });
        }
        let templates = manifest
            .templates
            .into_iter()
            .map(|t| TemplateDef {
                key: t.key,
                subject: t.subject,
                body: t.body,
            })
            .collect();
        Ok(Self {
            journeys,
            templates,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn journey(id: &str, trigger: &str, limit: wit::EntryLimit) -> wit::JourneyDef {
        wit::JourneyDef {
            id: id.into(),
            name: "A journey".into(),
            trigger: trigger.into(),
            entry_limit: limit,
            enabled: true,
        }
    }

    #[test]
    fn a_valid_manifest_converts_with_its_entry_limits() {
        let m = ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![
                journey("a", "x", wit::EntryLimit::OncePer(1000)),
                journey("b", "y", wit::EntryLimit::Unlimited),
            ],
            templates: vec![],
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
        })
        .unwrap_err();
        assert_eq!(err, "journeys[0].trigger must not be empty");
    }

    #[test]
    fn a_duplicate_journey_id_is_refused() {
        let err = ModuleManifest::from_wit(wit::Manifest {
            journeys: vec![
                journey("a", "x", wit::EntryLimit::Once),
                journey("a", "y", wit::EntryLimit::Once),
            ],
            templates: vec![],
        })
        .unwrap_err();
        assert!(err.contains("journeys[1].id"), "{err}");
    }
}
