//! The headers and the throttle that keep the console's origin safe (issue 22 points 1, 3,
//! 6), over HTTP against the real `switchyard serve` on SQLite:
//!
//! - `hook_replies_are_sandboxed`: every `/hooks/` response carries `Content-Security-Policy:
//!   sandbox` and `nosniff`; a scenario's `Set-Cookie`, CORS grants, policy, HSTS and
//!   hop-by-hop headers are dropped, its other headers kept.
//! - `console_pages_send_the_security_headers`: no framing, the console's policy (no inline
//!   script), `nosniff`, `Referrer-Policy`, `no-store` on pages; assets keep their caching.
//! - `wrong_tokens_are_throttled_per_client_address`: clients on different loopback addresses
//!   (127.0.0.2, …): past five wrong tokens an address gets 429 with `Retry-After` — for the
//!   API and the console's sign-in alike, which says how long to wait — while another
//!   address's valid requests go through; when the wait is over the right token works.
//!
//! The browser's side of point 1 is `tests/console.rs` `a_hook_reply_cannot_act_as_the_console`.

mod common;
#[path = "service/harness.rs"]
mod harness;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use harness::*;

async fn service() -> (TestDb, Service) {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("a SQLite database");
    let svc = db.serve(&[]).await;
    (db, svc)
}

/// A client whose requests come from `ip` (a loopback address), following no redirect.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// A scenario answering HTML with the caller's input and every header a reply may not set.
fn greedy_reply() -> Value {
    json!({"name": "greedy reply", "flow": [
        {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": "greedy"}},
        {"id": 2, "module": "gateway:WebhookRespond", "mapper": {
            "status": "200",
            "headers": [
                {"key": "Content-Type", "value": "text/html; charset=utf-8"},
                {"key": "X-Order", "value": "{{1.id}}"},
                {"key": "Set-Cookie", "value": "switchyard_session=planted; Path=/"},
                {"key": "Access-Control-Allow-Origin", "value": "*"},
                {"key": "Access-Control-Allow-Credentials", "value": "true"},
                {"key": "Content-Security-Policy", "value": "default-src *"},
                {"key": "Strict-Transport-Security", "value": "max-age=63072000"},
                {"key": "X-Content-Type-Options", "value": "sniff-away"},
                {"key": "Connection", "value": "close"},
                {"key": "Upgrade", "value": "h2c"}
            ],
            "body": "<h1>Thanks {{1.name}}</h1>"}}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_replies_are_sandboxed() {
    let (_db, svc) = service().await;
    let http = client_from("127.0.0.1");
    let (_, greedy) = svc.api.create_active(&greedy_reply()).await;
    let reply = hook_json(
        &http,
        &svc.url(&greedy.unwrap()),
        &json!({"id": "A-9", "name": "<script>alert(1)</script>"}),
    )
    .await
    .expect(200, "the scenario's reply");
    assert_eq!(reply.text, "<h1>Thanks <script>alert(1)</script></h1>");
    assert_eq!(reply.header("content-security-policy"), Some("sandbox"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    // What the scenario may set is kept…
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("x-order"), Some("A-9"));
    // …what would act for the console's origin or the connection is not.
    for dropped in [
        "set-cookie",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "strict-transport-security",
        "connection",
        "upgrade",
    ] {
        assert_eq!(reply.header(dropped), None, "{dropped} was sent");
    }
    assert_eq!(
        reply
            .headers
            .get_all("content-security-policy")
            .iter()
            .count(),
        1
    );

    // The acknowledgement of a scenario that does not answer, and an error, are sandboxed too.
    let (_, plain) = svc.api.create_active(&hook_scenario("plain")).await;
    let ack = hook_json(&http, &svc.url(&plain.unwrap()), &json!({"n": 1}))
        .await
        .expect(200, "an acknowledgement");
    assert_eq!(ack.header("content-security-policy"), Some("sandbox"));
    let unknown = hook_json(&http, &svc.url("/hooks/no-such-hook"), &json!({}))
        .await
        .expect(404, "an unknown hook");
    assert_eq!(unknown.header("content-security-policy"), Some("sandbox"));
    assert_eq!(unknown.header("x-content-type-options"), Some("nosniff"));
}

/// The `switchyard_session=…` pair of a sign-in's `Set-Cookie`.
async fn sign_in(http: &reqwest::Client, base: &str) -> String {
    let signed_in = http
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_send_the_security_headers() {
    let (_db, svc) = service().await;
    let http = client_from("127.0.0.1");
    let cookie = sign_in(&http, &svc.base).await;
    for path in ["/login", "/scenarios", "/scenarios/new", "/connect"] {
        let page = Reply::from(
            http.get(svc.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap(),
        )
        .await
        .expect(200, path);
        assert!(page.text.contains("<html"), "{path}: {}", page.text);
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{path}");
        let policy = page.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
        assert_eq!(page.header("cache-control"), Some("no-store"), "{path}");
        // The pages carry no inline script or handler for the policy to block.
        assert!(!page.text.contains("<script>"), "{path}");
        assert!(!page.text.contains(" onchange="), "{path}");
        assert!(!page.text.contains(" onclick="), "{path}");
    }
    // The redirect of a signed-out page and a form's answer carry them as well.
    let redirect = Reply::from(http.get(svc.url("/scenarios")).send().await.unwrap())
        .await
        .expect(302, "signed out");
    assert_eq!(redirect.header("x-frame-options"), Some("DENY"));
    // Assets keep their own caching.
    let css = Reply::from(
        http.get(svc.url("/console/assets/console.css"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "the stylesheet");
    assert_eq!(css.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(css.header("x-content-type-options"), Some("nosniff"));
}

/// A GET of the scenario list with `token`.
async fn api_list(http: &reqwest::Client, base: &str, token: &str) -> Reply {
    Reply::from(
        http.get(format!("{base}/api/scenarios"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A sign-in at the console with `token`.
async fn console_sign_in(http: &reqwest::Client, base: &str, token: &str) -> Reply {
    Reply::from(
        http.post(format!("{base}/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The `Retry-After` of a 429, checked to be a whole number of seconds from 1 to 900.
fn retry_after(reply: &Reply) -> u64 {
    let secs: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=900).contains(&secs), "Retry-After {secs}");
    secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_throttled_per_client_address() {
    let (_db, svc) = service().await;
    let base = svc.base.as_str();
    let guesser = client_from("127.0.0.2");
    let other = client_from("127.0.0.3");

    // Five wrong tokens are told so; the sixth blocks the address.
    for n in 0..5 {
        let reply = api_list(&guesser, base, &format!("guess-{n}")).await;
        reply.expect(401, "a wrong token under the allowance");
    }
    let blocked = api_list(&guesser, base, "guess-5")
        .await
        .expect(429, "the sixth wrong token");
    assert_eq!(blocked.json["error"]["code"], "too_many_failures");
    retry_after(&blocked);
    // While blocked, even the right token is not looked at…
    let right = api_list(&guesser, base, TOKEN)
        .await
        .expect(429, "the right token from a blocked address");
    retry_after(&right);
    // …and the console's sign-in from that address says how long to wait.
    let page = console_sign_in(&guesser, base, TOKEN)
        .await
        .expect(429, "signing in from a blocked address");
    let secs = retry_after(&page);
    assert!(page.text.contains("Too many wrong tokens"), "{}", page.text);
    assert!(page.text.contains(&format!("Try again in {secs} second")));
    let form = Reply::from(guesser.get(format!("{base}/login")).send().await.unwrap())
        .await
        .expect(200, "the sign-in form from a blocked address");
    assert!(form.text.contains("Try again in"), "{}", form.text);
    // Another address is not slowed: its valid requests and its sign-in go through.
    api_list(&other, base, TOKEN)
        .await
        .expect(200, "another address's valid request");
    console_sign_in(&other, base, TOKEN)
        .await
        .expect(303, "another address signs in");
    let form = Reply::from(other.get(format!("{base}/login")).send().await.unwrap()).await;
    assert!(!form.text.contains("Try again in"), "{}", form.text);

    // Once the wait is over, the right token works, and its success clears the count.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = api_list(&guesser, base, TOKEN).await;
        if reply.status == 200 {
            break;
        }
        reply.expect(429, "waiting out the block");
        assert!(Instant::now() < deadline, "the block never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api_list(&guesser, base, "guess-after")
        .await
        .expect(401, "a wrong token after a success starts the count again");

    // The console's wrong sign-ins count the same way, and with the API's.
    let signer = client_from("127.0.0.4");
    for _ in 0..5 {
        let page = console_sign_in(&signer, base, "not-the-token")
            .await
            .expect(401, "a wrong sign-in under the allowance");
        assert!(page.text.contains("not this server's API token"));
    }
    let page = console_sign_in(&signer, base, "not-the-token")
        .await
        .expect(429, "the sixth wrong sign-in");
    retry_after(&page);
    assert!(page.text.contains("Try again in"), "{}", page.text);
    api_list(&signer, base, TOKEN)
        .await
        .expect(429, "the API from an address blocked at sign-in");
    // A request that presents no token guesses nothing: 401 as ever.
    let bare = Reply::from(
        signer
            .get(format!("{base}/api/scenarios"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    bare.expect(401, "no token at all");
}
