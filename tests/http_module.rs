//! `http:MakeRequest` and `http:ActionSendData` against a real axum server on 127.0.0.1,
//! driven through the `Module` trait exactly as the executor calls them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use switchyard::apps::{BuiltinRegistry, HttpOptions};
use switchyard::module::error::{ErrorKind, ModuleError};
use switchyard::module::{Invocation, Registry};

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    fn last(&self) -> Seen {
        self.all().pop().expect("the server saw no request")
    }
}

async fn echo(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    log.0.lock().unwrap().push(seen.clone());
    let reply = json!({
        "method": seen.method,
        "query": seen.query,
        "body": String::from_utf8_lossy(&seen.body),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        reply.to_string(),
    )
        .into_response()
}

async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    (status, format!("status {code} body")).into_response()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(4)).await;
    "late"
}

const BIG: usize = 2 * 1024 * 1024;

async fn big() -> Vec<u8> {
    vec![b'x'; BIG]
}

async fn big_stream() -> Body {
    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 32 * 1024])));
    Body::from_stream(futures::stream::iter(chunks))
}

async fn start() -> (String, Log) {
    let log = Log::default();
    let app = Router::new()
        .route("/echo", any(echo))
        .route(
            "/text",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "plain hello") }),
        )
        .route("/status/{code}", get(status))
        .route(
            "/limited",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "7")],
                    "slow down",
                )
            }),
        )
        .route("/slow", get(slow))
        .route("/big", get(big))
        .route("/big-stream", get(big_stream))
        .route(
            "/redirect",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "/echo?from=redirect")],
                )
            }),
        )
        .route(
            "/cookies",
            get(|| async {
                (
                    AppendHeaders([
                        (header::SET_COOKIE, "a=1; Path=/"),
                        (header::SET_COOKIE, "b=2; HttpOnly"),
                    ]),
                    "ok",
                )
            }),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), log)
}

fn registry() -> BuiltinRegistry {
    BuiltinRegistry::new(HttpOptions::allowing_loopback()).unwrap()
}

/// Checks the configuration as the loader would, then calls the module once.
async fn run(
    registry: &BuiltinRegistry,
    module: &str,
    parameters: Value,
    mapper: Value,
) -> Result<Vec<Value>, ModuleError> {
    let implementation = registry.module(module).expect("module is served");
    let parameters = parameters.as_object().cloned().unwrap_or_default();
    let problems = implementation.check(&parameters, &mapper);
    assert!(
        problems.is_empty(),
        "check() rejected a valid configuration: {problems:?}"
    );
    implementation
        .call(Invocation {
            module_id: 7,
            module,
            parameters: &parameters,
            mapper,
            context: &switchyard::module::ExecutionContext::new("test-execution"),
        })
        .await
}

/// Runs a module that must produce exactly one bundle.
async fn one(registry: &BuiltinRegistry, module: &str, parameters: Value, mapper: Value) -> Value {
    let mut bundles = run(registry, module, parameters, mapper)
        .await
        .expect("module failed");
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    bundles.remove(0)
}

fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test]
async fn make_request_get_with_query_parameters() {
    let (base, log) = start().await;
    let bundle = one(
        &registry(),
        "http:MakeRequest",
        json!({"authenticationType": "noAuth"}),
        json!({
            "url": format!("{base}/echo?fixed=1"),
            "method": "get",
            "queryParameters": [{"name": "q", "value": "a b&c"}, {"name": "n", "value": 5}, null],
            "parseResponse": true
        }),
    )
    .await;
    assert_eq!(bundle["statusCode"], 200);
    assert_eq!(bundle["headers"]["content-type"], "application/json");
    assert_eq!(bundle["data"]["method"], "GET");
    let seen = log.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/echo");
    assert_eq!(seen.query.as_deref(), Some("fixed=1&q=a+b%26c&n=5"));
    assert!(seen.body.is_empty());
}

#[tokio::test]
async fn make_request_posts_a_json_string() {
    let (base, log) = start().await;
    let bundle = one(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({
            "url": format!("{base}/echo"),
            "method": "post",
            "contentType": "json",
            "inputMethod": "jsonString",
            "jsonStringBodyContent": "{\"name\": \"Ann\", \"tags\": [1, 2]}",
            "stopOnHttpError": true
        }),
    )
    .await;
    assert_eq!(bundle["data"]["method"], "POST");
    let seen = log.last();
    assert_eq!(seen.headers["content-type"], "application/json");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent, json!({"name": "Ann", "tags": [1, 2]}));
}

#[tokio::test]
async fn make_request_posts_a_data_structure() {
    let (base, log) = start().await;
    one(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({
            "url": format!("{base}/echo"),
            "method": "put",
            "contentType": "json",
            "inputMethod": "dataStructure",
            "dataStructureBodyContent": {"id": 9, "nested": {"ok": true}}
        }),
    )
    .await;
    let seen = log.last();
    assert_eq!(seen.method, "PUT");
    assert_eq!(
        serde_json::from_slice::<Value>(&seen.body).unwrap(),
        json!({"id": 9, "nested": {"ok": true}})
    );
}

#[tokio::test]
async fn form_bodies_in_both_versions() {
    let (base, log) = start().await;
    let registry = registry();
    one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({
            "url": format!("{base}/echo"),
            "method": "post",
            "contentType": "urlEncoded",
            "urlEncodedBodyContent": [{"name": "grant_type", "value": "refresh_token"}, {"name": "scope", "value": "a b"}]
        }),
    )
    .await;
    let v4 = log.last();
    assert_eq!(
        v4.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        form_fields(&v4.body),
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("scope".into(), "a+b".into())
        ]
    );

    one(
        &registry,
        "http:ActionSendData",
        json!({"handleErrors": false}),
        json!({
            "url": format!("{base}/echo"),
            "method": "post",
            "bodyType": "x-www-form-urlencoded",
            "formFields": [{"key": "k", "value": "v=1"}]
        }),
    )
    .await;
    let v3 = log.last();
    assert_eq!(
        v3.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(form_fields(&v3.body), vec![("k".into(), "v%3D1".into())]);
}

#[tokio::test]
async fn raw_and_custom_bodies() {
    let (base, log) = start().await;
    let registry = registry();
    one(
        &registry,
        "http:ActionSendData",
        json!({}),
        json!({
            "url": format!("{base}/echo"),
            "method": "post",
            "bodyType": "raw",
            "contentType": "text/plain",
            "data": "just some text"
        }),
    )
    .await;
    let v3 = log.last();
    assert_eq!(v3.headers["content-type"], "text/plain");
    assert_eq!(v3.body, b"just some text");

    one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({
            "url": format!("{base}/echo"),
            "method": "patch",
            "contentType": "custom",
            "customContentType": "application/xml",
            "customBodyContent": "<a>1</a>"
        }),
    )
    .await;
    let v4 = log.last();
    assert_eq!(v4.method, "PATCH");
    assert_eq!(v4.headers["content-type"], "application/xml");
    assert_eq!(v4.body, b"<a>1</a>");
}

#[tokio::test]
async fn multipart_body_reaches_the_server() {
    let (base, log) = start().await;
    one(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({
            "url": format!("{base}/echo"),
            "method": "post",
            "contentType": "multipart",
            "multipartBodyContent": [
                {"name": "caption", "value": "hello"},
                {"name": "doc", "fieldType": "file", "data": "file text", "fileName": "a.txt"}
            ]
        }),
    )
    .await;
    let seen = log.last();
    let content_type = &seen.headers["content-type"];
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect(content_type);
    let body = String::from_utf8(seen.body).unwrap();
    assert!(
        body.contains(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nhello\r\n"
        )),
        "{body}"
    );
    assert!(body.contains("name=\"doc\"; filename=\"a.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nfile text\r\n"), "{body}");
    assert!(body.ends_with(&format!("--{boundary}--\r\n")));
}

#[tokio::test]
async fn custom_headers_reach_the_server() {
    let (base, log) = start().await;
    let registry = registry();
    one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({
            "url": format!("{base}/echo"),
            "method": "get",
            "headers": [
                {"name": "X-Api-Key", "value": "secret-123"},
                {"name": "X-Trace", "value": 42},
                {"name": "User-Agent", "value": "my-agent/1"}
            ]
        }),
    )
    .await;
    let seen = log.last();
    assert_eq!(seen.headers["x-api-key"], "secret-123");
    assert_eq!(seen.headers["x-trace"], "42");
    assert_eq!(seen.headers["user-agent"], "my-agent/1");

    // v3 basic authentication and the default user agent.
    one(
        &registry,
        "http:ActionSendData",
        json!({}),
        json!({"url": format!("{base}/echo"), "method": "get", "authUser": "ann", "authPass": "pw", "headers": []}),
    )
    .await;
    let seen = log.last();
    assert_eq!(seen.headers["authorization"], "Basic YW5uOnB3");
    assert!(
        seen.headers["user-agent"].starts_with("Switchyard/"),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn parse_response_on_and_off() {
    let (base, _log) = start().await;
    let registry = registry();
    let url = format!("{base}/echo?x=1");
    let parsed = one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({"url": url, "parseResponse": true}),
    )
    .await;
    assert!(parsed["data"].is_object(), "{parsed}");
    assert_eq!(parsed["data"]["query"], "x=1");

    let raw = one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({"url": url, "parseResponse": false}),
    )
    .await;
    let text = raw["data"].as_str().expect("text when not parsed");
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), parsed["data"]);

    // v3 leaves parsing off unless asked.
    let v3 = one(
        &registry,
        "http:ActionSendData",
        json!({}),
        json!({"url": url, "method": "get"}),
    )
    .await;
    assert!(v3["data"].is_string(), "{v3}");
    let v3 = one(
        &registry,
        "http:ActionSendData",
        json!({}),
        json!({"url": url, "method": "get", "parseResponse": true}),
    )
    .await;
    assert_eq!(v3["data"]["query"], "x=1");

    let text = one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/text"), "parseResponse": true}),
    )
    .await;
    assert_eq!(text["data"], "plain hello");
    assert_eq!(text["headers"]["content-type"], "text/plain");
}

#[tokio::test]
async fn head_requests_have_empty_data() {
    let (base, log) = start().await;
    let bundle = one(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/echo"), "method": "head"}),
    )
    .await;
    assert_eq!(bundle["statusCode"], 200);
    assert_eq!(bundle["data"], "");
    assert_eq!(log.last().method, "HEAD");
}

#[tokio::test]
async fn http_404_is_a_runtime_error_by_default() {
    let (base, _log) = start().await;
    let err = run(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/status/404")}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RuntimeError);
    assert_eq!(err.message, "404 Not Found");
    let details = err.details.expect("details");
    assert_eq!(details["statusCode"], 404);
    assert_eq!(details["body"], "status 404 body");
}

#[tokio::test]
async fn http_errors_become_bundles_when_not_stopping() {
    let (base, _log) = start().await;
    let registry = registry();
    let bundle = one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/status/404"), "stopOnHttpError": false}),
    )
    .await;
    assert_eq!(bundle["statusCode"], 404);
    assert_eq!(bundle["data"], "status 404 body");

    // v3: errors only with "Evaluate all states as errors".
    let bundle = one(
        &registry,
        "http:ActionSendData",
        json!({"handleErrors": false}),
        json!({"url": format!("{base}/status/500")}),
    )
    .await;
    assert_eq!(bundle["statusCode"], 500);
    let err = run(
        &registry,
        "http:ActionSendData",
        json!({"handleErrors": true}),
        json!({"url": format!("{base}/status/500")}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RuntimeError);
    assert_eq!(err.message, "500 Internal Server Error");
}

#[tokio::test]
async fn http_429_is_a_rate_limit_error_with_retry_after() {
    let (base, _log) = start().await;
    let err = run(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/limited")}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimitError);
    assert_eq!(err.delay_ms, Some(7000));
    assert_eq!(err.message, "429 Too Many Requests");
    assert_eq!(err.details.unwrap()["body"], "slow down");
}

#[tokio::test]
async fn slow_server_is_a_module_timeout() {
    let (base, _log) = start().await;
    let started = Instant::now();
    let err = run(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/slow"), "timeout": 1}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ModuleTimeoutError, "{err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_a_connection_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = run(
        &registry(),
        "http:ActionSendData",
        json!({}),
        json!({"url": format!("http://127.0.0.1:{port}/x?token=hidden"), "method": "get"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConnectionError, "{err:?}");
    assert!(
        err.message.starts_with("could not connect"),
        "{}",
        err.message
    );
    assert!(
        err.message.to_lowercase().contains("refused"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("hidden"),
        "the URL leaked into {}",
        err.message
    );
}

#[tokio::test]
async fn oversized_responses_fail() {
    let (base, _log) = start().await;
    let small = BuiltinRegistry::new(HttpOptions {
        max_response_bytes: 1024 * 1024,
        ..HttpOptions::allowing_loopback()
    })
    .unwrap();
    for path in ["big", "big-stream"] {
        let err = run(
            &small,
            "http:MakeRequest",
            json!({}),
            json!({"url": format!("{base}/{path}")}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RuntimeError, "{path}: {err:?}");
        assert!(
            err.message.contains("exceeds the limit of 1048576 bytes"),
            "{path}: {}",
            err.message
        );
    }
    // The same responses fit under the default limit.
    let bundle = one(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/big-stream")}),
    )
    .await;
    assert_eq!(bundle["data"].as_str().unwrap().len(), 64 * 32 * 1024);
}

#[tokio::test]
async fn redirects_follow_or_return() {
    let (base, _log) = start().await;
    let registry = registry();
    let followed = one(
        &registry,
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/redirect"), "allowRedirects": true}),
    )
    .await;
    assert_eq!(followed["statusCode"], 200);
    assert_eq!(followed["data"]["query"], "from=redirect");
    let returned = one(
        &registry,
        "http:ActionSendData",
        json!({}),
        json!({"url": format!("{base}/redirect"), "followRedirect": false}),
    )
    .await;
    assert_eq!(returned["statusCode"], 302);
    assert_eq!(returned["headers"]["location"], "/echo?from=redirect");
}

#[tokio::test]
async fn set_cookie_headers_are_listed() {
    let (base, _log) = start().await;
    let bundle = one(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/cookies")}),
    )
    .await;
    assert_eq!(
        bundle["cookieHeaders"],
        json!(["a=1; Path=/", "b=2; HttpOnly"])
    );
    assert_eq!(
        bundle["headers"]["set-cookie"],
        json!(["a=1; Path=/", "b=2; HttpOnly"])
    );
    let plain = one(
        &registry(),
        "http:MakeRequest",
        json!({}),
        json!({"url": format!("{base}/text")}),
    )
    .await;
    assert!(plain.get("cookieHeaders").is_none(), "{plain}");
}

#[tokio::test]
async fn invalid_url_is_a_data_error() {
    let implementation = registry().module("http:MakeRequest").unwrap();
    let parameters = serde_json::Map::new();
    for url in ["not a url", "ftp://example.org/file", ""] {
        let err = implementation
            .call(Invocation {
                module_id: 1,
                module: "http:MakeRequest",
                parameters: &parameters,
                mapper: json!({ "url": url }),
                context: &switchyard::module::ExecutionContext::new("x"),
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DataError, "{url}");
        assert!(err.message.starts_with("mapper.url"), "{}", err.message);
    }
}

#[test]
fn check_requires_url_and_rejects_unknown_methods() {
    let registry = registry();
    for module in ["http:MakeRequest", "http:ActionSendData"] {
        let implementation = registry.module(module).unwrap();
        let problems = implementation.check(&serde_json::Map::new(), &json!({"method": "TRACE"}));
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec!["mapper.url", "mapper.method"],
            "{module}: {problems:?}"
        );
    }
}
