//! The connection form of the connect page, generated from a connection type's JSON Schema,
//! and the typing of what it posts (numbers, booleans, enums) as the vault expects it; a
//! secret field's value is never shown again or quoted in a problem.

use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::session::Session;
use super::widgets::*;

/// The standard connection kinds of the built-in `http` app, as JSON Schemas for forms.
pub(super) fn http_connection_types() -> Vec<(String, &'static str, Value)> {
    vec![
        (
            "API key".to_string(),
            "api_key",
            json!({"type": "object", "required": ["name", "key"], "properties": {
                "name": {"type": "string", "title": "Header or query parameter name"},
                "key": {"type": "string", "title": "API key", "format": "password"},
                "placement": {"type": "string", "title": "Placement", "enum": ["header", "query"]},
                "baseUrl": {"type": "string", "title": "Base URL", "format": "uri"}}}),
        ),
        (
            "Bearer token".to_string(),
            "bearer",
            json!({"type": "object", "required": ["token"], "properties": {
                "token": {"type": "string", "title": "Token", "format": "password"},
                "baseUrl": {"type": "string", "title": "Base URL", "format": "uri"}}}),
        ),
        (
            "Basic auth".to_string(),
            "basic",
            json!({"type": "object", "required": ["username"], "properties": {
                "username": {"type": "string", "title": "User name"},
                "password": {"type": "string", "title": "Password", "format": "password"},
                "baseUrl": {"type": "string", "title": "Base URL", "format": "uri"}}}),
        ),
    ]
}

/// The schema of the connection type a form was posted for, found as the vault finds the type:
/// one of the `http` app's standard kinds, else the app's type named `kind`, else its only type
/// of that kind.
pub(super) fn posted_schema(
    vault: &crate::connections::Vault,
    app: &str,
    kind: &str,
) -> Option<Value> {
    if app == "http" {
        return http_connection_types()
            .into_iter()
            .find(|(_, k, _)| *k == kind)
            .map(|(_, _, schema)| schema);
    }
    let types: Vec<crate::connections::ConnectionTypeInfo> = vault
        .connection_types()
        .into_iter()
        .filter(|t| t.app == app)
        .collect();
    if let Some(named) = types.iter().find(|t| t.name == kind) {
        return Some(named.configuration.clone());
    }
    let mut of_kind = types.into_iter().filter(|t| t.kind == kind);
    match (of_kind.next(), of_kind.next()) {
        (Some(only), None) => Some(only.configuration),
        _ => None,
    }
}

/// Whether a field holds a secret: typed as a password, or named like one.
fn secret_field(name: &str, schema: &Value) -> bool {
    schema.get("format").and_then(Value::as_str) == Some("password")
        || schema.get("writeOnly").and_then(Value::as_bool) == Some(true)
        || [
            "key",
            "token",
            "password",
            "secret",
            "value",
            "apiKey",
            "clientSecret",
        ]
        .contains(&name)
}

/// How a schema property is entered in the form and sent to the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    /// Text (a password input for a secret).
    Text,
    /// A whole number: `<input type=number step=1>`, sent as a JSON integer.
    Integer,
    /// `<input type=number step=any>`, sent as a JSON number.
    Number,
    /// A checkbox, sent as `true`/`false`.
    Boolean,
    /// An `enum`: a select, sent as the chosen value with its JSON type.
    Choice,
}

fn field_kind(field: &Value) -> FieldKind {
    if field.get("enum").is_some_and(Value::is_array) {
        return FieldKind::Choice;
    }
    // `"type": ["integer", "null"]` is an optional integer.
    let ty = match field.get("type") {
        Some(Value::String(ty)) => Some(ty.as_str()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|ty| *ty != "null"),
        _ => None,
    };
    match ty {
        Some("integer") => FieldKind::Integer,
        Some("number") => FieldKind::Number,
        Some("boolean") => FieldKind::Boolean,
        _ => FieldKind::Text,
    }
}

/// An enum value or a default as the text a form shows and posts.
fn form_text(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

/// The number `text` holds: an integer when it is whole, a fraction only when `whole` is
/// false; `None` when it is not a finite number (or not whole when `whole` is asked).
fn parse_number(text: &str, whole: bool) -> Option<serde_json::Number> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(u.into());
    }
    let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
    if whole {
        // `10.0` is whole; `10.5` is not. Beyond 2^53 an f64 no longer says which it is.
        return (f.fract() == 0.0 && f.abs() < 9.0e15).then(|| (f as i64).into());
    }
    serde_json::Number::from_f64(f)
}

/// The fields of a posted connection form — its `field.<name>` entries — typed by the connection
/// type's JSON Schema, as the vault and the app's schema expect them:
/// - `integer` / `number`: a JSON number (an integer refuses a fraction);
/// - `boolean`: a checkbox, `true` when posted checked; HTML leaves an unchecked box out of the
///   form, so a boolean of the schema that was not posted is `false`;
/// - `enum`: the chosen value with its JSON type;
/// - anything else: the text as typed.
///
/// An empty optional field is left out (the vault and the schema decide about required ones);
/// a `field.<name>` the schema does not have is refused. Every problem is reported at once,
/// each at `fields.<name>`, and a secret field's value is never quoted in one.
pub(super) fn typed_fields(
    schema: &Value,
    form: &Form_,
) -> Result<Map<String, Value>, Vec<crate::connections::FieldProblem>> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut fields = Map::new();
    let mut problems = Vec::new();
    for (name, field) in properties.into_iter().flatten() {
        let posted = form.get(&format!("field.{name}")).map(String::as_str);
        let kind = field_kind(field);
        let refuse = |expected: String, text: &str| {
            let got = if secret_field(name, field) {
                String::new()
            } else {
                format!(", got {text:?}")
            };
            crate::connections::FieldProblem {
                path: format!("fields.{name}"),
                reason: format!("expected {expected}{got}"),
            }
        };
        let value = match (kind, posted) {
            (FieldKind::Boolean, None) => Some(Value::Bool(false)),
            (_, None) => None,
            (FieldKind::Boolean, Some("true" | "on")) => Some(Value::Bool(true)),
            (FieldKind::Boolean, Some("false")) => Some(Value::Bool(false)),
            (FieldKind::Boolean, Some(text)) => {
                problems.push(refuse("true or false".into(), text));
                None
            }
            (FieldKind::Integer | FieldKind::Number, Some(text)) => {
                let text = text.trim();
                if text.is_empty() {
                    None
                } else {
                    let whole = kind == FieldKind::Integer;
                    match parse_number(text, whole) {
                        Some(n) => Some(Value::Number(n)),
                        None => {
                            let expected = if whole { "a whole number" } else { "a number" };
                            problems.push(refuse(expected.into(), text));
                            None
                        }
                    }
                }
            }
            (FieldKind::Choice | FieldKind::Text, Some("")) => None,
            (FieldKind::Choice, Some(text)) => {
                let options = field
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                match options.iter().find(|o| form_text(o) == text) {
                    Some(chosen) => Some(chosen.clone()),
                    None => {
                        let listed: Vec<String> = options
                            .iter()
                            .map(|o| format!("{:?}", form_text(o)))
                            .collect();
                        problems.push(refuse(format!("one of {}", listed.join(", ")), text));
                        None
                    }
                }
            }
            (FieldKind::Text, Some(text)) => Some(Value::String(text.to_string())),
        };
        if let Some(value) = value {
            fields.insert(name.clone(), value);
        }
    }
    let mut unknown: Vec<&str> = form
        .keys()
        .filter_map(|k| k.strip_prefix("field."))
        .filter(|name| !properties.is_some_and(|p| p.contains_key(*name)))
        .collect();
    unknown.sort_unstable();
    let known: Vec<&str> = properties
        .into_iter()
        .flat_map(|p| p.keys().map(String::as_str))
        .collect();
    for name in unknown {
        problems.push(crate::connections::FieldProblem {
            path: format!("fields.{name}"),
            reason: if known.is_empty() {
                "this connection type has no fields".to_string()
            } else {
                format!(
                    "not a field of this connection type (its fields: {})",
                    known.join(", ")
                )
            },
        });
    }
    if problems.is_empty() {
        Ok(fields)
    } else {
        Err(problems)
    }
}

/// One field of a connection form, from its schema property: a number input for numbers, a
/// checkbox for booleans, a select for an enum (with an empty "—" first choice when the field
/// is optional), a text input otherwise (a password input for a secret); its title and
/// description. Pre-filled with what `posted` holds when the form comes back refused, else with
/// the property's `default` — never for a secret field.
fn schema_field(name: &str, field: &Value, required: bool, posted: Option<&Form_>) -> Markup {
    let input_name = format!("field.{name}");
    let title = field.get("title").and_then(Value::as_str).unwrap_or(name);
    let description = field.get("description").and_then(Value::as_str);
    let secret = secret_field(name, field);
    let prefill: Option<String> = match posted {
        _ if secret => None,
        Some(form) => form.get(&input_name).filter(|v| !v.is_empty()).cloned(),
        None => field.get("default").map(form_text),
    };
    let kind = field_kind(field);
    let bound = |key: &str| {
        field
            .get(key)
            .filter(|v| v.is_number())
            .map(Value::to_string)
    };
    html! {
        @if kind == FieldKind::Boolean {
            label.check {
                input type="checkbox" name=(input_name) value="true" checked[prefill.as_deref() == Some("true")];
                span { (title) }
                @if let Some(d) = description { small.muted { (d) } }
            }
        } @else {
            label {
                (title) @if required { " *" }
                @match kind {
                    FieldKind::Choice => {
                        select name=(input_name) required[required] {
                            @if !required { option value="" selected[prefill.is_none()] { "—" } }
                            @for o in field.get("enum").and_then(Value::as_array).into_iter().flatten() {
                                @let text = form_text(o);
                                option value=(text) selected[prefill.as_deref() == Some(text.as_str())] { (text) }
                            }
                        }
                    }
                    FieldKind::Integer | FieldKind::Number => {
                        input type="number" name=(input_name)
                            step=(if kind == FieldKind::Integer { "1" } else { "any" })
                            min=[bound("minimum")] max=[bound("maximum")]
                            value=[prefill] required[required] autocomplete="off";
                    }
                    _ => {
                        input type=(if secret { "password" } else { "text" }) name=(input_name)
                            value=[prefill] required[required] autocomplete="off";
                    }
                }
                @if let Some(d) = description { small.muted { (d) } }
            }
        }
    }
}

/// A form creating a connection of `kind` for `app`, its fields generated from `schema`
/// (an object schema: properties, required, type, enum, default, title, description), filled
/// again from `posted` when it is this form coming back refused.
pub(super) fn schema_form(
    session: &Session,
    app: &str,
    kind: &str,
    title: &str,
    schema: &Value,
    posted: Option<&Form_>,
) -> Markup {
    connection_form(session, app, kind, title, schema, posted, None)
}

/// The form of a studio provider's integration card: [`schema_form`] with the connection's
/// name fixed to the integration's alias (so `"__IMTCONN__": "twilio"` uses it).
pub(super) fn integration_form(
    session: &Session,
    alias: &str,
    app: &str,
    kind: &str,
    schema: &Value,
    posted: Option<&Form_>,
) -> Markup {
    connection_form(session, app, kind, "", schema, posted, Some(alias))
}

fn connection_form(
    session: &Session,
    app: &str,
    kind: &str,
    title: &str,
    schema: &Value,
    posted: Option<&Form_>,
    fixed_name: Option<&str>,
) -> Markup {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let posted = posted.filter(|form| {
        form.get("app").map(String::as_str) == Some(app)
            && form.get("kind").map(String::as_str) == Some(kind)
            && fixed_name.is_none_or(|fixed| form.get("name").map(String::as_str) == Some(fixed))
    });
    let name = posted.and_then(|form| form.get("name")).cloned();
    let make_id = posted.and_then(|form| form.get("id")).cloned();
    let form_id = match fixed_name {
        Some(alias) => format!("integration-{alias}-form"),
        None => format!("new-{app}-{kind}"),
    };
    html! {
        form.connection-form.card[fixed_name.is_none()] method="post" action="/connect/connections" id=(form_id) data-app=(app) data-kind=(kind) {
            @if fixed_name.is_none() { h3 { (title) " " span.muted { "(" (app) ")" } } }
            (csrf_field(session))
            input type="hidden" name="app" value=(app);
            input type="hidden" name="kind" value=(kind);
            @if let Some(alias) = fixed_name {
                input type="hidden" name="name" value=(alias);
            } @else {
            label { "Connection name" input type="text" name="name" required placeholder="my-connection" value=[name]; }
            label { "Make connection id"
                input type="text" name="id" inputmode="numeric" pattern="[1-9][0-9]{0,17}" placeholder="33477" value=[make_id];
                small.muted { "Optional: the number imported blueprints name this connection by." } }
            }
            @for (name, field) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
                (schema_field(name, field, required.contains(&name.as_str()), posted))
            }
            label.check {
                input type="checkbox" name="test" value="true" checked[posted.is_none_or(|form| form.contains_key("test"))];
                span { "Test the connection before saving" }
                small.muted { "Runs the app's test request; a connection that fails it is not stored." }
            }
            button.primary type="submit" { "Save connection" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form_ {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn schema() -> Value {
        json!({"type": "object", "required": ["host", "port"], "properties": {
            "host": {"type": "string", "title": "Host"},
            "port": {"type": "integer", "default": 5432, "minimum": 1, "maximum": 65535},
            "timeout": {"type": "number", "description": "Seconds"},
            "tls": {"type": "boolean", "default": true},
            "mode": {"type": "string", "enum": ["fast", "safe"]},
            "level": {"enum": [1, 2, 3]},
            "pin": {"type": ["integer", "null"], "writeOnly": true},
            "password": {"type": "string", "format": "password", "default": "hunter2"}}})
    }

    #[test]
    fn numbers_and_booleans_are_sent_typed() {
        let posted = form(&[
            ("name", "db"),
            ("field.host", "db.example.com"),
            ("field.port", "5432"),
            ("field.timeout", "2.5"),
            ("field.tls", "true"),
            ("field.level", "2"),
            ("field.mode", "safe"),
        ]);
        let fields = typed_fields(&schema(), &posted).unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"host": "db.example.com", "port": 5432, "timeout": 2.5, "tls": true,
                   "mode": "safe", "level": 2})
        );
        // A whole number given to a `number` stays an integer; `10.0` is a whole number.
        let fields = typed_fields(
            &schema(),
            &form(&[("field.timeout", " 3 "), ("field.port", "10.0")]),
        )
        .unwrap();
        assert_eq!(fields["timeout"], json!(3));
        assert_eq!(fields["port"], json!(10));
    }

    #[test]
    fn an_unchecked_box_is_false_and_an_empty_optional_field_is_omitted() {
        let fields = typed_fields(
            &schema(),
            &form(&[
                ("field.host", "h"),
                ("field.timeout", ""),
                ("field.mode", ""),
                ("field.pin", ""),
            ]),
        )
        .unwrap();
        assert_eq!(Value::Object(fields), json!({"host": "h", "tls": false}));
        let fields = typed_fields(&schema(), &form(&[("field.tls", "false")])).unwrap();
        assert_eq!(fields["tls"], json!(false));
        // A schema without booleans adds nothing for an empty form.
        let plain = json!({"properties": {"host": {"type": "string"}}});
        assert!(typed_fields(&plain, &form(&[])).unwrap().is_empty());
    }

    #[test]
    fn what_is_not_of_the_field_type_is_refused_naming_the_field() {
        let problems = typed_fields(
            &schema(),
            &form(&[
                ("field.timeout", "abc"),
                ("field.port", "1.5"),
                ("field.tls", "maybe"),
                ("field.mode", "reckless"),
                ("field.level", "4"),
            ]),
        )
        .unwrap_err();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.reason))
            .collect();
        assert_eq!(
            text,
            [
                r#"fields.port: expected a whole number, got "1.5""#,
                r#"fields.timeout: expected a number, got "abc""#,
                r#"fields.tls: expected true or false, got "maybe""#,
                r#"fields.mode: expected one of "fast", "safe", got "reckless""#,
                r#"fields.level: expected one of "1", "2", "3", got "4""#,
            ]
        );
        for bad in ["NaN", "inf", "1e400", "0x10", "5 kg"] {
            let problems = typed_fields(&schema(), &form(&[("field.timeout", bad)])).unwrap_err();
            assert_eq!(problems[0].path, "fields.timeout", "{bad}");
        }
    }

    #[test]
    fn a_secret_field_is_never_quoted_in_a_problem() {
        let problems = typed_fields(&schema(), &form(&[("field.pin", "12x4-secret")])).unwrap_err();
        assert_eq!(problems[0].path, "fields.pin");
        assert_eq!(problems[0].reason, "expected a whole number");
        assert!(!format!("{problems:?}").contains("12x4-secret"));
    }

    #[test]
    fn a_field_the_schema_does_not_have_is_refused() {
        let problems = typed_fields(
            &schema(),
            &form(&[("field.host", "h"), ("field.hots", "x"), ("field.x", "y")]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, "fields.hots");
        assert_eq!(
            problems[0].reason,
            "not a field of this connection type (its fields: host, port, timeout, tls, mode, level, pin, password)"
        );
        assert_eq!(problems[1].path, "fields.x");
        let none = typed_fields(&json!({"type": "object"}), &form(&[("field.a", "1")]));
        assert_eq!(
            none.unwrap_err()[0].reason,
            "this connection type has no fields"
        );
    }

    #[test]
    fn fields_are_drawn_by_their_type_with_defaults_except_secrets() {
        let s = schema();
        let field = |name: &str, required: bool, posted: Option<&Form_>| {
            schema_field(name, &s["properties"][name], required, posted).into_string()
        };
        let port = field("port", true, None);
        assert!(port.contains(r#"type="number""#), "{port}");
        assert!(port.contains(r#"step="1""#), "{port}");
        assert!(
            port.contains(r#"min="1""#) && port.contains(r#"max="65535""#),
            "{port}"
        );
        assert!(port.contains(r#"value="5432""#), "{port}");
        assert!(port.contains("required"), "{port}");
        let timeout = field("timeout", false, None);
        assert!(timeout.contains(r#"step="any""#), "{timeout}");
        assert!(timeout.contains("Seconds"), "{timeout}");
        assert!(!timeout.contains("value="), "{timeout}");
        let tls = field("tls", false, None);
        assert!(
            tls.contains(r#"type="checkbox""#) && tls.contains(r#"value="true""#),
            "{tls}"
        );
        assert!(tls.contains("checked"), "{tls}");
        let mode = field("mode", false, None);
        assert!(
            mode.contains(r#"<option value="" selected>—</option>"#),
            "{mode}"
        );
        let mode = field("mode", true, None);
        assert!(!mode.contains("—"), "{mode}");
        let password = field("password", false, None);
        assert!(password.contains(r#"type="password""#), "{password}");
        assert!(!password.contains("hunter2"), "{password}");
        // A refused form comes back with what was typed, unchecked boxes unchecked, and
        // secrets empty.
        let posted = form(&[
            ("field.port", "abc"),
            ("field.mode", "safe"),
            ("field.password", "typed-secret"),
        ]);
        assert!(field("port", true, Some(&posted)).contains(r#"value="abc""#));
        assert!(!field("tls", false, Some(&posted)).contains("checked"));
        assert!(field("mode", false, Some(&posted)).contains(r#"<option value="safe" selected>"#));
        assert!(!field("password", false, Some(&posted)).contains("typed-secret"));
    }
}
