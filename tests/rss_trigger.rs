//! `rss:TriggerNewArticle` against a real axum server on 127.0.0.1: RSS 2.0 and Atom parsing
//! into Make's output fields, the per-cycle limit and the next cycle, items sharing a date,
//! feeds that only list the newest items, where to start, errors, and how the executor threads
//! the trigger state through cycles and hands back only what committed.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use switchyard::engine::{self, RunInput, Status};
use switchyard::module::error::ErrorKind;
use switchyard::module::polling::{PollRequest, Polled, TriggerState};
use switchyard::module::{Invocation, Registry};
use switchyard::scenario;

const MODULE: &str = "rss:TriggerNewArticle";

/// One feed item.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    title: String,
    /// Seconds since the epoch.
    date: i64,
}

fn item(id: &str, date: i64) -> Item {
    Item {
        id: id.into(),
        title: format!("Title {id}"),
        date,
    }
}

/// The items the server publishes (oldest first) and how many of the newest it lists.
#[derive(Default)]
struct Feed {
    items: Vec<Item>,
    window: Option<usize>,
    authorizations: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Feed>>;

fn listed(feed: &Feed) -> Vec<Item> {
    let mut items = feed.items.clone();
    items.reverse(); // newest first, as feeds list them
    if let Some(n) = feed.window {
        items.truncate(n);
    }
    items
}

fn date(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn rss_document(items: &[Item]) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:media="http://search.yahoo.com/mrss/">
<channel><title>Test channel</title><link>http://example.test/</link><description>d</description>
"#,
    );
    for i in items {
        xml.push_str(&format!(
            "<item><title>{title}</title><link>http://example.test/{id}</link>\
             <guid isPermaLink=\"false\">{id}</guid><pubDate>{date}</pubDate>\
             <description>About {id}</description><dc:creator>Ann Author</dc:creator>\
             <category>news</category><category>tests</category>\
             <comments>http://example.test/{id}#comments</comments>\
             {enclosure}</item>\n",
            title = i.title,
            id = i.id,
            date = date(i.date).to_rfc2822(),
            enclosure = if i.id.starts_with("img") {
                format!("<enclosure url=\"http://example.test/{}.png\" type=\"image/png\"/>", i.id)
            } else {
                format!(
                    "<enclosure url=\"http://example.test/{}.mp3\" length=\"1234\" type=\"audio/mpeg\"/>",
                    i.id
                )
            },
        ));
    }
    xml.push_str("</channel></rss>\n");
    xml
}

fn atom_document(items: &[Item]) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom channel</title>
<link href="http://example.test/atom/"/><id>urn:test:feed</id><updated>2024-01-01T00:00:00Z</updated>
"#,
    );
    for i in items {
        xml.push_str(&format!(
            "<entry><title>{title}</title><id>urn:test:{id}</id>\
             <link href=\"http://example.test/a/{id}\"/>\
             <published>{date}</published><updated>{date}</updated>\
             <author><name>Bob Writer</name></author>\
             <summary>Summary of {id}</summary>\
             <content type=\"html\">&lt;p&gt;Body of {id}&lt;/p&gt;</content>\
             <category term=\"atom-cat\"/></entry>\n",
            title = i.title,
            id = i.id,
            date = date(i.date).to_rfc3339(),
        ));
    }
    xml.push_str("</feed>\n");
    xml
}

async fn rss(State(feed): State<Shared>, headers: HeaderMap) -> Response {
    let mut feed = feed.lock().unwrap();
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string());
    feed.authorizations.push(auth);
    (
        [(header::CONTENT_TYPE, "application/rss+xml")],
        rss_document(&listed(&feed)),
    )
        .into_response()
}

async fn atom(State(feed): State<Shared>) -> Response {
    let feed = feed.lock().unwrap();
    (
        [(header::CONTENT_TYPE, "application/atom+xml")],
        atom_document(&listed(&feed)),
    )
        .into_response()
}

/// Basic auth `reader:s3cret-pw` or 401.
async fn private(State(feed): State<Shared>, headers: HeaderMap) -> Response {
    // base64("reader:s3cret-pw")
    let expected = "Basic cmVhZGVyOnMzY3JldC1wdw==";
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected)
    {
        return (StatusCode::UNAUTHORIZED, "who are you?").into_response();
    }
    rss(State(feed), headers).await
}

/// Every item's side effect: 500 for ids starting with `bad`, else 200.
async fn sink(Path(id): Path<String>) -> Response {
    if id.starts_with("bad") {
        (StatusCode::INTERNAL_SERVER_ERROR, "refused").into_response()
    } else {
        (StatusCode::OK, "ok").into_response()
    }
}

async fn start() -> (String, Shared) {
    let feed: Shared = Default::default();
    let app = Router::new()
        .route("/rss", get(rss))
        .route("/atom", get(atom))
        .route("/private", get(private))
        .route(
            "/echoing",
            get(|headers: HeaderMap| async move {
                let sent = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (StatusCode::FORBIDDEN, format!("forbidden: you sent {sent}"))
            }),
        )
        .route("/sink/{id}", get(sink).post(sink))
        .route(
            "/html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body>not a feed</body></html>",
                )
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such feed") }),
        )
        .with_state(feed.clone());
    let addr = common::server::serve(app).await;
    (format!("http://{addr}"), feed)
}

fn publish(feed: &Shared, items: impl IntoIterator<Item = Item>) {
    feed.lock().unwrap().items.extend(items);
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// One poll through the `Module` trait, as the executor makes it.
async fn poll(
    registry: &dyn Registry,
    parameters: &Map<String, Value>,
    state: &TriggerState,
    limit: usize,
) -> Result<Polled, switchyard::module::error::ModuleError> {
    let module = registry.module(MODULE).expect("registered");
    let invocation = Invocation {
        module_id: 1,
        module: MODULE,
        parameters,
        mapper: json!({}),
        context: &switchyard::module::ExecutionContext::new("test"),
    };
    module.poll(invocation, PollRequest { state, limit }).await
}

fn ids(bundles: &[Value]) -> Vec<String> {
    bundles
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn range(prefix: &str, from: usize, to: usize) -> Vec<String> {
    (from..=to).map(|n| format!("{prefix}{n}")).collect()
}

#[tokio::test]
async fn rss_items_have_makes_fields_oldest_first() {
    let (base, feed) = start().await;
    publish(
        &feed,
        [item("a1", 1_700_000_000), item("img2", 1_700_000_100)],
    );
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let p = params(
        json!({"url": format!("{base}/rss"), "maxResults": 10, "epoch": "all",
        "gzip": true, "include": [], "username": "", "password": ""}),
    );
    let polled = poll(&registry, &p, &TriggerState::default(), 10)
        .await
        .unwrap();
    assert_eq!(ids(&polled.bundles), ["a1", "img2"]);
    assert!(!polled.more);
    let first = &polled.bundles[0];
    let expected = json!({
        "id": "a1",
        "title": "Title a1",
        "description": "About a1",
        "summary": "About a1",
        "author": "Ann Author",
        "url": "http://example.test/a1",
        "dateCreated": "2023-11-14T22:13:20.000Z",
        "dateUpdated": "2023-11-14T22:13:20.000Z",
        "comments": "http://example.test/a1#comments",
        "image": null,
        "categories": ["news", "tests"],
        "source": {"name": "Test channel", "url": "http://example.test/"},
        "enclosures": [{"url": "http://example.test/a1.mp3", "type": "audio/mpeg", "length": 1234}],
    });
    let diffs = common::json_diff(&expected, first);
    assert!(diffs.is_empty(), "{diffs:?}\n{first:#}");
    let second = &polled.bundles[1];
    assert_eq!(
        second["image"],
        json!({"name": null, "url": "http://example.test/img2.png"})
    );
    assert_eq!(
        second["enclosures"],
        json!([{"url": "http://example.test/img2.png", "type": "image/png", "length": null}])
    );
    assert_eq!(polled.change.new_seen_ids, ["a1", "img2"]);
    assert_eq!(
        polled.change.cursor,
        Some(json!({"date": "2023-11-14T22:15:00.000Z", "ids": ["img2"]}))
    );
    // No credentials configured: none sent.
    assert_eq!(feed.lock().unwrap().authorizations, [None]);
}

#[tokio::test]
async fn atom_entries_have_makes_fields() {
    let (base, feed) = start().await;
    publish(
        &feed,
        [item("e1", 1_704_067_200), item("e2", 1_704_067_260)],
    );
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let p = params(json!({"url": format!("{base}/atom"), "maxResults": 1, "epoch": "all"}));
    let polled = poll(&registry, &p, &TriggerState::default(), 1)
        .await
        .unwrap();
    assert_eq!(ids(&polled.bundles), ["urn:test:e1"]);
    assert!(polled.more, "e2 is left for the next cycle");
    let expected = json!({
        "id": "urn:test:e1",
        "title": "Title e1",
        "description": "<p>Body of e1</p>",
        "summary": "Summary of e1",
        "author": "Bob Writer",
        "url": "http://example.test/a/e1",
        "dateCreated": "2024-01-01T00:00:00.000Z",
        "dateUpdated": "2024-01-01T00:00:00.000Z",
        "comments": null,
        "image": null,
        "categories": ["atom-cat"],
        "source": {"name": "Atom channel", "url": "http://example.test/atom/"},
        "enclosures": [],
    });
    let diffs = common::json_diff(&expected, &polled.bundles[0]);
    assert!(diffs.is_empty(), "{diffs:?}\n{:#}", polled.bundles[0]);
    let mut state = TriggerState::default();
    state.apply(&polled.change);
    let next = poll(&registry, &p, &state, 1).await.unwrap();
    assert_eq!(ids(&next.bundles), ["urn:test:e2"]);
    assert!(!next.more);
}

/// Polls `times` times, applying each change as the store would; returns the ids per poll.
async fn polls(
    registry: &dyn Registry,
    p: &Map<String, Value>,
    state: &mut TriggerState,
    limit: usize,
) -> Vec<String> {
    let polled = poll(registry, p, state, limit).await.unwrap();
    state.apply(&polled.change);
    ids(&polled.bundles)
}

#[tokio::test]
async fn limit_splits_items_sharing_a_date_and_each_is_emitted_once() {
    let (base, feed) = start().await;
    // Five items with one date, then two later ones.
    publish(
        &feed,
        (1..=5).map(|n| item(&format!("s{n}"), 1_700_000_000)),
    );
    publish(
        &feed,
        [item("t1", 1_700_000_500), item("t2", 1_700_000_500)],
    );
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let p = params(json!({"url": format!("{base}/rss"), "maxResults": 2, "epoch": "all"}));
    let mut state = TriggerState::default();
    let mut all = Vec::new();
    for _ in 0..5 {
        all.extend(polls(&registry, &p, &mut state, 2).await);
    }
    let mut expected = range("s", 1, 5);
    expected.extend(["t1".to_string(), "t2".to_string()]);
    assert_eq!(all, expected);
    // Nothing more, and a new item at the same date as the cursor still counts.
    publish(&feed, [item("t3", 1_700_000_500)]);
    assert_eq!(polls(&registry, &p, &mut state, 2).await, ["t3"]);
    assert!(polls(&registry, &p, &mut state, 2).await.is_empty());
}

#[tokio::test]
async fn a_feed_listing_only_the_newest_items_loses_nothing() {
    let (base, feed) = start().await;
    feed.lock().unwrap().window = Some(5);
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let p = params(json!({"url": format!("{base}/rss"), "maxResults": 3, "epoch": "all"}));
    let mut state = TriggerState::default();
    let mut all = Vec::new();
    let mut next = 1;
    // Items appear in bursts of 0–3 between polls; the feed lists only the newest 5.
    for burst in [3, 0, 2, 3, 1, 3, 3, 0, 2, 3] {
        publish(
            &feed,
            (next..next + burst).map(|n| item(&format!("n{n}"), 1_700_000_000 + n as i64 * 60)),
        );
        next += burst;
        all.extend(polls(&registry, &p, &mut state, 3).await);
    }
    all.extend(polls(&registry, &p, &mut state, 3).await);
    assert_eq!(all, range("n", 1, next - 1));
}

#[tokio::test]
async fn where_to_start() {
    let (base, feed) = start().await;
    publish(
        &feed,
        [item("old1", 1_600_000_000), item("old2", 1_700_000_000)],
    );
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let url = format!("{base}/rss");

    // Default: from now on. The first poll emits nothing but records the start.
    let p = params(json!({"url": url, "maxResults": 10}));
    let mut state = TriggerState::default();
    assert!(polls(&registry, &p, &mut state, 10).await.is_empty());
    assert!(
        !state.is_fresh(),
        "the start is recorded even without items"
    );
    publish(&feed, [item("new1", 1_700_000_100)]);
    assert_eq!(polls(&registry, &p, &mut state, 10).await, ["new1"]);

    // From now on with an empty feed: everything published later is new.
    let (base2, feed2) = start().await;
    let p2 = params(json!({"url": format!("{base2}/rss"), "maxResults": 10, "epoch": "now"}));
    let mut state2 = TriggerState::default();
    assert!(polls(&registry, &p2, &mut state2, 10).await.is_empty());
    publish(&feed2, [item("x", 1_000)]);
    assert_eq!(polls(&registry, &p2, &mut state2, 10).await, ["x"]);

    // All.
    let p = params(json!({"url": url, "maxResults": 10, "epoch": "all"}));
    let mut state = TriggerState::default();
    assert_eq!(
        polls(&registry, &p, &mut state, 10).await,
        ["old1", "old2", "new1"]
    );

    // Since a date.
    let p = params(json!({"url": url, "maxResults": 10, "epoch": "2023-11-14T22:13:20Z"}));
    let mut state = TriggerState::default();
    assert_eq!(polls(&registry, &p, &mut state, 10).await, ["old2", "new1"]);

    // The start is only read while the trigger has no state.
    let p = params(json!({"url": url, "maxResults": 10, "epoch": "all"}));
    assert!(polls(&registry, &p, &mut state, 10).await.is_empty());
}

#[tokio::test]
async fn basic_auth_is_sent_and_the_password_never_shows() {
    let (base, feed) = start().await;
    publish(&feed, [item("p1", 1_700_000_000)]);
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let ok = params(
        json!({"url": format!("{base}/private"), "maxResults": 5, "epoch": "all",
        "username": "reader", "password": "s3cret-pw"}),
    );
    let polled = poll(&registry, &ok, &TriggerState::default(), 5)
        .await
        .unwrap();
    assert_eq!(ids(&polled.bundles), ["p1"]);

    let wrong = params(json!({"url": format!("{base}/private"), "maxResults": 5,
        "username": "reader", "password": "not-the-pw-xyz"}));
    let err = poll(&registry, &wrong, &TriggerState::default(), 5)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RuntimeError);
    assert!(err.message.contains("401"), "{err:?}");
    let shown = format!("{err:?} {}", serde_json::to_string(&err).unwrap());
    assert!(!shown.contains("not-the-pw-xyz"), "{shown}");

    // A server that echoes the credential in its error page: neither the password nor the
    // header's base64 of `reader:s3cret-pw` is in the error.
    let echoing = params(json!({"url": format!("{base}/echoing"), "maxResults": 5,
        "username": "reader", "password": "s3cret-pw"}));
    let err = poll(&registry, &echoing, &TriggerState::default(), 5)
        .await
        .unwrap_err();
    let shown = format!("{err:?} {}", serde_json::to_string(&err).unwrap());
    assert!(shown.contains("403"), "{shown}");
    assert!(shown.contains("you sent Basic [redacted]"), "{shown}");
    assert!(!shown.contains("cmVhZGVyOnMzY3JldC1wdw=="), "{shown}");
}

#[tokio::test]
async fn errors_say_what_was_expected() {
    let (base, _feed) = start().await;
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let state = TriggerState::default();
    let cases = [
        (format!("{base}/missing"), ErrorKind::RuntimeError, "404"),
        (
            format!("{base}/html"),
            ErrorKind::DataError,
            "not an RSS or Atom feed",
        ),
        // A port nobody listens on.
        (
            "http://127.0.0.1:9/feed".to_string(),
            ErrorKind::ConnectionError,
            "could not read the feed from 127.0.0.1",
        ),
        (
            "not a url".to_string(),
            ErrorKind::InvalidConfigurationError,
            "parameters.url",
        ),
        (
            "ftp://example.test/feed".to_string(),
            ErrorKind::InvalidConfigurationError,
            "http://",
        ),
    ];
    for (url, kind, text) in cases {
        let p = params(json!({"url": url, "maxResults": 5, "epoch": "all"}));
        let err = match poll(&registry, &p, &state, 5).await {
            Ok(polled) => panic!("{url}: expected an error, got {polled:?}"),
            Err(e) => e,
        };
        assert_eq!(err.kind, kind, "{url}: {err:?}");
        assert!(err.message.contains(text), "{url}: {err:?}");
    }
    // A cursor another module wrote.
    let p = params(json!({"url": format!("{base}/rss"), "maxResults": 5}));
    let foreign = TriggerState {
        cursor: Some(json!({"page": 3})),
        seen_ids: vec![],
    };
    let err = poll(&registry, &p, &foreign, 5).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InconsistencyError);
    assert!(err.message.contains("reset-trigger"), "{err:?}");
}

#[test]
fn validation_names_the_bad_parameters() {
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let blueprint = |parameters: Value| {
        json!({"name": "rss", "flow": [
            {"id": 1, "module": MODULE, "version": 4, "parameters": parameters, "mapper": {}}
        ]})
        .to_string()
    };
    let good = json!({"url": "https://example.test/feed", "maxResults": 10, "gzip": true,
        "include": [], "username": "", "password": ""});
    scenario::load(&blueprint(good), &registry).expect("Make's export shape loads");
    let bad = [
        (json!({"maxResults": 1}), "flow[0].parameters.url"),
        (
            json!({"url": "https://x.test/", "maxResults": 0}),
            "flow[0].parameters.maxResults",
        ),
        (
            json!({"url": "https://x.test/", "epoch": "soon"}),
            "flow[0].parameters.epoch",
        ),
        (
            json!({"url": "https://x.test/", "include": "x"}),
            "flow[0].parameters.include",
        ),
        (
            json!({"url": "https://x.test/", "password": 5}),
            "flow[0].parameters.password",
        ),
    ];
    for (parameters, path) in bad {
        let err = scenario::load(&blueprint(parameters.clone()), &registry)
            .expect_err(&parameters.to_string());
        let problems = err.problems();
        assert!(
            problems.iter().any(|p| p.path == path),
            "{parameters}: expected a problem at {path}, got {problems:?}"
        );
    }
    // A trigger can only come first.
    let late = json!({"name": "late", "flow": [
        {"id": 1, "module": "util:SetVariable2", "mapper": {"name": "a", "scope": "roundtrip", "value": 1}},
        {"id": 2, "module": MODULE, "parameters": {"url": "https://x.test/"}}
    ]});
    assert!(scenario::load(&late.to_string(), &registry).is_err());
}

// ---------------------------------------------------------------------------------------------
// Through the executor

fn scenario_text(base: &str, max_results: u32, roundtrips: u32, dlq: bool) -> String {
    json!({
        "name": "rss to sink",
        "flow": [
            {"id": 1, "module": MODULE, "version": 4,
             "parameters": {"url": format!("{base}/rss"), "maxResults": max_results,
                            "epoch": "all", "gzip": true, "include": [],
                            "username": "", "password": ""},
             "mapper": {}},
            {"id": 2, "module": "http:ActionSendData", "version": 3,
             "mapper": {"url": format!("{base}/sink/{{{{1.id}}}}"), "method": "post",
                        "handleErrors": true}}
        ],
        "metadata": {"scenario": {"roundtrips": roundtrips, "dlq": dlq}}
    })
    .to_string()
}

async fn run(scenario: &scenario::Scenario, state: &TriggerState) -> engine::Report {
    let input = RunInput {
        context: switchyard::module::ExecutionContext::new("test"),
        trigger: Some(state.clone()),
        ..RunInput::default()
    };
    engine::run(scenario, input).await
}

fn trigger_ids(report: &engine::Report) -> Vec<String> {
    report
        .log
        .iter()
        .filter(|e| e.module == 1)
        .map(|e| e.output["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn cycles_pass_the_state_on_and_the_report_carries_what_committed() {
    let (base, feed) = start().await;
    publish(
        &feed,
        (1..=7).map(|n| item(&format!("c{n}"), 1_700_000_000 + n)),
    );
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let s = scenario::load(&scenario_text(&base, 2, 3, false), &registry).unwrap();

    let first = run(&s, &TriggerState::default()).await;
    assert_eq!(first.status, Status::Success);
    assert_eq!(first.cycles, 3);
    assert_eq!(trigger_ids(&first), range("c", 1, 6));
    // One operation per cycle for the trigger, one per item for the action.
    assert_eq!(first.operations, 3 + 6);
    let change = first.trigger.clone().expect("a committed change");
    assert_eq!(change.new_seen_ids, range("c", 1, 6));

    let mut state = TriggerState::default();
    state.apply(&change);
    let second = run(&s, &state).await;
    assert_eq!(trigger_ids(&second), ["c7"]);
    assert_eq!(second.cycles, 1, "no cycle after the feed ran out");
    state.apply(second.trigger.as_ref().unwrap());

    let third = run(&s, &state).await;
    assert!(trigger_ids(&third).is_empty());
    assert_eq!(third.cycles, 1);
    assert_eq!(third.operations, 1);
}

#[tokio::test]
async fn a_rolled_back_cycle_commits_nothing() {
    let (base, feed) = start().await;
    publish(
        &feed,
        [
            item("ok1", 1_700_000_001),
            item("bad2", 1_700_000_002),
            item("ok3", 1_700_000_003),
        ],
    );
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();

    // One cycle with everything: the error rolls it back, nothing to commit.
    let s = scenario::load(&scenario_text(&base, 10, 1, false), &registry).unwrap();
    let report = run(&s, &TriggerState::default()).await;
    assert_eq!(report.status, Status::Error);
    assert_eq!(report.error.as_ref().unwrap().module, 2);
    assert!(report.trigger.is_none(), "{:?}", report.trigger);

    // One item per cycle: cycle 1 committed, cycle 2 rolled back, cycle 3 never ran.
    let s = scenario::load(&scenario_text(&base, 1, 3, false), &registry).unwrap();
    let report = run(&s, &TriggerState::default()).await;
    assert_eq!(report.status, Status::Error);
    assert_eq!(report.cycles, 2);
    let change = report.trigger.clone().expect("cycle 1 committed");
    assert_eq!(change.new_seen_ids, ["ok1"]);
    let mut state = TriggerState::default();
    state.apply(&change);
    // The next execution reads bad2 again: it was not skipped.
    let again = run(&s, &state).await;
    assert_eq!(trigger_ids(&again), ["bad2"]);

    // With incomplete executions on, the failing bundle is parked and the cycle commits.
    let s = scenario::load(&scenario_text(&base, 10, 1, true), &registry).unwrap();
    let report = run(&s, &TriggerState::default()).await;
    assert_eq!(report.status, Status::Incomplete);
    assert_eq!(report.incomplete.len(), 1);
    assert_eq!(
        report.trigger.as_ref().unwrap().new_seen_ids,
        ["ok1", "bad2", "ok3"]
    );
}

#[tokio::test]
async fn a_failing_poll_commits_nothing() {
    let (base, _feed) = start().await;
    let registry =
        switchyard::apps::AppRegistry::build(switchyard::apps::AppOptions::allowing_loopback())
            .unwrap();
    let text = scenario_text(&base, 5, 2, false).replace("/rss", "/missing");
    let s = scenario::load(&text, &registry).unwrap();
    let report = run(&s, &TriggerState::default()).await;
    assert_eq!(report.status, Status::Error);
    assert_eq!(report.error.as_ref().unwrap().module, 1);
    assert!(report.trigger.is_none());
}
