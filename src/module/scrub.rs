//! Credentials kept out of what is kept: the one function ([`Scrubber`]) that replaces every
//! value of a connection — a bearer token, an API key in a header or the query, a basic
//! password raw and as the base64 of `user:password` — by [`REDACTED`] in errors, in the
//! outputs and inputs an execution's history keeps, and in what is logged. Used by the
//! authenticated send of every app (built-in `http:*` modules and apps defined as data) for
//! their errors, and by [`super::Redactions`] for the stored history.
//!
//! Invariants:
//! - A secret is hidden in every spelling an API may echo it in: as sent, percent-encoded as
//!   a query string or form carries it (`+` or `%20` for a space), and escaped as inside a
//!   JSON string. Longer spellings are replaced first, so a secret that contains another is
//!   hidden whole.
//! - Values shorter than [`MIN_SECRET_CHARS`] are not secrets (and would hide ordinary text).
//! - A scrubber's `Debug` shows how many spellings it hides, never one of them.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::error::ModuleError;

/// What a hidden secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are never hidden.
pub const MIN_SECRET_CHARS: usize = 4;

/// What `application/x-www-form-urlencoded` (and so a URL's query pairs) leaves as it is:
/// letters, digits and `*-._`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Every spelling of `secret` an API may echo back: as sent, percent-encoded (query and form,
/// `%20` and `+` for a space, and with `~` left alone as URL encoders do) and JSON-escaped.
pub fn spellings(secret: &str) -> Vec<String> {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Vec::new();
    }
    let percent = utf8_percent_encode(secret, FORM).to_string();
    let candidates = [
        secret.to_string(),
        percent.replace("%20", "+"),
        percent.replace("%7E", "~"),
        percent.clone(),
        serde_json::to_string(secret)
            .map(|quoted| quoted[1..quoted.len() - 1].to_string())
            .unwrap_or_default(),
    ];
    let mut forms: Vec<String> = Vec::with_capacity(candidates.len());
    for form in candidates {
        if form.len() >= MIN_SECRET_CHARS && !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// The secrets of one module call or one execution, in every spelling, to hide.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first.
    forms: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} spelling(s))", self.forms.len())
    }
}

impl Scrubber {
    /// A scrubber hiding each of `secrets`.
    pub fn of<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Scrubber {
        let mut scrubber = Scrubber::default();
        for secret in secrets {
            scrubber.add(secret.as_ref());
        }
        scrubber
    }

    /// Hides `secret` too (every spelling of it).
    pub fn add(&mut self, secret: &str) {
        let mut added = false;
        for form in spellings(secret) {
            if !self.forms.contains(&form) {
                self.forms.push(form);
                added = true;
            }
        }
        if added {
            self.forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Hides every secret of `other` too.
    pub fn extend(&mut self, other: &Scrubber) {
        for form in &other.forms {
            if !self.forms.contains(form) {
                self.forms.push(form.clone());
            }
        }
        self.forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Whether it hides nothing.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every secret replaced.
    pub fn text(&self, text: &mut String) {
        for form in &self.forms {
            if text.contains(form.as_str()) {
                *text = text.replace(form.as_str(), REDACTED);
            }
        }
    }

    /// Every string in `value` (object keys aside) with every secret replaced.
    pub fn value(&self, value: &mut Value) {
        if self.forms.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|item| self.value(item)),
            Value::Object(map) => map.values_mut().for_each(|item| self.value(item)),
            _ => {}
        }
    }

    /// `error` with every secret replaced in its message and details.
    pub fn error(&self, mut error: ModuleError) -> ModuleError {
        self.text(&mut error.message);
        if let Some(details) = &mut error.details {
            self.value(details);
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_secret_is_hidden() {
        let scrubber = Scrubber::of(["k3y with/space+plus~\"q\"", "tok-1"]);
        let mut text = String::from(
            "raw k3y with/space+plus~\"q\" query k3y+with%2Fspace%2Bplus%7E%22q%22 \
             pct k3y%20with%2Fspace%2Bplus%7E%22q%22 json k3y with/space+plus~\\\"q\\\" tok-1",
        );
        scrubber.text(&mut text);
        assert_eq!(
            text,
            "raw [redacted] query [redacted] pct [redacted] json [redacted] [redacted]"
        );
        let error = ModuleError::data("echo tok-1")
            .with_details(serde_json::json!({"body": "tok-1", "nested": ["x tok-1"]}));
        let error = scrubber.error(error);
        assert_eq!(error.message, "echo [redacted]");
        assert_eq!(error.details.unwrap()["nested"][0], "x [redacted]");
        // Too short to be a secret; the scrubber's Debug shows none.
        assert!(Scrubber::of(["abc"]).is_empty());
        assert!(!format!("{scrubber:?}").contains("tok-1"));
    }
}
