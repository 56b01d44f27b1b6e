//! Notifications for the people who run Switchyard, as Make e-mails its users: with
//! `--notify-url URL`, each failed execution and each scenario turned off after its
//! consecutive errors is POSTed to `URL` as a JSON event.
//!
//! # Invariants
//! - Best effort and never in the way: an event is sent on a task of its own with a 10 s
//!   deadline, one attempt; a failure is logged at `warn` and nothing else waits for it.
//! - An event carries what history already shows (ids, the module, the error's kind and
//!   message — scrubbed of secrets before it reached the report), never a bundle.

use std::time::Duration;

use serde_json::{Value, json};

/// How long one notification may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where events go (`--notify-url`).
#[derive(Clone, Debug)]
pub struct Notifier {
    url: reqwest::Url,
    client: reqwest::Client,
}

/// A URL `--notify-url` cannot take.
#[derive(Debug, thiserror::Error)]
#[error("--notify-url `{url}`: {problem}")]
pub struct NotifyUrlError {
    url: String,
    problem: &'static str,
}

impl Notifier {
    /// A notifier posting to `url`, an absolute http(s) URL.
    pub fn new(url: &str) -> Result<Notifier, NotifyUrlError> {
        let refuse = |problem| NotifyUrlError {
            url: url.to_string(),
            problem,
        };
        let parsed =
            reqwest::Url::parse(url).map_err(|_| refuse("not an absolute URL (https://…)"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refuse("only http and https URLs are supported"));
        }
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .map_err(|_| refuse("no HTTP client could be built"))?;
        Ok(Notifier {
            url: parsed,
            client,
        })
    }

    /// Execution `execution` of scenario `scenario` ended with `error` (`{module, name,
    /// message}` as the report has it).
    pub fn execution_failed(&self, scenario: &str, execution: &str, error: Option<Value>) {
        self.send(json!({
            "event": "execution.failed",
            "scenario": scenario,
            "execution": execution,
            "error": error,
        }));
    }

    /// Scenario `scenario` was turned off, for `reason`.
    pub fn scenario_deactivated(&self, scenario: &str, reason: &str) {
        self.send(json!({
            "event": "scenario.deactivated",
            "scenario": scenario,
            "reason": reason,
        }));
    }

    fn send(&self, mut event: Value) {
        event["at"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let (client, url) = (self.client.clone(), self.url.clone());
        tokio::spawn(async move {
            let sent = client.post(url).json(&event).send().await;
            match sent.and_then(|r| r.error_for_status()) {
                Ok(_) => {}
                Err(e) => tracing::warn!(event = %event["event"], error = %e.without_url(),
                    "a notification could not be sent to --notify-url"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_absolute_http_url_is_taken_and_a_refusal_says_why() {
        assert!(Notifier::new("https://ops.example.com/switchyard").is_ok());
        assert!(Notifier::new("http://127.0.0.1:9000/events").is_ok());
        for (url, problem) in [
            ("ops.example.com/events", "not an absolute URL"),
            ("", "not an absolute URL"),
            ("ftp://ops.example.com/events", "only http and https"),
            ("file:///etc/passwd", "only http and https"),
        ] {
            let message = Notifier::new(url).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("--notify-url `{url}`")),
                "{message}"
            );
            assert!(message.contains(problem), "{message}");
        }
    }
}
