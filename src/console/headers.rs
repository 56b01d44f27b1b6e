//! The security headers of every console response (issue 22 point 3), set in one layer over
//! the console's routes ([`secure`]): the page cannot be framed (`X-Frame-Options: DENY` and
//! `frame-ancestors 'none'`), runs only the console's own script and stylesheet (a
//! Content-Security-Policy of `'self'` with no inline script or style allowed — the pages
//! carry none, `assets/console/console.js` holds every handler), is never sniffed as another
//! type, sends no referrer to other origins, and is not cached (`Cache-Control: no-store`,
//! unless the handler chose its own caching, as the static assets do).
//!
//! Invariant: a console page needs nothing the policy forbids; the browser tests
//! (`tests/console.rs`) walk every page with it and fail on a policy violation.

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The console's Content-Security-Policy.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's policy for a page whose forms lead to other `origins` (`https://host`): the
/// connect page's *Connect* posts to the console, which answers with a redirect to the OAuth
/// provider, and browsers hold the whole redirect chain of a form to `form-action`.
pub fn csp_with_form_targets(origins: &[String]) -> String {
    let mut targets = String::from("form-action 'self'");
    for origin in origins {
        targets.push(' ');
        targets.push_str(origin);
    }
    CONSOLE_CSP.replace("form-action 'self'", &targets)
}

/// `router` with the console's security headers on every response of its routes.
pub fn secure<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        // A page that posts forms to other origins says so in its own policy
        // ([`csp_with_form_targets`]); every other response gets the console's.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONSOLE_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}
