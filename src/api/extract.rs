//! The extractors the API's handlers use instead of axum's own: the same extraction, but every
//! rejection becomes an [`ApiError`], so a bad query string, path parameter or body gets the
//! `{"error": {"code", "message", "path"?}}` envelope (never axum's `text/plain`) with the
//! status axum gives it (400, 413, 415, 422). The message says what was wrong and where:
//! `query parameter "limit": invalid digit found in string`, with `path` naming the parameter
//! or body field. This is the "custom extractor" form of axum's `customize-extractor-error`
//! example, written out to avoid a macro crate for five wrappers.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{
    BytesRejection, JsonRejection, PathRejection, QueryRejection, StringRejection,
};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Path parameters, deserialized as by `axum::extract::Path`.
#[derive(Debug)]
pub struct Path<T>(pub T);

/// The query string, deserialized as by `axum::extract::Query`.
#[derive(Debug)]
pub struct Query<T>(pub T);

/// A JSON body (`Content-Type: application/json`), deserialized as by `axum::Json`; as a
/// response, a JSON body like `axum::Json`, so one `Json` serves handlers both ways.
#[derive(Debug)]
pub struct Json<T>(pub T);

/// The body as UTF-8 text.
#[derive(Debug)]
pub struct Text(pub String);

/// The body as bytes.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<S: Send + Sync> FromRequest<S> for Text {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Text(String::from_request(request, state).await?))
    }
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(RawBody(Bytes::from_request(request, state).await?))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let detail = inner_message(&rejection).unwrap_or_else(|| rejection.body_text());
        if let Some(name) = missing_field(&detail) {
            return ApiError::bad_request(format!("query parameter \"{name}\" is required"))
                .at(name);
        }
        match located(&detail) {
            Some((name, problem)) => {
                ApiError::bad_request(format!("query parameter \"{name}\": {problem}")).at(name)
            }
            None => ApiError::bad_request(format!("query string: {detail}")),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
            // Only a route/handler mismatch gets here: a bug, not bad input.
            return ApiError::internal("path parameters", rejection.body_text());
        };
        if failed.status().is_server_error() {
            return ApiError::internal("path parameters", failed.body_text());
        }
        match failed.into_kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => {
                ApiError::bad_request(format!("path parameter \"{key}\" is not valid UTF-8"))
                    .at(key)
            }
            ErrorKind::ParseErrorAtKey {
                key, expected_type, ..
            } => ApiError::bad_request(format!(
                "path parameter \"{key}\": expected a value of type {expected_type}"
            ))
            .at(key),
            ErrorKind::ParseError { expected_type, .. } => ApiError::bad_request(format!(
                "path parameter: expected a value of type {expected_type}"
            )),
            ErrorKind::DeserializeError { key, message, .. } => {
                ApiError::bad_request(format!("path parameter \"{key}\": {message}")).at(key)
            }
            kind => ApiError::bad_request(format!("path parameters: {kind}")),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                status,
                "unsupported_media_type",
                "the body must be JSON, sent with `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => {
                let detail = inner_message(&e).unwrap_or_else(|| e.body_text());
                ApiError::bad_request(format!("the body is not valid JSON: {detail}"))
            }
            JsonRejection::JsonDataError(e) => {
                let detail = inner_message(&e).unwrap_or_else(|| e.body_text());
                match located(&detail) {
                    Some((field, problem)) => ApiError::new(
                        status,
                        "invalid_body",
                        format!("body field \"{field}\": {problem}"),
                    )
                    .at(field),
                    None => ApiError::new(status, "invalid_body", format!("the body: {detail}")),
                }
            }
            JsonRejection::BytesRejection(e) => e.into(),
            other => by_status(other.status(), other.body_text()),
        }
    }
}

impl From<StringRejection> for ApiError {
    fn from(rejection: StringRejection) -> Self {
        match rejection {
            StringRejection::InvalidUtf8(_) => {
                ApiError::bad_request("the body is not valid UTF-8 text")
            }
            other => deadline_exceeded(&other)
                .unwrap_or_else(|| body_unreadable(other.status(), other.body_text())),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if let Some(late) = deadline_exceeded(&rejection) {
            return late;
        }
        body_unreadable(rejection.status(), rejection.body_text())
    }
}

/// The 408 for a body that missed the server's deadline
/// ([`super::server::BodyDeadlineExceeded`]), if that is what `rejection` stems from.
fn deadline_exceeded(rejection: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut cause = Some(rejection);
    while let Some(error) = cause {
        if let Some(late) = error.downcast_ref::<super::server::BodyDeadlineExceeded>() {
            return Some(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("{late}; send it faster, or in a new request"),
            ));
        }
        cause = error.source();
    }
    None
}

/// A body that could not be read: over the size limit (413) or cut off.
fn body_unreadable(status: StatusCode, detail: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "payload_too_large",
            "the body is larger than this endpoint accepts",
        )
    } else {
        by_status(status, detail)
    }
}

/// A rejection this module has no words of its own for: axum's text, with a code that
/// follows its status.
fn by_status(status: StatusCode, detail: String) -> ApiError {
    if status.is_server_error() {
        return ApiError::internal("request", detail);
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "bad_request",
    };
    ApiError::new(status, code, detail)
}

/// The deserializer's own message, without axum's generic prefix ("Failed to deserialize
/// query string: ").
fn inner_message(rejection: &dyn std::error::Error) -> Option<String> {
    rejection.source().map(ToString::to_string)
}

/// Splits `serde_path_to_error`'s `PATH: PROBLEM` into its parts. Paths name fields of our
/// own request types (`limit`, `items[0].name`), which hold no whitespace; a message that
/// starts with words (`invalid type: …`) has no path.
fn located(detail: &str) -> Option<(&str, &str)> {
    let (path, problem) = detail.split_once(": ")?;
    (!path.is_empty() && !path.contains(char::is_whitespace) && !path.contains('`'))
        .then_some((path, problem))
}

/// `missing field `name`` → `name`.
fn missing_field(detail: &str) -> Option<&str> {
    detail
        .strip_prefix("missing field `")?
        .strip_suffix('`')
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    //! Each extractor behind a real listener on 127.0.0.1, driven with bad requests.

    use axum::Router;
    use axum::routing::post;
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Deserialize)]
    struct Params {
        count: u32,
    }

    #[derive(Deserialize)]
    struct Item {
        name: String,
    }

    async fn serve() -> String {
        let app = Router::new()
            .route(
                "/query",
                post(|Query(p): Query<Params>| async move { p.count.to_string() }),
            )
            .route(
                "/path/{n}",
                post(|Path(n): Path<u32>| async move { n.to_string() }),
            )
            .route(
                "/json",
                post(|Json(items): Json<Vec<Item>>| async move {
                    items.into_iter().map(|i| i.name).collect::<String>()
                }),
            )
            .route("/text", post(|Text(t): Text| async move { t }))
            .route(
                "/bytes",
                post(|RawBody(b): RawBody| async move { b.len().to_string() }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(16));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    /// Sends `body` with `content_type`; returns the status and the error envelope.
    async fn send(
        base: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        if status != 200 {
            assert_eq!(
                response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{path}: a rejection is JSON"
            );
        }
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(json!(text)))
    }

    #[tokio::test]
    async fn every_rejection_is_an_envelope_naming_what_and_where() {
        let base = serve().await;
        let json = Some("application/json");

        let (status, body) = send(&base, "/query?count=7", None, vec![]).await;
        assert_eq!((status, body), (200, json!(7)));
        let (status, body) = send(&base, "/query?count=many", None, vec![]).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"],
            json!({"code": "bad_request", "path": "count",
                   "message": "query parameter \"count\": invalid digit found in string"})
        );
        let (status, body) = send(&base, "/query", None, vec![]).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"],
            json!({"code": "bad_request", "path": "count",
                   "message": "query parameter \"count\" is required"})
        );

        let (status, body) = send(&base, "/path/x1", None, vec![]).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"],
            json!({"code": "bad_request",
                   "message": "path parameter: expected a value of type u32"})
        );
        let (status, body) = send(&base, "/path/%FF", None, vec![]).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["error"]["message"],
            "path parameter \"n\" is not valid UTF-8"
        );

        let (status, body) = send(&base, "/json", None, b"[]".to_vec()).await;
        assert_eq!(status, 415);
        assert_eq!(body["error"]["code"], "unsupported_media_type");
        let (status, body) = send(&base, "/json", json, b"[{".to_vec()).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the body is not valid JSON: ")),
            "{body}"
        );
        let (status, body) = send(&base, "/json", json, br#"[{"name":1}]"#.to_vec()).await;
        assert_eq!(status, 422);
        assert_eq!(body["error"]["code"], "invalid_body");
        assert_eq!(body["error"]["path"], "[0].name");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("body field \"[0].name\": invalid type")),
            "{body}"
        );

        let (status, body) = send(&base, "/text", None, vec![0xff, 0xfe]).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["message"], "the body is not valid UTF-8 text");
        for path in ["/text", "/bytes", "/json"] {
            let (status, body) = send(&base, path, json, vec![b' '; 17]).await;
            assert_eq!(status, 413, "{path}");
            assert_eq!(body["error"]["code"], "payload_too_large", "{path}");
        }
    }

    #[test]
    fn a_path_is_a_leading_word_without_spaces() {
        assert_eq!(
            located("limit: invalid digit found in string"),
            Some(("limit", "invalid digit found in string"))
        );
        assert_eq!(located("invalid type: integer `1`, expected a map"), None);
        assert_eq!(missing_field("missing field `scenario`"), Some("scenario"));
        assert_eq!(missing_field("unknown field `x`"), None);
    }
}
