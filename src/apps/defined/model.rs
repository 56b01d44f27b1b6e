//! The app definition format (`modules/*.json`, `docs/apps.md`): plain serde types shaped after
//! Make's Custom Apps SDK (`reference/make.md` §4), with `schemars` for `switchyard schema
//! --app`. No behaviour lives here: `load` checks what serde cannot and compiles every
//! `{{…}}` string into an IML template.
//!
//! Invariants: every struct refuses unknown keys (`deny_unknown_fields`), so a misspelt key is
//! a load error with its JSON path rather than a silently ignored directive; strings that hold
//! IML (`url`, `qs`, `body`, `output` …) are kept as JSON here and parsed once by `load`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::module::ErrorKind;

/// One app: its identity, the base every module inherits, its connection types and modules.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppDefinition {
    /// The JSON Schema this file follows (for editors); ignored.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The app's id and the prefix of its module types (`chatbot` → `chatbot:GetUser`):
    /// lower-case letters, digits and dashes, starting with a letter.
    pub name: String,
    /// The definition's version (semver, e.g. `1.0.0`).
    pub version: String,
    /// The app's name as people read it.
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// A URL or file name of the app's icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Longer documentation (Markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readme: Option<String>,
    /// What every module and connection test inherits: base URL, headers, query, error mapping.
    pub base: Base,
    /// The connection types a module can authenticate with.
    #[serde(default)]
    pub connections: Vec<ConnectionType>,
    /// The modules, by name (the part after `app:` in a module type).
    pub modules: IndexMap<String, ModuleSpec>,
}

/// `base`: inherited by every request of the app (Make's `base.imljson`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Base {
    /// The URL relative request URLs are resolved against (IML, e.g.
    /// `{{connection.baseUrl}}`); it must render to an absolute http(s) URL.
    pub base_url: String,
    /// Headers sent with every request (IML values); a module's headers win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// Query parameters sent with every request (IML values); a module's win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qs: Option<Value>,
    /// How every response is judged: `valid` and `error` (a module's own win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<BaseResponse>,
    /// The most requests the API takes from one connection in a period, and where it says
    /// how long to wait after a 429 (`rate.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
}

/// `base.rateLimit`: every request of the app through one stored connection — all its
/// modules, all executions of the process — is held so that no window of `per` has more than
/// `requests` of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// The most requests in one window (1 to 100,000).
    pub requests: u32,
    /// The window: a whole number and a unit, `ms`, `s`, `m` or `h` (`1s`, `1m`).
    pub per: String,
    /// IML over `body` and `headers` of a 429 answer: the seconds to wait, when the API says
    /// it in its body (Telegram: `{{body.parameters.retry_after}}`). A `Retry-After` header
    /// is always honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// IML over `parameters` and `connection`: what the rate is counted by within one stored
    /// connection, for an API whose limit is per resource rather than per token (Airtable:
    /// `{{parameters.base}}`, 5 requests per second per base). An empty value counts with the
    /// connection's other calls that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `base.response`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BaseResponse {
    /// IML: whether a 2xx response is valid (default: it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSpec>,
}

/// The universal kinds of stored connection (`module::connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// An API key in a header or the query.
    ApiKey,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic …` from a user name and password.
    Basic,
    /// Any other secret the app's templates use.
    Secret,
    /// An OAuth2 token set obtained through an integration of the type's `provider`: sent as
    /// `Authorization: Bearer <access token>`, refreshed before it expires and once when the
    /// API answers 401.
    #[serde(rename = "oauth2")]
    OAuth2,
    /// A Google-style service account: its JSON key is exchanged (JWT-bearer grant) for
    /// short-lived access tokens, sent as `Authorization: Bearer …`.
    ServiceAccount,
}

impl ConnectionKind {
    pub fn name(self) -> &'static str {
        match self {
            ConnectionKind::ApiKey => "api_key",
            ConnectionKind::Bearer => "bearer",
            ConnectionKind::Basic => "basic",
            ConnectionKind::Secret => "secret",
            ConnectionKind::OAuth2 => "oauth2",
            ConnectionKind::ServiceAccount => "service_account",
        }
    }

    /// Whether the credential is an access token the vault obtains (`oauth2`,
    /// `service_account`) rather than a value stored as it is.
    pub fn is_token_grant(self) -> bool {
        matches!(
            self,
            ConnectionKind::OAuth2 | ConnectionKind::ServiceAccount
        )
    }
}

/// A connection type: what a stored connection of it holds and how it authenticates.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionType {
    /// The type's name within the app (`token`), named by modules' `connection`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub kind: ConnectionKind,
    /// `oauth2` and `service_account` types: the OAuth provider whose integrations obtain
    /// the tokens (a preset of `providers.json` such as `google`, `microsoft`, `slack`, or
    /// `oauth2` for any provider declared with its URLs; `google_service_account` for a
    /// service account). A connection made through an integration of another provider is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `oauth2` and `service_account` types: the scopes every connection of this type needs
    /// (each module may add its own with its `scopes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// A JSON Schema (an object schema) of the fields a stored connection holds; stored
    /// connections are validated against it. A property's `default` is used when the stored
    /// connection has no value for it. Optional for `oauth2` and `service_account` types
    /// (their token fields are the vault's, never checked against it).
    #[serde(default = "any_object_schema")]
    pub configuration: Value,
    /// How a request carries the connection: one header or one query parameter, IML over
    /// `connection`. `Authorization: Bearer …` / `Basic …` become the transport's bearer or
    /// basic credential, any other header or parameter an API key. Left out for `oauth2` and
    /// `service_account` types: their access token is always the bearer credential.
    #[serde(default)]
    pub auth: AuthSpec,
    /// A request that proves a connection works (`connections test`): any 2xx answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<RequestSpec>,
}

fn any_object_schema() -> Value {
    serde_json::json!({"type": "object"})
}

/// `connections[].auth`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qs: Option<Map<String, Value>>,
}

/// How Make places a module (`reference/make.md` §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModuleType {
    /// A polling trigger: needs `response.trigger`.
    Trigger,
    /// Fed by a webhook: needs `webhook`.
    InstantTrigger,
    /// Many bundles (`response.iterate`), bounded by `response.limit`.
    Search,
    /// One bundle.
    Action,
    /// "Make an API Call": a path relative to the base URL, guarded.
    Universal,
}

/// One module.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    pub label: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: ModuleType,
    /// The connection type (its `name`) the module authenticates with; the blueprint names the
    /// stored connection in `parameters.__IMTCONN__`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The OAuth scopes this module needs beyond its connection type's `scopes`
    /// (`App::scopes` gives the union for a type); a token granted without one fails this
    /// module with an `InvalidAccessTokenError` naming it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Static fields, read from the blueprint's `parameters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<FieldSpec>,
    /// Mappable fields, read from the blueprint's `mapper` (Make's `expect`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<FieldSpec>,
    /// The request, or several run in order (the last one's response is the output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<OneOrMany<RequestSpec>>,
    /// The response of the (last) request, unless that request has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseSpec>,
    /// Next pages of the (last) request, unless that request has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<PaginationSpec>,
    /// Instant triggers: how the webhook is registered, removed and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

/// A field of a module's form (Make's parameter spec).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// Used when the field is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// `select`: the allowed values; an option's `nested` fields apply when it is chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SelectOption>,
    /// `select`: several values (an array).
    #[serde(default)]
    pub multiple: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// `array`: one field spec (items of that type) or a list of fields (items are
    /// collections); `collection`: a list of fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Box<OneOrMany<FieldSpec>>>,
    /// Shown under "advanced settings" in Make; no effect here.
    #[serde(default)]
    pub advanced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Validate>,
}

/// The field types the interpreter checks and converts (Make's, `reference/make.md` §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Number,
    Integer,
    Uinteger,
    Boolean,
    Select,
    Date,
    Array,
    Collection,
    Email,
    Url,
    Timezone,
    Hidden,
    Any,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Integer => "integer",
            FieldType::Uinteger => "uinteger",
            FieldType::Boolean => "boolean",
            FieldType::Select => "select",
            FieldType::Date => "date",
            FieldType::Array => "array",
            FieldType::Collection => "collection",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Timezone => "timezone",
            FieldType::Hidden => "hidden",
            FieldType::Any => "any",
        }
    }
}

/// One choice of a `select` field.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectOption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub value: Value,
    /// Fields that apply (beside this one) when this option is chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nested: Vec<FieldSpec>,
}

/// Extra checks of a field's value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    /// A regular expression text must match (whole value: anchor it with `^…$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Smallest number, or shortest text or array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest number, or longest text or array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// One request (Make's communication directive). Every string is IML.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Absolute, or relative to the base URL (`/users/{{parameters.userId}}`).
    pub url: String,
    /// `GET` unless given (IML allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Query parameters: an object of IML values (`"{{...}}": "<collection>"` spreads one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qs: Option<Value>,
    /// Headers, as `qs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// The body (any JSON with IML strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// How the body is encoded (default `json`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub body_type: Option<BodyType>,
    /// IML: the request is skipped when this is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    /// IML values set as `temp.*` before the request is rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<PaginationSpec>,
}

/// How a request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyType {
    /// JSON (`application/json`).
    Json,
    /// A form (`application/x-www-form-urlencoded`) from an object.
    Urlencoded,
    /// The body as text: `application/json` when it is a JSON object or array, else
    /// `text/plain`, unless the headers set a `Content-Type`.
    Text,
    /// `multipart/form-data` from an object: a file (binary value) becomes a file part,
    /// streamed; anything else a text field.
    Multipart,
    /// `multipart/related` from an object (Google's uploads of metadata and media): each
    /// entry in order is a part, a file with its own type, anything else JSON.
    Related,
}

/// How a response becomes bundles (Make's response directives).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// The bundle (IML over `body`, `headers`, `statusCode`, `item` …); default `body`, or
    /// `item` when iterating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The array whose items each make a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterate: Option<IterateSpec>,
    /// IML: the most bundles returned (pagination stops there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Value>,
    /// IML: whether a 2xx response is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSpec>,
    /// Polling triggers: each item's id and date, and how the API orders them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerSpec>,
    /// Webhook attach: what is kept with the hook (`webhook.*` in `detach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// IML values set as `temp.*` for the requests that follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<Value>,
    /// `binary`: the body is a file whatever its type (a download), `body` its handle;
    /// `auto` (the default): a body whose `Content-Type` is not text is a file.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub body_type: Option<ResponseBody>,
    /// With `iterate`: a request sent once per item (its IML reads the item as `item`), whose
    /// output (its own `response.output`, default its body) replaces the item — for an API
    /// that lists ids and is asked for each item by its id (Gmail's messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<Box<RequestSpec>>,
}

/// How a response body is read (`response.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseBody {
    Auto,
    Binary,
}

/// `response.iterate`: `"{{body.data}}"`, or `{container, condition}`.
#[derive(Debug, Clone, Serialize)]
pub struct IterateSpec {
    /// IML: the array.
    pub container: String,
    /// IML over `item`: items for which it is false are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
}

/// `response.error`: a default message and kind, and per HTTP status (`"404": {…}`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorSpec {
    /// IML over `statusCode`, `body`, `headers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A Make error kind name (`DataError` …) instead of the one the status implies.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
    /// `type` written as IML (`{{…}}` over `statusCode`, `body`, `headers`): the kind of an
    /// invalid 2xx response chosen by what it says (Slack's `{"ok": false, "error": "invalid_auth"}`
    /// is an `InvalidAccessTokenError`, `channel_not_found` a `DataError`).
    #[serde(rename = "type", skip)]
    pub kind_of: Option<String>,
    /// By status code.
    #[serde(flatten)]
    pub statuses: IndexMap<u16, StatusError>,
}

/// `response.error["<status>"]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ErrorKindName>")]
    pub kind: Option<ErrorKind>,
}

/// Make's error kinds, for the schema.
#[derive(JsonSchema)]
#[allow(dead_code, clippy::enum_variant_names)]
enum ErrorKindName {
    RuntimeError,
    DataError,
    InconsistencyError,
    RateLimitError,
    ConnectionError,
    InvalidConfigurationError,
    InvalidAccessTokenError,
    IncompleteDataError,
    DuplicateDataError,
    ModuleTimeoutError,
    MaxResultsExceededError,
    UnexpectedError,
}

/// `response.trigger` (polling triggers, `reference/make.md` §1.7).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// IML over `item`: the item's id.
    pub id: String,
    /// IML over `item`: the item's date (ISO 8601); with it the cursor is date + id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// How the API lists items (default `unordered`).
    #[serde(default)]
    pub order: Order,
    /// The request asks the API only for items dated `data.lastDate` or later (Google
    /// Calendar's `updatedMin`): a first poll from now that lists nothing then keeps that
    /// poll's time as the cursor, so the next poll does not ask for everything.
    #[serde(
        default,
        rename = "sinceLastDate",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub since_last_date: bool,
    /// A request sent for each bundle a poll emits, once the poll has chosen them (its IML
    /// reads the bundle as `item`): an acknowledgement such as Gmail's "mark as read", never
    /// sent for items a limit leaves to a later poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted: Option<Box<RequestSpec>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first: paging stops at the first item older than the cursor.
    Desc,
    /// Every page is read.
    #[default]
    Unordered,
}

/// `pagination`: how the next page's request differs from the previous one. Its IML sees the
/// previous response (`body`, `headers`, `statusCode`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PaginationSpec {
    /// IML: whether there is a next page (default: while a page has items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Whether `qs`, `headers` and `body` extend the previous request's (default) or replace them.
    #[serde(default = "yes")]
    pub merge_with_parent: bool,
}

fn yes() -> bool {
    true
}

/// `webhook` (instant triggers, `reference/make.md` §4.7).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Registers `{{webhook.url}}` on the service; its `response.data` is kept with the hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<RequestSpec>,
    /// Removes it; `webhook.*` holds what attach kept. A 404 counts as removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detach: Option<RequestSpec>,
    /// IML over `method`, `query`, `headers`, `body`, `rawBody` (the body as received),
    /// `now`, `parameters` and `webhook`: whether a request on the hook is genuine (a
    /// provider's signature, its timestamp recent). A request for which it does not hold is
    /// answered 401 and never queued — verification requests too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticate: Option<Value>,
    /// How the service's verification requests are recognised and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSpec>,
    /// IML over `headers`, `query`, `body`: the service's id of a delivery (redeliveries
    /// repeat it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
}

/// `webhook.verification`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationSpec {
    /// IML over `method`, `query`, `headers`, `body`: whether a request is a verification.
    pub condition: Value,
    /// IML (also sees `webhook`): whether it is genuine; else it is answered 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<Value>,
    pub respond: RespondSpec,
}

/// The answer to a verification request.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondSpec {
    /// Default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `json` (default) or `text`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub body_type: Option<RespondType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RespondType {
    Json,
    Text,
}

// ---------------------------------------------------------------------------------------------
// Shapes serde's derive cannot express with paths intact

/// One `T` or an array of them. Deserialised through serde's visitor (not `untagged`), so an
/// error inside keeps its JSON path.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object or an array of objects")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany::Many)
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({"anyOf": [one, {"type": "array", "items": one}]})
    }
}

impl<'de> Deserialize<'de> for IterateSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            container: String,
            #[serde(default)]
            condition: Option<Value>,
        }
        struct IterateVisitor;
        impl<'de> Visitor<'de> for IterateVisitor {
            type Value = IterateSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IML string (\"{{body.items}}\") or {container, condition}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IterateSpec {
                    container: v.to_string(),
                    condition: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(IterateSpec {
                    container: full.container,
                    condition: full.condition,
                })
            }
        }
        deserializer.deserialize_any(IterateVisitor)
    }
}

impl JsonSchema for IterateSpec {
    fn schema_name() -> Cow<'static, str> {
        "IterateSpec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The array whose items each make a bundle: an IML string, or {container, condition}.",
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {"container": {"type": "string"}, "condition": {}},
                    "required": ["container"],
                    "additionalProperties": false,
                },
            ],
        })
    }
}

/// `error.type`: a Make error kind's name, or IML (`{{…}}`) naming one.
enum KindOrIml {
    Kind(ErrorKind),
    Iml(String),
}

impl<'de> Deserialize<'de> for KindOrIml {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.contains("{{") {
            Ok(KindOrIml::Iml(text))
        } else {
            text.parse().map(KindOrIml::Kind).map_err(de::Error::custom)
        }
    }
}

impl<'de> Deserialize<'de> for ErrorSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ErrorVisitor;
        impl<'de> Visitor<'de> for ErrorVisitor {
            type Value = ErrorSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with `message`, `type` and HTTP status codes (\"404\")")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut spec = ErrorSpec::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "message" => spec.message = Some(map.next_value()?),
                        "type" => match map.next_value::<KindOrIml>()? {
                            KindOrIml::Kind(kind) => spec.kind = Some(kind),
                            KindOrIml::Iml(text) => spec.kind_of = Some(text),
                        },
                        code => match code.parse::<u16>() {
                            Ok(status) if (100..=599).contains(&status) && code.len() == 3 => {
                                spec.statuses.insert(status, map.next_value()?);
                            }
                            _ => {
                                return Err(de::Error::custom(format!(
                                    "unknown key `{code}`, expected `message`, `type` or an HTTP \
                                     status code such as `404`"
                                )));
                            }
                        },
                    }
                }
                Ok(spec)
            }
        }
        deserializer.deserialize_map(ErrorVisitor)
    }
}

impl JsonSchema for ErrorSpec {
    fn schema_name() -> Cow<'static, str> {
        "ErrorSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let status = generator.subschema_for::<StatusError>();
        let kind = generator.subschema_for::<ErrorKindName>();
        json_schema!({
            "type": "object",
            "description": "The error of an HTTP error status (or of an invalid response): a default `message` (IML over statusCode, body, headers) and `type` (a Make error kind), and per status code.",
            "properties": {
                "message": {"type": "string"},
                "type": {"anyOf": [kind, {"type": "string", "pattern": "\\{\\{",
                    "description": "IML naming the kind of an invalid 2xx response (`valid` false) by what it says"}]},
            },
            "patternProperties": {"^[1-5][0-9][0-9]$": status},
            "additionalProperties": false,
        })
    }
}

/// The JSON Schema of the app definition format (`switchyard schema --app`).
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(AppDefinition)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, String> {
        serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn one_or_many_keeps_the_path_of_an_error() {
        let ok: OneOrMany<RequestSpec> = parse(json!({"url": "/a"})).unwrap();
        assert_eq!(ok.as_slice().len(), 1);
        let ok: OneOrMany<RequestSpec> = parse(json!([{"url": "/a"}, {"url": "/b"}])).unwrap();
        assert_eq!(ok.as_slice().len(), 2);
        let err =
            parse::<OneOrMany<RequestSpec>>(json!([{"url": "/a"}, {"ur": "/b"}])).unwrap_err();
        assert!(err.starts_with("[1]"), "{err}");
        assert!(err.contains("unknown field `ur`"), "{err}");
        let err = parse::<OneOrMany<RequestSpec>>(json!("/a")).unwrap_err();
        assert!(err.contains("an object or an array of objects"), "{err}");
    }

    #[test]
    fn error_spec_reads_statuses() {
        let spec: ErrorSpec = parse(json!({
            "message": "[{{statusCode}}] {{body.message}}",
            "type": "DataError",
            "404": {"message": "not found", "type": "DataError"},
        }))
        .unwrap();
        assert_eq!(spec.kind, Some(ErrorKind::DataError));
        assert_eq!(spec.statuses[&404].message.as_deref(), Some("not found"));
        for bad in [json!({"4044": {}}), json!({"msg": "x"}), json!({"099": {}})] {
            let err = parse::<ErrorSpec>(bad).unwrap_err();
            assert!(err.contains("expected `message`, `type`"), "{err}");
        }
        let err = parse::<ErrorSpec>(json!({"404": {"mesage": "x"}})).unwrap_err();
        assert!(err.starts_with("404"), "{err}");
        let err = parse::<ErrorSpec>(json!({"type": "NoSuchError"})).unwrap_err();
        assert!(err.starts_with("type"), "{err}");
        // IML choosing the kind of an invalid answer by what it says.
        let spec: ErrorSpec =
            parse(json!({"type": "{{if(body.error == 'x', 'DataError', '')}}"})).unwrap();
        assert_eq!(spec.kind, None);
        assert_eq!(
            spec.kind_of.as_deref(),
            Some("{{if(body.error == 'x', 'DataError', '')}}")
        );
    }

    #[test]
    fn iterate_is_a_string_or_an_object() {
        let spec: IterateSpec = parse(json!("{{body.data}}")).unwrap();
        assert_eq!(spec.container, "{{body.data}}");
        let spec: IterateSpec =
            parse(json!({"container": "{{body.data}}", "condition": "{{item.ok}}"})).unwrap();
        assert_eq!(spec.condition, Some(json!("{{item.ok}}")));
        assert!(parse::<IterateSpec>(json!({"contaner": "x"})).is_err());
    }

    #[test]
    fn the_schema_names_the_token_connection_kinds() {
        let text = json_schema().to_string();
        for kind in ["\"oauth2\"", "\"service_account\"", "\"api_key\""] {
            assert!(text.contains(kind), "{kind}");
        }
        let oauth: ConnectionType = parse(json!({
            "name": "google", "kind": "oauth2", "provider": "google",
            "scopes": ["https://www.googleapis.com/auth/tasks"]
        }))
        .unwrap();
        assert_eq!(oauth.kind, ConnectionKind::OAuth2);
        assert!(oauth.kind.is_token_grant());
        assert_eq!(oauth.configuration, json!({"type": "object"}));
    }

    #[test]
    fn the_schema_names_every_top_level_key() {
        let schema = json_schema();
        let properties = schema["properties"].as_object().unwrap();
        for key in ["name", "version", "base", "connections", "modules"] {
            assert!(properties.contains_key(key), "{key}");
        }
    }
}
