//! Email templates shipped in a module's manifest: minijinja subject and body, validated when
//! the module loads and rendered when a journey queues an email.

use serde_json::Value;
use std::collections::BTreeMap;

/// One module version's templates.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    templates: BTreeMap<String, Template>,
}

#[derive(Debug, Clone)]
struct Template {
    subject: String,
    body: String,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

impl TemplateSet {
    /// Check and collect templates; the error names the template and the part that is wrong.
    pub fn new<'a>(
        defs: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, String> {
        let env = environment();
        let mut templates = BTreeMap::new();
        for (key, subject, body) in defs {
            if key.trim().is_empty() {
                return Err("templates[].key must not be empty".into());
            }
            for (part, source) in [("subject", subject), ("body", body)] {
                env.template_from_str(source)
                    .map_err(|e| format!("template {key:?} has an invalid {part}: {e}"))?;
            }
            let template = Template {
                subject: subject.to_owned(),
                body: body.to_owned(),
            };
            if templates.insert(key.to_owned(), template).is_some() {
                return Err(format!("template {key:?} is declared twice"));
            }
        }
        Ok(Self { templates })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.templates.contains_key(key)
    }

    /// Render a template with `context` (a JSON object).
    pub fn render(&self, key: &str, context: &Value) -> Result<Rendered, String> {
        let template = self
            .templates
            .get(key)
            .ok_or_else(|| format!("unknown template {key:?}"))?;
        let env = environment();
        let render = |part: &str, source: &str| {
            env.render_str(source, context)
                .map_err(|e| format!("template {key:?} {part} failed to render: {e}"))
        };
        Ok(Rendered {
            subject: render("subject", &template.subject)?.trim().to_owned(),
            body: render("body", &template.body)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_subject_and_body_with_the_context() {
        let set = TemplateSet::new([(
            "welcome",
            "Welcome, {{ name }}!",
            "Hi {{ name }}, plan {{ plan | default('free') }}.",
        )])
        .unwrap();
        let out = set.render("welcome", &json!({"name": "Ada"})).unwrap();
        assert_eq!(out.subject, "Welcome, Ada!");
        assert_eq!(out.body, "Hi Ada, plan free.");
    }

    #[test]
    fn an_invalid_template_is_refused_naming_it_and_the_part() {
        let err = TemplateSet::new([("broken", "ok", "{% if %}")]).unwrap_err();
        assert!(err.contains("\"broken\"") && err.contains("body"), "{err}");
    }

    #[test]
    fn an_unknown_template_is_an_error_not_a_blank_email() {
        let set = TemplateSet::new([]).unwrap();
        assert!(
            set.render("nope", &json!({}))
                .unwrap_err()
                .contains("unknown template")
        );
    }
}
