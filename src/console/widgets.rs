//! Small pieces of markup the console's pages share: status badges, the CSRF field of a
//! form, one-button forms, a list of validation problems, pretty JSON.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::Value;

use super::session::Session;

pub(super) type Form_ = HashMap<String, String>;

/// `1 warning`, `2 warnings`: a count with its noun, in the plural unless it is one.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

pub(super) fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub(super) fn status_badge(status: &str) -> Markup {
    html! { span class=(format!("status status-{status}")) { (status) } }
}

pub(super) fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A one-button form posting to `action`.
pub(super) fn action_button(session: &Session, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(session))
            button class=(class) type="submit" { (label) }
        }
    }
}

pub(super) fn problems_list(problems: &[crate::scenario::Problem]) -> Markup {
    html! {
        table.list.problems {
            thead { tr { th { "Where (JSON path)" } th { "Problem" } } }
            tbody {
                @for p in problems {
                    tr { td { code { @if p.path.is_empty() { "(document)" } @else { (p.path) } } } td { (p.message) } }
                }
            }
        }
    }
}
