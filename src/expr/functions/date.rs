//! date functions (TEMPORARY: replaced by the date-function branch at merge).
use super::Function;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn lookup(_name: &str) -> Option<Function> {
    None
}

pub fn to_datetime(value: &Value, _tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        Value::Number(n) => DateTime::from_timestamp_millis(n.as_i64()?),
        _ => None,
    }
}
