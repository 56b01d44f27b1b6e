//! The ChatBot app (`modules/chatbot.json`) run by the generic interpreter against the fake
//! ChatBot API (`common::chatbot`) on 127.0.0.1:
//! - every module: happy path, 401, 404, 429 retried (with `Retry-After`), 500 retried, and
//!   input checked before any request (the fake sees no call);
//! - Search Users and List Stories paging across 3+ pages with a limit that stops mid-page;
//! - Create a User: one POST then the created user's GET, exactly one user created, also when a
//!   500 was retried; Update only changes the given fields;
//! - Make an API Call: the relative-URL guard (each refused form), headers and query, the auth
//!   header on every request and never overridable;
//! - a planted token never in an error message or a `Debug` output;
//! - Watch Users: the cursor across polls (start now / since / all, same timestamps, pages);
//! - Watch New Messages: attach (the fake verifies the hook), verify, delivery ids, detach;
//! - the connection test request, and scenarios run through the engine with a
//!   `ConnectionsHandle` in the execution's extensions (missing or unknown connection).

mod common;

use common::modules::context_with;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use common::chatbot::{FakeChatBot, Fault, chatbot_date, epoch};
use serde_json::{Map, Value, json};
use switchyard::apps::{AppOptions, AppRegistry};
use switchyard::engine::{self, RunInput, Status};
use switchyard::module::connection::{Connection, Secrets};
use switchyard::module::polling::{PollRequest, Polled, TriggerState};
use switchyard::module::{
    ErrorKind, ExecutionContext, HookRequest, HookTarget, Invocation, Module, ModuleError, Registry,
};
use switchyard::scenario;

const TOKEN: &str = "planted-s3cret-token-7f3a9c";

/// Serves one stored connection, as the connections layer would.
fn connection(base_url: &str, token: &str) -> Connection {
    Connection {
        id: "1".into(),
        name: "bot".into(),
        app: "chatbot".into(),
        kind: "token".into(),
        fields: Secrets(
            json!({"token": token, "baseUrl": base_url})
                .as_object()
                .cloned()
                .unwrap(),
        ),
    }
}

/// The fake, the registry and a context whose connection `bot` holds the fake's token.
struct Bot {
    fake: FakeChatBot,
    registry: AppRegistry,
    context: ExecutionContext,
}

impl Bot {
    async fn start() -> Bot {
        let fake = FakeChatBot::start(TOKEN).await;
        let registry = AppRegistry::build(AppOptions::allowing_loopback()).unwrap();
        let context = context_with(connection(&fake.base_url, TOKEN));
        Bot {
            fake,
            registry,
            context,
        }
    }

    fn module(&self, name: &str) -> Arc<dyn Module> {
        self.registry
            .module(&format!("chatbot:{name}"))
            .unwrap_or_else(|| panic!("chatbot:{name} is served"))
    }

    async fn call(&self, name: &str, mapper: Value) -> Result<Vec<Value>, ModuleError> {
        self.call_in(name, mapper, &self.context).await
    }

    async fn call_in(
        &self,
        name: &str,
        mapper: Value,
        context: &ExecutionContext,
    ) -> Result<Vec<Value>, ModuleError> {
        let module = self.module(name);
        let parameters = params(json!({"__IMTCONN__": "bot"}));
        let type_name = format!("chatbot:{name}");
        module
            .call(Invocation {
                module_id: 2,
                module: &type_name,
                parameters: &parameters,
                mapper,
                context,
            })
            .await
    }

    async fn one(&self, name: &str, mapper: Value) -> Value {
        let mut out = self
            .call(name, mapper)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(out.len(), 1, "{name}: {out:?}");
        out.remove(0)
    }

    /// A context whose connection holds a token the fake refuses.
    fn wrong_token(&self) -> ExecutionContext {
        context_with(connection(&self.fake.base_url, "not-the-token"))
    }
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn ids(bundles: &[Value]) -> Vec<String> {
    bundles
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts the token appears nowhere in `error` (message, details, Debug, Display).
fn assert_no_token(error: &ModuleError) {
    let shown = format!(
        "{error:?} {error} {}",
        serde_json::to_string(error).unwrap()
    );
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
}

// ---------------------------------------------------------------------------------------------
// Every module: happy path, 401, 404, 429 and 500 retried

/// A module call to try: its mapper, and the method and path of the request a fault is put on.
struct Case {
    module: &'static str,
    mapper: Value,
    method: &'static str,
    path: String,
    /// The mapper with an unknown id (404), for modules that take one.
    unknown: Option<Value>,
}

fn cases(user: &str, story: &str) -> Vec<Case> {
    let unknown_user = "000000000000000000000000";
    vec![
        Case {
            module: "GetUser",
            mapper: json!({"userId": user}),
            method: "GET",
            path: format!("/users/{user}"),
            unknown: Some(json!({"userId": unknown_user})),
        },
        Case {
            module: "SearchUsers",
            mapper: json!({"limit": 5}),
            method: "GET",
            path: "/users".into(),
            unknown: Some(json!({"after": unknown_user, "limit": 5})),
        },
        Case {
            module: "CreateUser",
            mapper: json!({"email": "new@example.com"}),
            method: "POST",
            path: "/users".into(),
            unknown: None,
        },
        Case {
            module: "UpdateUser",
            mapper: json!({"userId": user, "city": "Brno"}),
            method: "PUT",
            path: format!("/users/{user}"),
            unknown: Some(json!({"userId": unknown_user, "city": "Brno"})),
        },
        Case {
            module: "BanUser",
            mapper: json!({"userId": user, "operation": "ban"}),
            method: "PUT",
            path: format!("/users/{user}/ban"),
            unknown: Some(json!({"userId": unknown_user, "operation": "ban"})),
        },
        Case {
            module: "ListStories",
            mapper: json!({"limit": 5}),
            method: "GET",
            path: "/v2/stories".into(),
            unknown: None,
        },
        Case {
            module: "GetStory",
            mapper: json!({"storyId": story}),
            method: "GET",
            path: format!("/v2/stories/{story}"),
            unknown: Some(json!({"storyId": unknown_user})),
        },
        Case {
            module: "CreateStory",
            mapper: json!({"name": "Welcome", "description": "Greets"}),
            method: "POST",
            path: "/v2/stories".into(),
            unknown: None,
        },
        Case {
            module: "UpdateStory",
            mapper: json!({"storyId": story, "name": "Renamed"}),
            method: "PUT",
            path: format!("/v2/stories/{story}"),
            unknown: Some(json!({"storyId": unknown_user, "name": "Renamed"})),
        },
        Case {
            module: "MakeApiCall",
            mapper: json!({"url": "/users", "method": "GET"}),
            method: "GET",
            path: "/users".into(),
            unknown: Some(json!({"url": "/users/000000000000000000000000"})),
        },
    ]
}

#[tokio::test]
async fn every_module_succeeds_retries_429_and_500_and_maps_401_and_404() {
    let bot = Bot::start().await;
    let user = bot.fake.add_user(Some("ann@example.com"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let story = bot.fake.add_story("Hello", "Greets")["id"]
        .as_str()
        .unwrap()
        .to_string();
    for case in cases(&user, &story) {
        let name = case.module;
        let happy = bot.call(name, case.mapper.clone()).await;
        assert!(
            happy.as_ref().is_ok_and(|b| !b.is_empty()),
            "{name}: {happy:?}"
        );

        // 429 with Retry-After: waited for, retried, succeeded.
        bot.fake
            .fail_next(case.method, &case.path, 1, Fault::rate_limited(1));
        let before = bot.fake.calls(case.method, &case.path);
        let started = Instant::now();
        let retried = bot.call(name, case.mapper.clone()).await;
        assert!(retried.is_ok(), "{name} after 429: {retried:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{name}: Retry-After not honoured"
        );
        assert!(
            bot.fake.calls(case.method, &case.path) >= before + 2,
            "{name}"
        );

        // 500 twice: retried with backoff, succeeded.
        bot.fake
            .fail_next(case.method, &case.path, 2, Fault::server_error());
        let retried = bot.call(name, case.mapper.clone()).await;
        assert!(retried.is_ok(), "{name} after 500: {retried:?}");

        // 401: the connection's token is refused.
        let err = bot
            .call_in(name, case.mapper.clone(), &bot.wrong_token())
            .await
            .unwrap_err();
        assert_eq!(
            err.kind,
            ErrorKind::InvalidAccessTokenError,
            "{name}: {err:?}"
        );
        assert_eq!(err.message, "[401] Invalid access token", "{name}");

        // 404 / 400: the API's message as a DataError.
        if let Some(unknown) = case.unknown {
            let err = bot.call(name, unknown).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::DataError, "{name}: {err:?}");
            assert!(
                err.message.starts_with("[404]") || err.message.starts_with("[400]"),
                "{name}: {}",
                err.message
            );
            assert_no_token(&err);
        }
    }
    // DeleteStory last: it removes the story.
    let deleted = bot.one("DeleteStory", json!({"storyId": story})).await;
    assert_eq!(deleted, json!({"id": story}));
    let has = |id: &str| bot.fake.stories().iter().any(|s| s["id"] == id);
    assert!(!has(&story));
    let err = bot
        .call("DeleteStory", json!({"storyId": story}))
        .await
        .unwrap_err();
    assert_eq!(err.message, "[404] Story not found");
    let other = bot.fake.add_story("Other", "");
    let id = other["id"].as_str().unwrap();
    bot.fake.fail_next(
        "DELETE",
        &format!("/v2/stories/{id}"),
        1,
        Fault::server_error(),
    );
    bot.one("DeleteStory", json!({"storyId": id})).await;
    assert!(!has(id));
}

#[tokio::test]
async fn errors_left_after_the_retries_keep_their_kind() {
    let bot = Bot::start().await;
    bot.fake
        .fail_next("GET", "/users", 10, Fault::server_error());
    let started = Instant::now();
    let err = bot
        .call("SearchUsers", json!({"limit": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError, "{err:?}");
    assert_eq!(err.message, "[500] Something went wrong");
    assert_eq!(bot.fake.calls("GET", "/users"), 4, "four attempts");
    // Backoff 200 + 400 + 800 ms.
    assert!(started.elapsed() >= Duration::from_millis(1400));

    // A Retry-After longer than the wait allowed within a call is handed to the caller.
    let bot = Bot::start().await;
    bot.fake
        .fail_next("GET", "/users", 1, Fault::rate_limited(120));
    let err = bot
        .call("SearchUsers", json!({"limit": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimitError);
    assert_eq!(err.delay_ms, Some(120_000));
    assert_eq!(bot.fake.calls("GET", "/users"), 1);

    // A closed port is a connection error.
    let closed = connection("http://127.0.0.1:9", TOKEN);
    let err = bot
        .call_in("GetUser", json!({"userId": "abc"}), &context_with(closed))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError, "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Input checks

#[tokio::test]
async fn input_is_checked_before_any_request() {
    let bot = Bot::start().await;
    for (module, mapper, field) in [
        ("GetUser", json!({}), "userId"),
        ("GetUser", json!({"userId": "../webhooks"}), "userId"),
        ("GetUser", json!({"userId": {"id": 1}}), "userId"),
        ("SearchUsers", json!({"limit": "many"}), "limit"),
        ("SearchUsers", json!({"limit": 0}), "limit"),
        ("SearchUsers", json!({"sortField": "name"}), "sortField"),
        (
            "SearchUsers",
            json!({"filters": [{"value": "x"}]}),
            "filters[0].type",
        ),
        (
            "CreateUser",
            json!({"userIdMode": "manual"}),
            "customUserId",
        ),
        ("CreateUser", json!({"email": "not-an-email"}), "email"),
        ("CreateUser", json!({"gender": "unknown"}), "gender"),
        (
            "CreateUser",
            json!({"customFields": "plan=pro"}),
            "customFields",
        ),
        ("UpdateUser", json!({"city": "Brno"}), "userId"),
        (
            "BanUser",
            json!({"userId": "abc", "operation": "kick"}),
            "operation",
        ),
        ("ListStories", json!({"limit": -1}), "limit"),
        ("CreateStory", json!({"description": "no name"}), "name"),
        ("UpdateStory", json!({"name": "x"}), "storyId"),
        ("DeleteStory", json!({}), "storyId"),
        ("MakeApiCall", json!({"method": "GET"}), "url"),
        (
            "MakeApiCall",
            json!({"url": "/users", "method": "TRACE"}),
            "method",
        ),
    ] {
        let err = bot.call(module, mapper.clone()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{module} {mapper}: {err:?}");
        assert!(
            err.message.contains(&format!(" {field}: ")),
            "{module} {mapper}: {}",
            err.message
        );
        assert!(
            err.message.starts_with(&format!("chatbot:{module}: ")),
            "{}",
            err.message
        );
    }
    assert_eq!(bot.fake.total_calls(), 0, "no request was sent");
}

// ---------------------------------------------------------------------------------------------
// Paging

#[tokio::test]
async fn search_users_follows_after_across_pages_and_stops_mid_page() {
    let bot = Bot::start().await;
    let users = bot.fake.add_users(100);
    let newest_first: Vec<String> = users
        .iter()
        .rev()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();

    let found = bot.call("SearchUsers", json!({"limit": 90})).await.unwrap();
    assert_eq!(ids(&found), newest_first[..90]);
    let pages: Vec<String> = bot
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/users")
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(!pages[0].contains("after="), "{}", pages[0]);
    assert!(
        pages[1].contains(&format!("after={}", newest_first[39])),
        "{}",
        pages[1]
    );
    assert!(
        pages[2].contains(&format!("after={}", newest_first[79])),
        "{}",
        pages[2]
    );
    for page in &pages {
        assert!(page.contains("limit=40"), "{page}");
        assert!(
            page.contains("sort.field=createdAt") && page.contains("sort.order=desc"),
            "{page}"
        );
    }

    // Everything: the third page is short, so no fourth request.
    let before = bot.fake.calls("GET", "/users");
    let all = bot
        .call("SearchUsers", json!({"limit": 500}))
        .await
        .unwrap();
    assert_eq!(all.len(), 100);
    assert_eq!(bot.fake.calls("GET", "/users") - before, 3);

    // A small limit asks for a small page.
    let few = bot
        .call("SearchUsers", json!({"limit": 3, "sortOrder": "asc"}))
        .await
        .unwrap();
    assert_eq!(
        ids(&few),
        users[..3]
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    assert!(
        bot.fake
            .requests()
            .last()
            .unwrap()
            .query
            .contains("limit=3")
    );

    // After a given user.
    let after = bot
        .call("SearchUsers", json!({"limit": 2, "after": newest_first[9]}))
        .await
        .unwrap();
    assert_eq!(ids(&after), newest_first[10..12]);
}

#[tokio::test]
async fn search_users_sends_sort_match_and_filters() {
    let bot = Bot::start().await;
    bot.fake.add_user_with(
        "ann",
        &["vip"],
        json!({"default_email": "ann@example.com", "plan": "pro"}),
    );
    bot.fake.add_user_with(
        "bob",
        &[],
        json!({"default_email": "bob@example.com", "plan": "free"}),
    );
    bot.fake.add_user_with(
        "cid",
        &["vip"],
        json!({"default_name": "Cid", "plan": "pro"}),
    );
    let user_ids = |bundles: &[Value]| -> Vec<String> {
        bundles
            .iter()
            .map(|b| b["userId"].as_str().unwrap().to_string())
            .collect()
    };
    let found = bot
        .call(
            "SearchUsers",
            json!({"sortField": "createdAt", "sortOrder": "asc", "match": "all",
                   "filters": [{"type": "segment", "value": "vip"},
                               {"type": "attribute", "attribute": "plan", "value": "pro"}],
                   "limit": 10}),
        )
        .await
        .unwrap();
    assert_eq!(user_ids(&found), ["ann", "cid"]);
    let query = bot.fake.requests().last().unwrap().query.clone();
    let filters: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .filter(|(k, _)| k == "filters")
        .collect();
    let sent: Value = serde_json::from_str(&filters[0].1).unwrap();
    assert_eq!(
        sent,
        json!([{"type": "segment", "value": "vip"}, {"type": "attribute", "value": "pro", "attribute": "plan"}])
    );
    let any = bot
        .call(
            "SearchUsers",
            json!({"match": "any", "sortOrder": "asc", "limit": 10, "filters": [
                {"type": "email", "value": "bob@example.com"}, {"type": "name", "value": "Cid"}]}),
        )
        .await
        .unwrap();
    assert_eq!(user_ids(&any), ["bob", "cid"]);
    // No filters: none sent.
    bot.call("SearchUsers", json!({"limit": 1})).await.unwrap();
    assert!(
        !bot.fake
            .requests()
            .last()
            .unwrap()
            .query
            .contains("filters")
    );
}

#[tokio::test]
async fn list_stories_pages_and_stops_mid_page() {
    let bot = Bot::start().await;
    for n in 0..95 {
        bot.fake.add_story(&format!("Story {n}"), "");
    }
    let stories = bot.call("ListStories", json!({"limit": 85})).await.unwrap();
    assert_eq!(stories.len(), 85);
    assert_eq!(stories[84]["name"], "Story 84");
    assert_eq!(bot.fake.calls("GET", "/v2/stories"), 3);
    let default = bot.call("ListStories", json!({})).await.unwrap();
    assert_eq!(default.len(), 10, "the default limit");
}

// ---------------------------------------------------------------------------------------------
// Users and stories

#[tokio::test]
async fn create_user_posts_once_and_returns_the_created_user() {
    let bot = Bot::start().await;
    let created = bot
        .one(
            "CreateUser",
            json!({
                "userIdMode": "manual", "customUserId": "crm-42", "email": "ann@example.com",
                "segments": ["vip", "beta"], "username": "ann", "name": "Ann", "url": "https://ann.example.com",
                "avatar": "https://ann.example.com/a.png", "language": "en", "timezone": "Europe/Prague",
                "gender": "female", "ip": "192.0.2.1", "city": "Brno", "region": "South Moravia",
                "country": "CZ", "referrer": "newsletter", "customFields": {"plan": "pro", "seats": "5"},
            }),
        )
        .await;
    assert_eq!(bot.fake.calls("POST", "/users"), 1);
    let id = created["id"].as_str().unwrap();
    assert_eq!(bot.fake.calls("GET", &format!("/users/{id}")), 1);
    assert_eq!(created["userId"], "crm-42");
    assert_eq!(created["segments"], json!(["vip", "beta"]));
    assert_eq!(
        created["attributes"],
        json!({
            "default_email": "ann@example.com", "default_name": "Ann", "default_username": "ann",
            "default_url": "https://ann.example.com", "default_avatar": "https://ann.example.com/a.png",
            "default_language": "en", "default_timezone": "Europe/Prague", "default_gender": "female",
            "default_ip": "192.0.2.1", "default_city": "Brno", "default_region": "South Moravia",
            "default_country": "CZ", "default_referrer": "newsletter", "plan": "pro", "seats": "5",
        })
    );
    // The body sent: only given fields.
    let post = bot
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let body: Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(body["userId"], "crm-42");

    // A duplicate id: the API's 409 as a DataError, and nothing created.
    let err = bot
        .call(
            "CreateUser",
            json!({"userIdMode": "manual", "customUserId": "crm-42"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert_eq!(err.message, "[409] A user with this userId already exists");
    assert_eq!(bot.fake.users().len(), 1);

    // Generated id, and a 500 on the POST retried: still exactly one user created.
    bot.fake
        .fail_next("POST", "/users", 1, Fault::server_error());
    let generated = bot.one("CreateUser", json!({"name": "Bob"})).await;
    assert_eq!(bot.fake.users().len(), 2);
    let user_id = generated["userId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(user_id).is_ok(), "{user_id}");
    assert_eq!(generated["attributes"], json!({"default_name": "Bob"}));
    let posts: Vec<Value> = bot
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    // The retried POST repeats the same generated id.
    assert_eq!(
        posts[posts.len() - 1]["userId"],
        posts[posts.len() - 2]["userId"]
    );
    assert_eq!(
        posts[posts.len() - 1],
        json!({"userId": user_id, "attributes": {"default_name": "Bob"}})
    );
}

#[tokio::test]
async fn update_user_changes_only_the_given_fields_and_ban_toggles() {
    let bot = Bot::start().await;
    let user = bot.fake.add_user_with(
        "ann",
        &["vip"],
        json!({"default_email": "ann@example.com", "default_city": "Brno"}),
    );
    let id = user["id"].as_str().unwrap();
    let updated = bot
        .one(
            "UpdateUser",
            json!({"userId": id, "name": "Ann", "customFields": {"plan": "pro"}}),
        )
        .await;
    assert_eq!(
        updated["attributes"],
        json!({"default_email": "ann@example.com", "default_city": "Brno", "default_name": "Ann", "plan": "pro"})
    );
    assert_eq!(updated["segments"], json!(["vip"]));
    let put = bot.fake.requests().last().unwrap().clone();
    assert_eq!(
        serde_json::from_str::<Value>(&put.body).unwrap(),
        json!({"attributes": {"default_name": "Ann", "plan": "pro"}})
    );

    let banned = bot
        .one("BanUser", json!({"userId": id, "operation": "ban"}))
        .await;
    assert_eq!(banned["banned"], true);
    let unbanned = bot
        .one("BanUser", json!({"userId": id, "operation": "unban"}))
        .await;
    assert_eq!(unbanned["banned"], false);
    assert_eq!(
        serde_json::from_str::<Value>(&bot.fake.requests().last().unwrap().body).unwrap(),
        json!({"banned": false})
    );
    let fetched = bot.one("GetUser", json!({"userId": id})).await;
    assert_eq!(fetched, bot.fake.user(id).unwrap());
}

#[tokio::test]
async fn stories_are_created_read_updated_and_deleted() {
    let bot = Bot::start().await;
    let created = bot
        .one(
            "CreateStory",
            json!({"name": "Welcome", "description": "Greets visitors"}),
        )
        .await;
    assert_eq!(created["name"], "Welcome");
    assert_eq!(created["version"], 2);
    let id = created["id"].as_str().unwrap();
    let read = bot.one("GetStory", json!({"storyId": id})).await;
    assert_eq!(read, created);
    let updated = bot
        .one(
            "UpdateStory",
            json!({"storyId": id, "description": "Says hello"}),
        )
        .await;
    assert_eq!(
        (&updated["name"], &updated["description"]),
        (&json!("Welcome"), &json!("Says hello"))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&bot.fake.requests().last().unwrap().body).unwrap(),
        json!({"description": "Says hello"})
    );
    bot.one("DeleteStory", json!({"storyId": id})).await;
    assert!(bot.fake.stories().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Make an API Call

#[tokio::test]
async fn make_an_api_call_sends_a_relative_request_with_headers_query_and_body() {
    let bot = Bot::start().await;
    bot.fake.add_users(3);
    let answer = bot
        .one(
            "MakeApiCall",
            json!({"url": "/users", "method": "GET",
                   "headers": [{"key": "X-Trace", "value": "t-1"}],
                   "qs": [{"key": "limit", "value": "2"}, {"key": "sort.order", "value": "asc"}]}),
        )
        .await;
    assert_eq!(answer["statusCode"], 200);
    assert_eq!(answer["headers"]["content-type"], "application/json");
    assert_eq!(answer["body"]["count"], 2);
    let seen = bot.fake.requests().last().unwrap().clone();
    assert_eq!(seen.query, "limit=2&sort.order=asc");
    assert!(seen.headers.contains(&("x-trace".into(), "t-1".into())));
    assert!(
        seen.headers
            .contains(&("accept".into(), "application/json".into()))
    );

    // A JSON body written as text is sent as JSON.
    let created = bot
        .one(
            "MakeApiCall",
            json!({"url": "v2/stories", "method": "POST", "body": "{\"name\": \"From a call\"}"}),
        )
        .await;
    assert_eq!(created["body"]["data"]["name"], "From a call");
    let seen = bot.fake.requests().last().unwrap().clone();
    assert!(
        seen.headers
            .contains(&("content-type".into(), "application/json".into()))
    );
}

#[tokio::test]
async fn make_an_api_call_refuses_urls_that_leave_the_base() {
    let bot = Bot::start().await;
    let elsewhere = common::server::start().await;
    for url in [
        format!("http://{elsewhere}/echo"),
        format!("//{elsewhere}/echo"),
        "https://api.chatbot.com/users".to_string(),
        "ftp://files.example.com/x".to_string(),
        "javascript:alert(1)".to_string(),
        "/../users".to_string(),
        "/users/../../secret".to_string(),
        "/%2e%2e/users".to_string(),
        "/%2E%2e/%2e%2E/users".to_string(),
        "/%252e%252e/users".to_string(),
        "\\\\evil.test\\users".to_string(),
        "/users\\..\\admin".to_string(),
        "/%5cevil".to_string(),
        "%2f%2fevil.test/users".to_string(),
    ] {
        let err = bot
            .call("MakeApiCall", json!({"url": url, "method": "GET"}))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{url}: {err:?}");
        assert!(err.message.starts_with("url: "), "{url}: {}", err.message);
    }
    // The connection's header and transport headers cannot be set by the user.
    for header in ["Authorization", "authorization", "Host", "Content-Length"] {
        let err = bot
            .call(
                "MakeApiCall",
                json!({"url": "/users", "method": "GET", "headers": [{"key": header, "value": "Bearer mine"}]}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{header}");
        assert!(err.message.starts_with("headers: "), "{}", err.message);
    }
    assert_eq!(bot.fake.total_calls(), 0, "nothing was sent");
}

#[tokio::test]
async fn the_bearer_header_is_on_every_request_and_only_from_the_connection() {
    let bot = Bot::start().await;
    let user = bot.fake.add_user(None);
    let id = user["id"].as_str().unwrap();
    bot.call("GetUser", json!({"userId": id})).await.unwrap();
    bot.call("SearchUsers", json!({"limit": 1})).await.unwrap();
    bot.call("CreateUser", json!({"name": "Cy"})).await.unwrap();
    bot.call("MakeApiCall", json!({"url": "/users", "method": "GET"}))
        .await
        .unwrap();
    let requests = bot.fake.requests();
    assert!(requests.len() >= 5);
    for request in &requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{} {}",
            request.method,
            request.path
        );
        let authorizations = request
            .headers
            .iter()
            .filter(|(n, _)| n == "authorization")
            .count();
        assert_eq!(authorizations, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn a_planted_token_never_appears_in_errors_or_debug_output() {
    let bot = Bot::start().await;
    let mut errors = Vec::new();
    // The token the fake wants, sent to a fake that wants another.
    let other = FakeChatBot::start("another-token").await;
    let context = context_with(connection(&other.base_url, TOKEN));
    errors.push(
        bot.call_in("GetUser", json!({"userId": "abc"}), &context)
            .await
            .unwrap_err(),
    );
    errors.push(
        bot.call("GetUser", json!({"userId": "abc"}))
            .await
            .unwrap_err(),
    );
    errors.push(
        bot.call(
            "MakeApiCall",
            json!({"url": "https://evil.test/", "method": "GET"}),
        )
        .await
        .unwrap_err(),
    );
    errors.push(
        bot.call("MakeApiCall", json!({"url": "/users", "method": "GET", "headers": [{"key": "Authorization", "value": TOKEN}]}))
            .await
            .unwrap_err(),
    );
    let closed = context_with(connection("http://127.0.0.1:9", TOKEN));
    errors.push(
        bot.call_in("GetUser", json!({"userId": "abc"}), &closed)
            .await
            .unwrap_err(),
    );
    for error in &errors {
        assert_no_token(error);
    }
    let shown = format!("{:?}", connection(&bot.fake.base_url, TOKEN));
    assert!(!shown.contains(TOKEN), "{shown}");
    let shown = format!("{:?}", bot.context);
    assert!(!shown.contains(TOKEN), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// Connections

#[tokio::test]
async fn the_connection_is_found_by_name_and_must_exist() {
    let bot = Bot::start().await;
    let module = bot.module("GetUser");
    let call = |parameters: Map<String, Value>, context: ExecutionContext| {
        let module = module.clone();
        async move {
            module
                .call(Invocation {
                    module_id: 3,
                    module: "chatbot:GetUser",
                    parameters: &parameters,
                    mapper: json!({"userId": "abc"}),
                    context: &context,
                })
                .await
        }
    };
    for (parameters, context) in [
        (
            params(json!({"__IMTCONN__": "bot"})),
            ExecutionContext::new("no handle"),
        ),
        (params(json!({"__IMTCONN__": "nope"})), bot.context.clone()),
        (params(json!({})), bot.context.clone()),
    ] {
        let err = call(parameters.clone(), context).await.unwrap_err();
        assert_eq!(
            err.kind,
            ErrorKind::InvalidConfigurationError,
            "{parameters:?}: {err:?}"
        );
        assert!(err.message.contains("__IMTCONN__"), "{}", err.message);
    }
    // A connection of another app is refused.
    let mut foreign = connection(&bot.fake.base_url, TOKEN);
    foreign.app = "slack".into();
    let err = call(params(json!({"__IMTCONN__": "bot"})), context_with(foreign))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidConfigurationError);
    assert!(err.message.contains("slack"), "{}", err.message);
    // Its id works as well as its name.
    let user = bot.fake.add_user(None);
    let found = module
        .call(Invocation {
            module_id: 3,
            module: "chatbot:GetUser",
            parameters: &params(json!({"__IMTCONN__": 1})),
            mapper: json!({"userId": user["id"]}),
            context: &bot.context,
        })
        .await
        .unwrap();
    assert_eq!(found[0]["id"], user["id"]);
    assert_eq!(bot.fake.total_calls(), 1);
}

#[tokio::test]
async fn the_connection_test_request_proves_the_token() {
    let bot = Bot::start().await;
    let defined = bot.registry.defined();
    let app = defined.app("chatbot").unwrap();
    let token_type = app.connection_type("token").unwrap();
    assert_eq!(token_type.kind.name(), "bearer");
    assert_eq!(token_type.configuration["required"], json!(["token"]));
    assert_eq!(
        token_type.configuration["properties"]["baseUrl"]["default"],
        "https://api.chatbot.com"
    );
    assert!(defined.connection_type("chatbot", "bearer").is_some());

    defined
        .test_connection(&connection(&bot.fake.base_url, TOKEN))
        .await
        .unwrap();
    let seen = bot.fake.requests().last().unwrap().clone();
    assert_eq!(
        (seen.path.as_str(), seen.query.as_str()),
        ("/users", "limit=1")
    );
    let err = defined
        .test_connection(&connection(&bot.fake.base_url, "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAccessTokenError);
    let mut unknown = connection(&bot.fake.base_url, TOKEN);
    unknown.app = "nope".into();
    assert_eq!(
        defined.test_connection(&unknown).await.unwrap_err().kind,
        ErrorKind::InvalidConfigurationError
    );
}

// ---------------------------------------------------------------------------------------------
// Watch Users (polling)

async fn poll(bot: &Bot, parameters: Value, state: &TriggerState, limit: usize) -> Polled {
    let module = bot.module("WatchUsers");
    let mut parameters = params(parameters);
    parameters.insert("__IMTCONN__".into(), json!("bot"));
    module
        .poll(
            Invocation {
                module_id: 1,
                module: "chatbot:WatchUsers",
                parameters: &parameters,
                mapper: json!({}),
                context: &bot.context,
            },
            PollRequest { state, limit },
        )
        .await
        .unwrap()
}

/// Polls until nothing is left, applying each change; returns the ids per poll.
async fn drain(
    bot: &Bot,
    parameters: Value,
    state: &mut TriggerState,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut polls = Vec::new();
    loop {
        let polled = poll(bot, parameters.clone(), state, limit).await;
        state.apply(&polled.change);
        let got = ids(&polled.bundles);
        assert!(got.len() <= limit);
        if got.is_empty() {
            assert!(!polled.more);
            return polls;
        }
        polls.push(got);
    }
}

fn id_list(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn watch_users_from_now_on_emits_only_later_users_oldest_first() {
    let bot = Bot::start().await;
    bot.fake.add_users(45);
    let mut state = TriggerState::default();
    let first = poll(&bot, json!({"start": "now"}), &state, 10).await;
    assert!(first.bundles.is_empty());
    assert!(!first.more);
    state.apply(&first.change);
    // Newest first: one page told it where "now" is.
    assert_eq!(bot.fake.calls("GET", "/users"), 1);

    let later = bot.fake.add_users(5);
    let polls = drain(&bot, json!({"start": "now"}), &mut state, 3).await;
    assert_eq!(polls.concat(), id_list(&later));
    assert_eq!(polls[0].len(), 3);
    let emitted = poll(&bot, json!({}), &state, 3).await;
    assert!(emitted.bundles.is_empty());
    // The bundle is the API's user.
    let one_more = bot.fake.add_user(Some("z@example.com"));
    let polled = poll(&bot, json!({}), &state, 3).await;
    assert_eq!(polled.bundles, vec![one_more]);
}

#[tokio::test]
async fn watch_users_all_reads_every_page_and_the_cursor_keeps_its_place() {
    let bot = Bot::start().await;
    let users = bot.fake.add_users(100);
    let mut state = TriggerState::default();
    let polls = drain(&bot, json!({"start": "all"}), &mut state, 40).await;
    assert_eq!(polls.iter().map(Vec::len).collect::<Vec<_>>(), [40, 40, 20]);
    assert_eq!(polls.concat(), id_list(&users), "oldest first, each once");
    let cursor = state.cursor.clone().unwrap();
    assert_eq!(cursor["ids"], json!([users[99]["id"]]));
    assert_eq!(cursor["date"], "2024-01-01T00:01:40.000Z");

    // New users after the cursor: only those, and the API is read only down to the cursor.
    let more = bot.fake.add_users(3);
    let before = bot.fake.calls("GET", "/users");
    let polled = poll(&bot, json!({"start": "all"}), &state, 10).await;
    assert_eq!(ids(&polled.bundles), id_list(&more));
    assert_eq!(bot.fake.calls("GET", "/users") - before, 1);
}

#[tokio::test]
async fn watch_users_since_a_date() {
    let bot = Bot::start().await;
    let users = bot.fake.add_users(10);
    // Users are a second apart from 00:00:01; since 00:00:06 leaves the last five.
    let mut state = TriggerState::default();
    let polls = drain(
        &bot,
        json!({"start": "since", "since": "2024-01-01T00:00:06Z"}),
        &mut state,
        2,
    )
    .await;
    assert_eq!(polls.concat(), id_list(&users[5..]));
    // Since without a date is a DataError before any request.
    let module = bot.module("WatchUsers");
    let parameters = params(json!({"__IMTCONN__": "bot", "start": "since"}));
    let before = bot.fake.total_calls();
    let err = module
        .poll(
            Invocation {
                module_id: 1,
                module: "chatbot:WatchUsers",
                parameters: &parameters,
                mapper: json!({}),
                context: &bot.context,
            },
            PollRequest {
                state: &TriggerState::default(),
                limit: 1,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(err.message.contains("since"), "{}", err.message);
    assert_eq!(bot.fake.total_calls(), before);
}

#[tokio::test]
async fn watch_users_loses_no_user_that_shares_a_timestamp() {
    let bot = Bot::start().await;
    let mut state = TriggerState::default();
    state.apply(&poll(&bot, json!({}), &state, 2).await.change);
    let at: DateTime<Utc> = epoch() + chrono::Duration::hours(1);
    let same: Vec<Value> = (0..5).map(|_| bot.fake.add_user_at(at)).collect();
    let first = poll(&bot, json!({}), &state, 2).await;
    assert_eq!(first.bundles.len(), 2);
    assert!(first.more);
    state.apply(&first.change);
    // Two more appear at the same instant between polls.
    let late: Vec<Value> = (0..2).map(|_| bot.fake.add_user_at(at)).collect();
    let mut emitted = ids(&first.bundles);
    emitted.extend(drain(&bot, json!({}), &mut state, 2).await.concat());
    let mut expected = id_list(&same);
    expected.extend(id_list(&late));
    emitted.sort();
    expected.sort();
    assert_eq!(emitted, expected, "each exactly once");
    assert_eq!(chatbot_date(at), "2024-01-01 01:00:00.000Z");
}

#[tokio::test]
async fn watch_users_through_the_engine_commits_its_cursor() {
    let bot = Bot::start().await;
    let users = bot.fake.add_users(5);
    let blueprint = json!({
        "name": "new users to stories",
        "flow": [
            {"id": 1, "module": "chatbot:WatchUsers",
             "parameters": {"__IMTCONN__": "bot", "start": "all", "limit": 2}},
            {"id": 2, "module": "chatbot:CreateStory", "parameters": {"__IMTCONN__": "bot"},
             "mapper": {"name": "Welcome {{1.attributes.default_email}}"}}
        ],
        "metadata": {"scenario": {"roundtrips": 2}}
    });
    let scenario = scenario::load(&blueprint.to_string(), &bot.registry).unwrap();
    let run = |state: TriggerState| {
        let input = RunInput {
            context: bot.context.clone(),
            trigger: Some(state),
            ..RunInput::default()
        };
        engine::run(&scenario, input)
    };
    let first = run(TriggerState::default()).await;
    assert_eq!(first.status, Status::Success, "{:?}", first.error);
    assert_eq!(first.cycles, 2);
    assert_eq!(first.operations, 2 + 4);
    let change = first.trigger.clone().unwrap();
    assert_eq!(change.new_seen_ids, id_list(&users[..4]));
    let mut state = TriggerState::default();
    state.apply(&change);
    let second = run(state.clone()).await;
    assert_eq!(second.status, Status::Success);
    state.apply(second.trigger.as_ref().unwrap());
    let names: Vec<String> = bot
        .fake
        .stories()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        (0..5)
            .map(|i| format!("Welcome user{i}@example.com"))
            .collect::<Vec<_>>()
    );
    assert_eq!(state.seen_ids, id_list(&users));
}

// ---------------------------------------------------------------------------------------------
// Scenarios through the engine

#[tokio::test]
async fn a_search_feeds_an_action_through_the_engine() {
    let bot = Bot::start().await;
    bot.fake.add_users(50);
    let blueprint = json!({
        "name": "search then story",
        "flow": [
            {"id": 1, "module": "chatbot:SearchUsers", "parameters": {"__IMTCONN__": "bot"},
             "mapper": {"limit": 45, "sortOrder": "asc"}},
            {"id": 2, "module": "chatbot:CreateStory", "parameters": {"__IMTCONN__": "bot"},
             "mapper": {"name": "For {{1.id}}", "description": "{{1.attributes.default_email}}"}}
        ]
    });
    let scenario = scenario::load(&blueprint.to_string(), &bot.registry).unwrap();
    let report = engine::run(
        &scenario,
        RunInput {
            context: bot.context.clone(),
            ..RunInput::default()
        },
    )
    .await;
    assert_eq!(report.status, Status::Success, "{:?}", report.error);
    assert_eq!(report.operations, 1 + 45);
    assert_eq!(bot.fake.stories().len(), 45);
    assert_eq!(bot.fake.calls("POST", "/v2/stories"), 45);

    // Without a connections handle the first module fails naming __IMTCONN__.
    let report = engine::run(
        &scenario,
        RunInput {
            context: ExecutionContext::new("bare"),
            ..RunInput::default()
        },
    )
    .await;
    assert_eq!(report.status, Status::Error);
    let error = report.error.unwrap();
    assert_eq!(error.name, "InvalidConfigurationError");
    assert!(error.message.contains("__IMTCONN__"), "{}", error.message);
}

#[test]
fn blueprints_are_checked_against_the_definition_when_compiled() {
    let registry = AppRegistry::build(AppOptions::default()).unwrap();
    let blueprint = json!({
        "name": "bad",
        "flow": [
            {"id": 1, "module": "chatbot:GetUser", "mapper": {"userId": "abc"}},
            {"id": 2, "module": "chatbot:BanUser", "parameters": {"__IMTCONN__": "bot"},
             "mapper": {"userId": "{{1.id}}", "operation": "kick"}},
            {"id": 3, "module": "chatbot:WatchUsers", "parameters": {"__IMTCONN__": "bot"}},
            {"id": 4, "module": "chatbot:NoSuchModule"}
        ]
    });
    let err = scenario::load(&blueprint.to_string(), &registry).unwrap_err();
    let shown = err.to_string();
    for expected in [
        "flow[0].parameters.__IMTCONN__",
        "flow[1].mapper.operation",
        "flow[2].module",
        "flow[3].module",
    ] {
        assert!(shown.contains(expected), "{expected} not in {shown}");
    }
}

// ---------------------------------------------------------------------------------------------
// Watch New Messages (instant)

/// A delivery the hook endpoint accepted: its delivery id and body.
type Received = (Option<String>, Value);

/// A hook endpoint as the service's webhook handler runs it: verification requests are
/// answered by the module's `verify`, deliveries recorded with their delivery id.
#[derive(Clone)]
struct Hook {
    module: Arc<dyn Module>,
    url: String,
    token: String,
    data: Arc<Mutex<Value>>,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn hook_endpoint(
    State(hook): State<Hook>,
    method: Method,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let request = HookRequest {
        method: method.as_str(),
        query: &query,
        headers: &headers,
        body: &body,
    };
    let instant = hook.module.instant().expect("an instant trigger");
    let data = hook.data.lock().unwrap().clone();
    let target = HookTarget {
        url: &hook.url,
        token: &hook.token,
        data: &data,
    };
    if let Some(reply) = instant.verify(&Map::new(), None, target, request) {
        return (
            StatusCode::from_u16(reply.status).unwrap(),
            [(axum::http::header::CONTENT_TYPE, reply.content_type)],
            reply.body,
        )
            .into_response();
    }
    let id = instant.delivery_id(request);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    hook.received.lock().unwrap().push((id, body));
    StatusCode::OK.into_response()
}

#[tokio::test]
async fn watch_new_messages_attaches_verifies_deduplicates_and_detaches() {
    let bot = Bot::start().await;
    let module = bot.module("WatchNewMessages");
    assert_eq!(
        module.kind(),
        switchyard::module::ModuleKind::InstantTrigger
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/7", listener.local_addr().unwrap());
    let hook = Hook {
        module: module.clone(),
        url: url.clone(),
        token: "hook-token-7".into(),
        data: Arc::new(Mutex::new(Value::Null)),
        received: Arc::default(),
    };
    let app = Router::new()
        .route("/hooks/7", axum::routing::any(hook_endpoint))
        .with_state(hook.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let instant = module.instant().unwrap();
    let parameters = params(json!({"__IMTCONN__": "bot", "webhookName": "Orders"}));
    let data = instant
        .attach(
            &parameters,
            HookTarget {
                url: &url,
                token: &hook.token,
                data: &Value::Null,
            },
            &bot.context,
        )
        .await
        .unwrap();
    // The fake verified the hook before registering it.
    let webhooks = bot.fake.webhooks();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0]["name"], "Orders");
    assert_eq!(webhooks[0]["url"], url.as_str());
    assert_eq!(data, json!({"webhookId": webhooks[0]["id"]}));
    *hook.data.lock().unwrap() = data.clone();

    // A verification with the wrong token is refused.
    let wrong = reqwest::get(format!("{url}?challenge=abc&token=nope"))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = reqwest::get(format!("{url}?challenge=abc&token=hook-token-7"))
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(right.text().await.unwrap(), "abc");

    // Events carry their x-request-id; a redelivery repeats it.
    let event = json!({"chatId": "c1", "messageId": "m1", "userId": "u1",
        "node": {"id": "n1", "name": "foo", "type": "WEBHOOK", "webhookName": "Orders"},
        "userAttributes": {"default_name": "User"}, "attributes": {}});
    let delivered = bot.fake.deliver(&event).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].status, 200);
    bot.fake.redeliver(&delivered[0].request_id).await;
    let received = hook.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].0.as_deref(),
        Some(delivered[0].request_id.as_str())
    );
    assert_eq!(received[0].0, received[1].0, "a redelivery has the same id");
    assert_eq!(received[0].1, event);

    // Detach removes it; a second detach finds it gone and is fine.
    let target = HookTarget {
        url: &url,
        token: &hook.token,
        data: &data,
    };
    instant
        .detach(&parameters, target, &bot.context)
        .await
        .unwrap();
    assert!(bot.fake.webhooks().is_empty());
    instant
        .detach(&parameters, target, &bot.context)
        .await
        .unwrap();

    // A hook that does not answer the challenge is not registered.
    let err = instant
        .attach(
            &parameters,
            HookTarget {
                url: &format!("{}/nowhere", bot.fake.base_url),
                token: "t",
                data: &Value::Null,
            },
            &bot.context,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DataError);
    assert!(err.message.starts_with("[400] url: "), "{}", err.message);
    assert!(bot.fake.webhooks().is_empty());
    // An instant trigger is never called as an action.
    assert!(bot.call("WatchNewMessages", json!({})).await.is_err());
}

#[test]
fn the_schema_of_the_app_format_is_printed() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["schema", "--app"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "AppDefinition");
    for key in ["name", "version", "base", "connections", "modules"] {
        assert!(schema["properties"].get(key).is_some(), "{key}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("schema")
        .output()
        .unwrap();
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "Blueprint");
}

#[test]
fn an_invalid_extra_app_stops_the_command_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.json"),
        r#"{"name": "broken", "version": "1.0.0", "title": "B", "base": {"baseUrl": "x"},
            "modules": {"A": {"label": "A", "type": "action", "request": {"url": "/{{lower(}}"}}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "/dev/null"])
        .env("SWITCHYARD_APPS_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.json"), "{stderr}");
    assert!(stderr.contains("modules.A.request.url: column"), "{stderr}");
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hook_request<'a>(
    method: &'a str,
    query: &'a [(String, String)],
    headers: &'a [(String, String)],
    body: &'a [u8],
) -> HookRequest<'a> {
    HookRequest {
        method,
        query,
        headers,
        body,
    }
}

#[tokio::test]
async fn verification_and_delivery_ids_are_read_from_the_hook_request() {
    let bot = Bot::start().await;
    let module = bot.module("WatchNewMessages");
    let instant = module.instant().unwrap();
    let data = json!({"webhookId": "w1"});
    let target = HookTarget {
        url: "https://switchyard.test/hooks/9",
        token: "tok-9",
        data: &data,
    };
    let none = Map::new();
    let challenge = pairs(&[("challenge", "c-1"), ("token", "tok-9")]);
    let reply = instant
        .verify(
            &none,
            None,
            target,
            hook_request("GET", &challenge, &[], b""),
        )
        .unwrap();
    assert_eq!(
        (
            reply.status,
            reply.content_type.as_str(),
            reply.body.as_str()
        ),
        (200, "text/plain; charset=utf-8", "c-1")
    );
    let wrong = pairs(&[("challenge", "c-1"), ("token", "other")]);
    let refused = instant
        .verify(&none, None, target, hook_request("GET", &wrong, &[], b""))
        .unwrap();
    assert_eq!(refused.status, 401);
    assert!(!refused.body.contains("tok-9"));
    // A delivery, or a GET without a challenge, is not a verification.
    let event = hook_request("POST", &[], &[], b"{\"chatId\": \"c\"}");
    assert!(instant.verify(&none, None, target, event).is_none());
    assert!(
        instant
            .verify(&none, None, target, hook_request("GET", &[], &[], b""))
            .is_none()
    );

    let headers = pairs(&[("x-request-id", "req-1")]);
    let delivery = hook_request("POST", &[], &headers, b"{}");
    assert_eq!(instant.delivery_id(delivery).as_deref(), Some("req-1"));
    assert_eq!(
        instant.delivery_id(hook_request("POST", &[], &[], b"{}")),
        None
    );
    assert_eq!(bot.fake.total_calls(), 0);
}
