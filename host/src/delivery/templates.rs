//! Email templates: a subject, a plain-text body and an optional HTML body, each a minijinja
//! template. They come from a module's manifest ([`TemplateSet`], one per module version) or
//! from the tenant's own templates managed through `/v1/templates` (stored, see
//! [`crate::store::TenantTemplate`]).
//!
//! Lookup order when a journey sends: the tenant's template of that key first, then the
//! template the run's module version ships. A tenant override wins so copy can change without
//! a redeploy; deleting the override falls back to the module's.
//!
//! The HTML body renders with HTML autoescaping (a variable holding `<b>` shows as text); the
//! subject and text body render verbatim.

use serde_json::Value;
use std::collections::BTreeMap;

/// One template's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    pub html: Option<String>,
}

/// Which part of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart {
    Subject,
    Text,
    Html,
}

impl TemplatePart {
    /// The part's name in the API (`/v1/templates` bodies).
    pub fn api_field(self) -> &'static str {
        match self {
            TemplatePart::Subject => "subject",
            TemplatePart::Text => "text",
            TemplatePart::Html => "html",
        }
    }

    /// The part's name in the WIT `template-def` record.
    pub fn manifest_field(self) -> &'static str {
        match self {
            TemplatePart::Subject => "subject",
            TemplatePart::Text => "body",
            TemplatePart::Html => "html",
        }
    }

    /// The name the source is compiled under: it selects the autoescaping.
    fn template_name(self) -> &'static str {
        match self {
            TemplatePart::Subject => "subject.txt",
            TemplatePart::Text => "body.txt",
            TemplatePart::Html => "body.html",
        }
    }
}

/// A template part that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidTemplate {
    pub part: TemplatePart,
    pub message: String,
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Steps (minijinja's fuel) one part may take to render: an email of any reasonable size
/// takes thousands; a template written to spin (loops inside loops) stops here, in
/// milliseconds.
pub const RENDER_FUEL: u64 = 1_000_000;
/// The most one rendered part may hold.
pub const MAX_RENDERED_BYTES: usize = 1 << 20;

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(RENDER_FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env
}

impl TemplateSource {
    fn parts(&self) -> impl Iterator<Item = (TemplatePart, &str)> {
        [
            (TemplatePart::Subject, Some(self.subject.as_str())),
            (TemplatePart::Text, Some(self.text.as_str())),
            (TemplatePart::Html, self.html.as_deref()),
        ]
        .into_iter()
        .filter_map(|(part, source)| source.map(|s| (part, s)))
    }

    /// Check that every part parses; the error names the first part that does not.
    pub fn check(&self) -> Result<(), InvalidTemplate> {
        let env = environment();
        for (part, source) in self.parts() {
            env.template_from_named_str(part.template_name(), source)
                .map_err(|e| InvalidTemplate {
                    part,
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Render every part with `context` (a JSON object). The error names the template `key`
    /// and the part.
    pub fn render(&self, key: &str, context: &Value) -> Result<Rendered, String> {
        let env = environment();
        let render = |part: TemplatePart, source: &str| {
            render_part(&env, part, source, context).map_err(|reason| {
                format!(
                    "template {key:?} {} failed to render: {reason}",
                    part.manifest_field()
                )
            })
        };
        Ok(Rendered {
            subject: render(TemplatePart::Subject, &self.subject)?
                .trim()
                .to_owned(),
            text: render(TemplatePart::Text, &self.text)?,
            html: self
                .html
                .as_deref()
                .map(|html| render(TemplatePart::Html, html))
                .transpose()?,
        })
    }
}

/// Render one part within [`RENDER_FUEL`] and [`MAX_RENDERED_BYTES`].
fn render_part(
    env: &minijinja::Environment<'_>,
    part: TemplatePart,
    source: &str,
    context: &Value,
) -> Result<String, String> {
    let template = env
        .template_from_named_str(part.template_name(), source)
        .map_err(|e| e.to_string())?;
    let mut out = CappedOutput::default();
    match template.render_captured_to(context, &mut out) {
        Ok(_) => String::from_utf8(out.bytes).map_err(|e| e.to_string()),
        Err(_) if out.overflowed => Err(format!("it renders more than {MAX_RENDERED_BYTES} bytes")),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(format!(
            "it takes more than {RENDER_FUEL} steps to render (a loop too large?)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Where a part renders to: refuses to grow past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("the rendered template is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One module version's templates.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    templates: BTreeMap<String, TemplateSource>,
}

impl TemplateSet {
    /// Check and collect templates; the error names the template and the part that is wrong.
    pub fn new(defs: impl IntoIterator<Item = (String, TemplateSource)>) -> Result<Self, String> {
        let mut templates = BTreeMap::new();
        for (key, source) in defs {
            if key.trim().is_empty() {
                return Err("templates[].key must not be empty".into());
            }
            source.check().map_err(|invalid| {
                format!(
                    "template {key:?} has an invalid {}: {}",
                    invalid.part.manifest_field(),
                    invalid.message
                )
            })?;
            if templates.contains_key(&key) {
                return Err(format!("template {key:?} is declared twice"));
            }
            templates.insert(key, source);
        }
        Ok(Self { templates })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.templates.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&TemplateSource> {
        self.templates.get(key)
    }

    /// Render a template with `context` (a JSON object).
    pub fn render(&self, key: &str, context: &Value) -> Result<Rendered, String> {
        self.templates
            .get(key)
            .ok_or_else(|| format!("unknown template {key:?}"))?
            .render(key, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(subject: &str, text: &str, html: Option<&str>) -> TemplateSource {
        TemplateSource {
            subject: subject.into(),
            text: text.into(),
            html: html.map(Into::into),
        }
    }

    #[test]
    fn a_template_that_loops_without_end_runs_out_of_fuel_naming_the_budget() {
        let spinning = source(
            "s",
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x",
            None,
        );
        let error = spinning.render("hello", &json!({})).unwrap_err();
        assert!(error.contains("steps to render"), "{error}");
        assert!(error.contains("\"hello\" body"), "{error}");
    }

    #[test]
    fn a_template_that_renders_too_much_is_refused_before_it_grows_past_the_cap() {
        let huge = source(
            "s",
            "{% for a in range(1000) %}{{ 'x' * 10000 }}{% endfor %}",
            None,
        );
        let error = huge.render("big", &json!({})).unwrap_err();
        assert!(error.contains("renders more than"), "{error}");
    }

    #[test]
    fn renders_subject_and_body_with_the_context() {
        let set = TemplateSet::new([(
            "welcome".to_owned(),
            source(
                "Welcome, {{ name }}!",
                "Hi {{ name }}, plan {{ plan | default('free') }}.",
                None,
            ),
        )])
        .unwrap();
        let out = set.render("welcome", &json!({"name": "Ada"})).unwrap();
        assert_eq!(out.subject, "Welcome, Ada!");
        assert_eq!(out.text, "Hi Ada, plan free.");
        assert_eq!(out.html, None);
    }

    #[test]
    fn the_html_body_escapes_variables_and_the_text_parts_do_not() {
        let template = source(
            "Hi {{ name }}",
            "Hi {{ name }}",
            Some("<p>Hi {{ name }}</p>"),
        );
        let out = template
            .render("t", &json!({"name": "<b>Ada & co</b>"}))
            .unwrap();
        assert_eq!(out.subject, "Hi <b>Ada & co</b>");
        assert_eq!(out.text, "Hi <b>Ada & co</b>");
        assert_eq!(
            out.html.as_deref(),
            Some("<p>Hi &lt;b&gt;Ada &amp; co&lt;&#x2f;b&gt;</p>")
        );
    }

    #[test]
    fn an_invalid_template_is_refused_naming_it_and_the_part() {
        let err =
            TemplateSet::new([("broken".to_owned(), source("ok", "{% if %}", None))]).unwrap_err();
        assert!(err.contains("\"broken\"") && err.contains("body"), "{err}");
        let err = TemplateSet::new([("broken".to_owned(), source("ok", "ok", Some("{{ x")))])
            .unwrap_err();
        assert!(err.contains("\"broken\"") && err.contains("html"), "{err}");
    }

    #[test]
    fn check_names_the_part_that_does_not_parse() {
        let invalid = source("{% for %}", "ok", None).check().unwrap_err();
        assert_eq!(invalid.part, TemplatePart::Subject);
        assert_eq!(invalid.part.api_field(), "subject");
        let invalid = source("ok", "ok", Some("{{")).check().unwrap_err();
        assert_eq!(invalid.part.api_field(), "html");
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
