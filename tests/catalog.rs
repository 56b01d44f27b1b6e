//! The scenario catalog on a real store (SQLite, and PostgreSQL when
//! `SWITCHYARD_TEST_DATABASE_URL` is set): hooks follow the current version and keep their URL
//! across edits, invalid blueprints are refused with their problems before anything is stored,
//! compiled versions are cached, deletion and activation go through it and announce the change.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::backends::each_backend;
use serde_json::json;
use switchyard::apps::AppRegistry;
use switchyard::catalog::{Catalog, CatalogError, CatalogOptions};

fn catalog(store: switchyard::store::Store) -> Catalog {
    let registry = Arc::new(
        AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback()).expect("registry"),
    );
    Catalog::new(store, registry, CatalogOptions::default())
}

fn webhook_blueprint(name: &str) -> String {
    json!({"name": name, "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": name}},
        {"id": 2, "module": "util:SetVariable2",
         "mapper": {"name": "n", "scope": "roundtrip", "value": "{{1.n}}"}}]})
    .to_string()
}

fn manual_blueprint(name: &str) -> String {
    json!({"name": name, "flow": [
        {"id": 1, "module": "util:BasicTrigger"},
        {"id": 2, "module": "json:CreateJSON", "mapper": {"n": 1}}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_follow_the_current_version_and_keep_their_url() {
    each_backend(|db| async move {
        let catalog = catalog(db.store.clone());
        let created = catalog.create(&webhook_blueprint("orders")).await.unwrap();
        assert_eq!(created.version, 1);
        assert_eq!(created.name, "orders");
        assert_eq!(created.hooks.len(), 1, "{created:?}");
        let hook = created.hooks[0].clone();
        assert_eq!(hook.module, 1);
        assert_eq!(hook.path(), format!("/hooks/{}", hook.id));
        assert_eq!(
            catalog.hooks(&created.id).await.unwrap(),
            vec![hook.clone()]
        );

        // A version without a webhook trigger detaches the hook …
        let manual = catalog
            .update(&created.id, &manual_blueprint("orders"))
            .await
            .unwrap();
        assert_eq!(manual.version, 2);
        assert!(manual.hooks.is_empty(), "{manual:?}");
        assert!(catalog.hooks(&created.id).await.unwrap().is_empty());
        // … and the webhook trigger's return brings the same URL back.
        let back = catalog
            .update(&created.id, &webhook_blueprint("orders"))
            .await
            .unwrap();
        assert_eq!(back.version, 3);
        assert_eq!(back.hooks, vec![hook]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_blueprints_are_refused_before_anything_is_stored() {
    each_backend(|db| async move {
        let catalog = catalog(db.store.clone());
        let bad = json!({"name": "bad", "flow": [{"id": 1, "module": "nope:Nothing"}]});
        match catalog.create(&bad.to_string()).await {
            Err(CatalogError::Invalid(e)) => {
                let problems = e.problems();
                assert_eq!(problems[0].path, "flow[0].module", "{problems:?}");
            }
            other => panic!("expected an invalid blueprint, got {other:?}"),
        }
        // A stored scenario's name is checked with the blueprint, with its path.
        let long = "n".repeat(1_001);
        for (name, expected) in [
            ("", "needs a name"),
            ("   ", "needs a name"),
            ("a\u{0}b", "U+0000"),
            ("two\nlines", "U+000A"),
            (long.as_str(), "1001 bytes long; at most 1000"),
        ] {
            match catalog.create(&manual_blueprint(name)).await {
                Err(CatalogError::Invalid(e)) => {
                    let problems = e.problems();
                    assert_eq!(problems[0].path, "name", "{name:?}: {problems:?}");
                    assert!(
                        problems[0].message.contains(expected),
                        "{name:?}: {problems:?}"
                    );
                }
                other => panic!("expected the name {name:?} refused, got {other:?}"),
            }
        }
        assert!(db.store.list_scenarios().await.unwrap().is_empty());
        // The deployment's minimum interval applies to new blueprints.
        let every_second = json!({"name": "fast", "scheduling": {"type": "indefinitely", "interval": 1},
                                  "flow": [{"id": 1, "module": "json:CreateJSON", "mapper": {"a": 1}}]});
        assert!(matches!(
            catalog.create(&every_second.to_string()).await,
            Err(CatalogError::Invalid(_))
        ));
        let lenient = Catalog::new(
            db.store.clone(),
            catalog.registry().clone(),
            CatalogOptions {
                min_interval: 1,
                ..CatalogOptions::default()
            },
        );
        lenient.create(&every_second.to_string()).await.unwrap();
        // An unknown scenario is not found, not invalid.
        let missing = catalog
            .update("0123456789abcdef0123456789abcdef", &manual_blueprint("x"))
            .await
            .unwrap_err();
        assert!(missing.is_not_found(), "{missing:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_versions_are_cached_and_changes_announced() {
    each_backend(|db| async move {
        let catalog = catalog(db.store.clone());
        let changes = catalog.changes();
        let created = catalog.create(&manual_blueprint("cached")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), changes.notified())
            .await
            .expect("creating a scenario is announced");
        let first = catalog.compiled(&created.id, 1).await.unwrap().unwrap();
        let again = catalog.current(&created.id).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "a version is compiled once");
        // Another catalog (another process) compiles the stored version itself.
        let other = self::catalog(db.store.clone());
        let theirs = other.compiled(&created.id, 1).await.unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &theirs));
        assert_eq!(theirs.name, "cached");

        let row = catalog.set_active(&created.id, true).await.unwrap();
        assert!(row.active);
        tokio::time::timeout(Duration::from_secs(1), changes.notified())
            .await
            .expect("activation is announced");
        catalog.delete(&created.id).await.unwrap();
        assert!(
            catalog
                .compiled(&created.id, 1)
                .await
                .unwrap_err()
                .is_not_found()
        );
    })
    .await;
}
