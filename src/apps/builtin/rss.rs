//! The RSS app: `rss:TriggerNewArticle` (Make's "Watch RSS feed items"), a polling trigger.
//! Each poll fetches the feed through the registry's shared [`Transport`] (size cap, timeouts,
//! an [`Auth::Basic`] when `username` is set), parses RSS 0.x/1.0/2.0 or Atom with `feed-rs`, and
//! emits one bundle per item not processed before, oldest first, at most `maxResults` per cycle.
//!
//! **Cursor.** The trigger state's cursor is `{"date": D, "ids": [...]}`: `D` is the newest
//! item date processed (RFC 3339, `null` before any dated item) and `ids` the ids processed at
//! exactly `D`; every emitted id is also added to the store's seen ids (capped at
//! [`SEEN_IDS_CAP`](crate::module::polling::SEEN_IDS_CAP), oldest dropped first). An item is new
//! when its id is neither seen nor in `ids` and it is not older than `D`. So items that share a
//! date are emitted exactly once even when a cycle's limit splits them, feeds that only list the
//! newest N items lose nothing as long as N items do not appear between two polls, and items
//! without a date fall back to the seen ids.
//!
//! **Where to start** (Make asks when the scenario is activated) is `parameters.epoch`, read
//! only while the trigger has no state (first poll, or after `scenarios reset-trigger`):
//! `"now"` — *From now on*, the default: the items in the feed at the first poll are marked
//! processed and only later ones are emitted; `"all"` — *All*: every item in the feed; an ISO
//! 8601 date — *Since specific date*: items dated then or later (and undated ones).
//!
//! `gzip` is accepted (the client does not ask for compression, so nothing needs it) and
//! `include` is accepted and not interpreted. The password is never logged or echoed: it is
//! sent, scrubbed from errors and kept out of the history as every credential is
//! ([`Signer`]).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use feed_rs::model::{Entry, Feed, LinkTarget};
use futures::future::BoxFuture;
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::fields::{flag, is_blank, report, text};
use super::http;
use crate::apps::auth::Signer;
use crate::apps::transport::{Auth, Request, Transport};
use crate::module::error::ModuleError;
use crate::module::polling::{self, DateCursor, PollRequest, Polled, TriggerCommit};
use crate::module::{Invocation, Module, ModuleKind};

/// What the feed request accepts.
const FEED_TYPES: &str = "application/rss+xml, application/atom+xml, application/xml;q=0.9, \
                      text/xml;q=0.9, */*;q=0.5";

/// `rss:TriggerNewArticle`.
pub(crate) struct WatchFeed {
    transport: Arc<Transport>,
}

impl WatchFeed {
    pub(crate) fn new(transport: Arc<Transport>) -> Self {
        WatchFeed { transport }
    }
}

/// Where a fresh trigger starts (Make's "Choose where to start").
#[derive(Debug, Clone, Copy, PartialEq)]
enum Epoch {
    /// From now on: what the feed lists at the first poll counts as processed.
    Now,
    /// All: every item the feed lists.
    All,
    /// Since a date: items dated then or later.
    Since(DateTime<Utc>),
}

/// The module's configuration, read from its static parameters.
struct Config {
    url: Url,
    epoch: Epoch,
    auth: Auth,
}

fn parse_epoch(value: Option<&Value>) -> Result<Epoch, String> {
    if is_blank(value) {
        return Ok(Epoch::Now);
    }
    let raw = value.map(text).unwrap_or_default();
    let raw = raw.trim();
    match raw.to_ascii_lowercase().as_str() {
        "now" => Ok(Epoch::Now),
        "all" => Ok(Epoch::All),
        _ => parse_date(raw)
            .map(Epoch::Since)
            .ok_or_else(|| format!("expected \"now\", \"all\" or an ISO 8601 date, got \"{raw}\"")),
    }
}

/// An ISO 8601 date or date-time (a date alone is midnight UTC).
fn parse_date(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The parameters' problems as `(field, reason)`; the password's value is never quoted.
fn check(parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if !(mapper.is_object() || mapper.is_null()) {
        problems.push(("mapper".into(), "must be an object".into()));
    }
    let url = parameters.get("url");
    report(
        &mut problems,
        "parameters.url",
        url,
        http::parse_url(url).map_err(|e| format!("{e} (the address of an RSS or Atom feed)")),
    );
    if let Err(problem) = polling::limit(parameters) {
        problems.push(problem);
    }
    let gzip = parameters.get("gzip");
    report(&mut problems, "parameters.gzip", gzip, flag(gzip, true));
    match parameters.get("include") {
        None | Some(Value::Null | Value::Array(_)) => {}
        Some(_) => problems.push(("parameters.include".into(), "must be an array".into())),
    }
    for field in ["username", "password"] {
        match parameters.get(field) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => problems.push((format!("parameters.{field}"), "must be text".into())),
        }
    }
    let epoch = parameters.get("epoch");
    report(&mut problems, "parameters.epoch", epoch, parse_epoch(epoch));
    problems
}

fn config(parameters: &Map<String, Value>) -> Result<Config, ModuleError> {
    let field = |name: &'static str| {
        move |reason: String| ModuleError::config(format!("parameters.{name}: {reason}"))
    };
    let url = http::parse_url(parameters.get("url")).map_err(field("url"))?;
    let epoch = parse_epoch(parameters.get("epoch")).map_err(field("epoch"))?;
    let username = parameters.get("username").map(text).unwrap_or_default();
    let auth = if username.is_empty() {
        Auth::None
    } else {
        Auth::Basic {
            user: username,
            password: parameters.get("password").map(text).unwrap_or_default(),
        }
    };
    Ok(Config { url, epoch, auth })
}

impl Module for WatchFeed {
    fn kind(&self) -> ModuleKind {
        ModuleKind::Trigger
    }

    fn check(&self, parameters: &Map<String, Value>, mapper: &Value) -> Vec<(String, String)> {
        check(parameters, mapper)
    }

    /// Called outside a poll (no state): every item up to the limit.
    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<Vec<Value>, ModuleError>> {
        Box::pin(async move {
            let state = polling::TriggerState::default();
            let limit = polling::limit(invocation.parameters).unwrap_or(polling::DEFAULT_LIMIT);
            let polled = self
                .poll(
                    invocation,
                    PollRequest {
                        state: &state,
                        limit,
                    },
                )
                .await?;
            Ok(polled.bundles)
        })
    }

    fn poll<'a>(
        &'a self,
        invocation: Invocation<'a>,
        request: PollRequest<'a>,
    ) -> BoxFuture<'a, Result<Polled, ModuleError>> {
        Box::pin(async move {
            let config = config(invocation.parameters)?;
            let cursor = match &request.state.cursor {
                None => None,
                Some(value) => Some(DateCursor::from_value(value, "an RSS cursor")?),
            };
            // The feed's password, as every credential, stays out of errors and the history.
            let signer = Signer::fixed(config.auth.clone());
            signer.keep_out_of_history(invocation.context);
            let feed = fetch(&self.transport, &config, &signer, invocation.module_id)
                .await
                .map_err(|e| signer.scrub(e))?;
            let items = items(&feed);
            Ok(select(
                items,
                cursor,
                &request.state.seen_ids,
                config.epoch,
                request.limit,
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Fetching and parsing

/// The feed at the configured URL. Errors name what was expected; only the host is quoted
/// (the path or query may carry a token).
async fn fetch(
    transport: &Transport,
    config: &Config,
    signer: &Signer,
    module_id: u32,
) -> Result<Feed, ModuleError> {
    let host = config.url.host_str().unwrap_or_default().to_string();
    let mut request = Request::new(Method::GET, config.url.clone());
    request
        .headers
        .insert(ACCEPT, HeaderValue::from_static(FEED_TYPES));
    let response = signer
        .send(request, |request| transport.send(request, module_id))
        .await
        .map_err(|e| ModuleError {
            message: format!("could not read the feed from {host}: {}", e.message),
            ..e
        })?;
    let (status, body) = (response.status, response.body);
    if !status.is_success() {
        return Err(ModuleError::runtime(format!(
            "the feed at {host} answered HTTP {}; expected 2xx with an RSS or Atom document",
            status.as_u16()
        ))
        .with_details(json!({"statusCode": status.as_u16()})));
    }
    let mut base = config.url.clone();
    let _ = base.set_username("");
    let _ = base.set_password(None);
    base.set_query(None);
    base.set_fragment(None);
    feed_rs::parser::Builder::new()
        .base_uri(Some(base.as_str()))
        .id_generator(|links, title, _| {
            let mut digest = Sha256::new();
            if let Some(link) = links.first() {
                digest.update(link.href.as_bytes());
            }
            digest.update(b"\n");
            if let Some(title) = title {
                digest.update(title.content.as_bytes());
            }
            format!("sha256:{}", hex::encode(digest.finalize()))
        })
        .build()
        .parse(body.as_slice())
        .map_err(|e| {
            ModuleError::data(format!(
                "the document at {host} is not an RSS or Atom feed: {e}"
            ))
        })
}

/// One feed item: its id, the date it is ordered by, and its output bundle.
struct Item {
    id: String,
    date: Option<DateTime<Utc>>,
    bundle: Value,
}

fn iso(date: Option<DateTime<Utc>>) -> Value {
    date.map_or(Value::Null, |d| {
        Value::String(d.to_rfc3339_opts(SecondsFormat::Millis, true))
    })
}

/// The feed's items oldest first: by date, and in document order reversed (feeds list the
/// newest first) among equal dates, unless the dated items show the feed is oldest first.
fn items(feed: &Feed) -> Vec<Item> {
    let channel_name = feed
        .title
        .as_ref()
        .map_or(Value::Null, |t| Value::String(t.content.clone()));
    let channel_url = feed
        .links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .map_or(Value::Null, |l| Value::String(l.href.clone()));
    let mut items: Vec<Item> = feed
        .entries
        .iter()
        .map(|entry| Item {
            id: entry.id.clone(),
            date: entry.published.or(entry.updated),
            bundle: bundle(entry, &channel_name, &channel_url),
        })
        .collect();
    let mut dated = items.iter().filter_map(|i| i.date);
    let oldest_first = match (dated.next(), dated.next_back()) {
        (Some(first), Some(last)) => first < last,
        _ => false,
    };
    if !oldest_first {
        items.reverse();
    }
    // Stable: undated items keep their (now oldest-first) order, before the dated ones.
    items.sort_by_key(|i| i.date);
    items
}

/// Make's output bundle for one item.
fn bundle(entry: &Entry, channel_name: &Value, channel_url: &Value) -> Value {
    let summary = entry.summary.as_ref().map(|t| t.content.clone());
    let content = entry.content.as_ref().and_then(|c| c.body.clone());
    let author = entry
        .authors
        .iter()
        .find_map(|p| p.name.clone().filter(|n| !n.is_empty()).or(p.email.clone()));
    let url = entry
        .links
        .iter()
        .find(|l| l.target.is_none() && l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .map(|l| l.href.clone());
    let comments = entry
        .links
        .iter()
        .find(|l| l.target == Some(LinkTarget::Comments))
        .map(|l| l.href.clone());
    let mut enclosures = Vec::new();
    let mut image = None;
    for media in &entry.media {
        for content in &media.content {
            let Some(url) = &content.url else { continue };
            let mime = content.content_type.as_ref().map(ToString::to_string);
            if image.is_none() && mime.as_deref().is_some_and(|m| m.starts_with("image/")) {
                image = Some(json!({
                    "name": media.title.as_ref().map(|t| t.content.clone()),
                    "url": url.as_str(),
                }));
            }
            enclosures.push(json!({"url": url.as_str(), "type": mime, "length": content.size}));
        }
        if image.is_none()
            && let Some(thumbnail) = media.thumbnails.first()
        {
            image = Some(json!({
                "name": thumbnail.image.title.clone(),
                "url": thumbnail.image.uri,
            }));
        }
    }
    let categories: Vec<Value> = entry
        .categories
        .iter()
        .map(|c| Value::String(c.label.clone().unwrap_or_else(|| c.term.clone())))
        .collect();
    json!({
        "id": entry.id,
        "title": entry.title.as_ref().map(|t| t.content.clone()),
        "description": content.clone().or(summary.clone()),
        "summary": summary.or(content),
        "author": author,
        "url": url,
        "dateCreated": iso(entry.published.or(entry.updated)),
        "dateUpdated": iso(entry.updated.or(entry.published)),
        "comments": comments,
        "image": image,
        "categories": categories,
        "source": {"name": channel_name, "url": channel_url},
        "enclosures": enclosures,
    })
}

// ---------------------------------------------------------------------------------------------
// The cursor

/// The new items (oldest first, at most `limit`) and the state change that records them.
fn select(
    items: Vec<Item>,
    cursor: Option<DateCursor>,
    seen: &[String],
    epoch: Epoch,
    limit: usize,
) -> Polled {
    let cursor = match (cursor, epoch) {
        (Some(cursor), _) => cursor,
        // A fresh trigger starting from now: what is listed now counts as processed.
        (None, Epoch::Now) => {
            let mut cursor = DateCursor::default();
            let mut ids = Vec::with_capacity(items.len());
            for item in &items {
                cursor.advance(&item.id, item.date);
                ids.push(item.id.clone());
            }
            return Polled {
                bundles: Vec::new(),
                change: TriggerCommit {
                    cursor: Some(cursor.to_value()),
                    new_seen_ids: ids,
                },
                more: false,
            };
        }
        (None, Epoch::All) => DateCursor::default(),
        (None, Epoch::Since(date)) => DateCursor {
            date: Some(date),
            ids: Vec::new(),
        },
    };
    let mut known: HashSet<&str> = seen.iter().map(String::as_str).collect();
    known.extend(cursor.ids.iter().map(String::as_str));
    let mut fresh = Vec::new();
    for item in &items {
        let not_older = match (item.date, cursor.date) {
            (Some(d), Some(c)) => d >= c,
            _ => true,
        };
        if not_older && known.insert(item.id.as_str()) {
            fresh.push(item);
        }
    }
    let more = fresh.len() > limit;
    let mut next = cursor.clone();
    let mut bundles = Vec::with_capacity(limit.min(fresh.len()));
    let mut ids = Vec::with_capacity(bundles.capacity());
    for item in fresh.into_iter().take(limit) {
        next.advance(&item.id, item.date);
        ids.push(item.id.clone());
        bundles.push(item.bundle.clone());
    }
    Polled {
        bundles,
        change: TriggerCommit {
            cursor: Some(next.to_value()),
            new_seen_ids: ids,
        },
        more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(secs, 0)
    }

    fn item(id: &str, date: Option<DateTime<Utc>>) -> Item {
        Item {
            id: id.into(),
            date,
            bundle: json!({"id": id}),
        }
    }

    fn ids(polled: &Polled) -> Vec<&str> {
        polled
            .bundles
            .iter()
            .map(|b| b["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn epoch_parses() {
        assert_eq!(parse_epoch(None), Ok(Epoch::Now));
        assert_eq!(parse_epoch(Some(&json!("ALL"))), Ok(Epoch::All));
        assert_eq!(
            parse_epoch(Some(&json!("2024-01-02"))),
            Ok(Epoch::Since(at(1_704_153_600).unwrap()))
        );
        assert!(parse_epoch(Some(&json!("yesterday"))).is_err());
    }

    #[test]
    fn same_date_items_split_by_the_limit_are_each_emitted_once() {
        let feed = || {
            vec![
                item("a", at(10)),
                item("b", at(20)),
                item("c", at(20)),
                item("d", at(20)),
            ]
        };
        let first = select(feed(), None, &[], Epoch::All, 2);
        assert_eq!(ids(&first), ["a", "b"]);
        assert!(first.more);
        let cursor =
            DateCursor::from_value(first.change.cursor.as_ref().unwrap(), "an RSS cursor").unwrap();
        assert_eq!(cursor.date, at(20));
        assert_eq!(cursor.ids, ["b"]);
        // The seen ids are not even needed for same-date items: the cursor has them.
        let second = select(feed(), Some(cursor.clone()), &[], Epoch::All, 2);
        assert_eq!(ids(&second), ["c", "d"]);
        assert!(!second.more);
        let cursor =
            DateCursor::from_value(second.change.cursor.as_ref().unwrap(), "an RSS cursor")
                .unwrap();
        assert_eq!(cursor.ids, ["b", "c", "d"]);
        let third = select(feed(), Some(cursor), &[], Epoch::All, 2);
        assert!(third.bundles.is_empty());
    }

    #[test]
    fn older_and_seen_items_are_skipped() {
        let cursor = DateCursor {
            date: at(20),
            ids: vec![],
        };
        let polled = select(
            vec![
                item("old", at(10)),
                item("seen", at(30)),
                item("new", at(30)),
            ],
            Some(cursor),
            &["seen".to_string()],
            Epoch::All,
            10,
        );
        assert_eq!(ids(&polled), ["new"]);
        assert_eq!(polled.change.new_seen_ids, ["new"]);
    }

    #[test]
    fn from_now_on_marks_the_listed_items_processed() {
        let polled = select(
            vec![item("a", at(10)), item("b", at(20))],
            None,
            &[],
            Epoch::Now,
            10,
        );
        assert!(polled.bundles.is_empty());
        assert_eq!(polled.change.new_seen_ids, ["a", "b"]);
        let cursor =
            DateCursor::from_value(polled.change.cursor.as_ref().unwrap(), "an RSS cursor")
                .unwrap();
        assert_eq!(cursor.date, at(20));
        // An empty feed still records that the start was chosen.
        let empty = select(Vec::new(), None, &[], Epoch::Now, 10);
        assert_eq!(empty.change.cursor, Some(json!({"date": null, "ids": []})));
    }

    #[test]
    fn since_a_date() {
        let polled = select(
            vec![item("a", at(10)), item("b", at(20)), item("c", None)],
            None,
            &[],
            Epoch::Since(at(15).unwrap()),
            10,
        );
        assert_eq!(ids(&polled), ["b", "c"]);
    }
}
