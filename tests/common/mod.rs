//! Helpers shared by the integration tests: JSON matching with wildcards and a loopback
//! HTTP server that stands in for the third-party APIs scenarios call.

#![allow(dead_code)]

pub mod backends;
pub mod chatbot;
pub mod modules;
pub mod multipart;
pub mod oauth;
pub mod prism;
pub mod rss;
pub mod server;

use serde_json::Value;

/// The backend matrix of the service tests (`tests/service/harness.rs`): for each named test
/// `async fn name(db: TestDb)` of the invoking file, `sqlite::name` on a fresh SQLite data
/// directory and `postgres::name` on a fresh PostgreSQL database (run when
/// `SWITCHYARD_TEST_DATABASE_URL` is set, skipped otherwise). `both: [...], postgres_only:
/// [...]` also makes `postgres::name` alone for tests that need several processes on one
/// database. The invoking file has `TestDb` and `Backend` in scope.
#[allow(unused_macros)]
macro_rules! backend_tests {
    (both: [$($both:ident),* $(,)?], postgres_only: [$($pg:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    let db = super::TestDb::new(super::Backend::Sqlite)
                        .await
                        .expect("a SQLite database");
                    super::$both(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    if let Some(db) = super::TestDb::new(super::Backend::Postgres).await {
                        super::$both(db).await;
                    }
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $pg() {
                    if let Some(db) = super::TestDb::new(super::Backend::Postgres).await {
                        super::$pg(db).await;
                    }
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::common::backend_tests!(both: [$($name),*], postgres_only: []);
    };
}
#[allow(unused_imports)]
pub(crate) use backend_tests;

/// Compares `actual` with `expected`, where the string `"$any"` in `expected` matches any
/// value. Returns every difference as `path: expected X, got Y`.
pub fn json_diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    diff_at("$", expected, actual, &mut diffs);
    diffs
}

fn diff_at(path: &str, expected: &Value, actual: &Value, diffs: &mut Vec<String>) {
    match (expected, actual) {
        (Value::String(s), _) if s == "$any" => {}
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff_at(&format!("{path}.{k}"), ev, av, diffs),
                    None => diffs.push(format!("{path}.{k}: expected {ev}, missing")),
                }
            }
            for k in a.keys().filter(|k| !e.contains_key(*k)) {
                diffs.push(format!("{path}.{k}: unexpected {}", a[k]));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                diffs.push(format!(
                    "{path}: expected {} items, got {}: {actual}",
                    e.len(),
                    a.len()
                ));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_at(&format!("{path}[{i}]"), ev, av, diffs);
            }
        }
        (e, a) if e == a => {}
        (e, a) => diffs.push(format!("{path}: expected {e}, got {a}")),
    }
}

#[test]
fn wildcard_and_differences() {
    use serde_json::json;
    assert!(
        json_diff(
            &json!({"a": "$any", "b": [1]}),
            &json!({"a": {"x": 1}, "b": [1]})
        )
        .is_empty()
    );
    assert_eq!(
        json_diff(&json!({"a": 1}), &json!({"a": 2, "c": 3})).len(),
        2
    );
    assert_eq!(json_diff(&json!([1, 2]), &json!([1])).len(), 1);
}
pub mod connections;
