//! What a webhook reply may say about itself. `/hooks/*` answers from the console's origin,
//! and a scenario chooses its reply's status, headers and body (`gateway:WebhookRespond`), so
//! a reply must never act as the console: HTML built from a caller's input would otherwise
//! run script as a signed-in administrator.
//!
//! Invariants: every response under `/hooks/` (the scenario's reply, the acknowledgement, a
//! verification answer, an error) carries `Content-Security-Policy: sandbox` (the browser
//! gives the document an opaque origin: no script, no cookies, no same-origin requests) and
//! `X-Content-Type-Options: nosniff`, set by [`guard`] over whatever a handler set; and a
//! scenario's headers pass [`scenario_may_set`] first, which drops those that act on the
//! console's origin or on the connection ([`DROPPED`], listed in the README).

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The policy of every hook reply: a sandbox with nothing allowed.
pub const HOOK_REPLY_CSP: &str = "sandbox";

/// Headers a scenario's reply may not set (lower case; `access-control-` is every CORS
/// header). Cookies and CORS grants would act for the console's origin; a policy of the
/// scenario's would replace the sandbox; HSTS and `Clear-Site-Data` bind or wipe the whole
/// origin; `Service-Worker-Allowed` widens a worker's scope; the hop-by-hop headers and the
/// body's length describe the connection, which is the server's.
pub const DROPPED: &[&str] = &[
    "set-cookie",
    "set-cookie2",
    "access-control-",
    "content-security-policy",
    "content-security-policy-report-only",
    "strict-transport-security",
    "clear-site-data",
    "service-worker-allowed",
    "x-content-type-options",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Whether a scenario's reply may carry the header `name`.
pub fn scenario_may_set(name: &HeaderName) -> bool {
    let name = name.as_str();
    !DROPPED
        .iter()
        .any(|dropped| name == *dropped || (dropped.ends_with('-') && name.starts_with(dropped)))
}

/// `router` with the sandbox and `nosniff` on every response of its routes, replacing any a
/// handler set.
pub fn guard<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HOOK_REPLY_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_acting_on_the_origin_or_the_connection_are_dropped() {
        for name in [
            "Set-Cookie",
            "access-control-allow-origin",
            "Access-Control-Allow-Credentials",
            "access-control-expose-headers",
            "Content-Security-Policy",
            "content-security-policy-report-only",
            "Strict-Transport-Security",
            "Connection",
            "Transfer-Encoding",
            "Upgrade",
            "Content-Length",
            "X-Content-Type-Options",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(!scenario_may_set(&name), "{name} passed");
        }
        for name in [
            "Content-Type",
            "Location",
            "X-Order",
            "Cache-Control",
            "ETag",
            "Content-Disposition",
            "X-Access-Control",
            "Set-Cookies-Later",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(scenario_may_set(&name), "{name} was dropped");
        }
    }
}
