//! The outbound rate an app definition declares per connection (`base.rateLimit`,
//! `docs/apps.md`): at most `requests` requests in any window of `per`, counted for each
//! stored connection across every module and execution of the process that uses it, and a
//! connection paused while the API said to wait (a 429's `Retry-After`, or the body field the
//! definition's `retryAfter` reads).
//!
//! Invariants:
//! - Every attempt of every request of a rated app passes [`RateLimiter::acquire`] just before
//!   it is sent (the interpreter's one send loop), so retries count too.
//! - Slots are handed out in order: the n-th slot of a connection is no earlier than the
//!   (n − requests)-th plus the window, so no window of `per` holds more than `requests`
//!   slots. The window is widened by [`MARGIN_DIVISOR`] so that the time a request takes to
//!   reach the API (which varies) does not put more than `requests` of them in one of the
//!   API's own windows.
//! - No lock is held across an await: a caller reserves its slot under a short lock, then
//!   sleeps until it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::model::RateLimitSpec;

/// The window is `per` plus `per / MARGIN_DIVISOR` (a tenth).
const MARGIN_DIVISOR: u32 = 10;
/// The longest window a definition may declare.
const MAX_PER: Duration = Duration::from_secs(24 * 3600);
/// The most requests a window may allow (the slots kept per connection).
const MAX_REQUESTS: u32 = 100_000;

/// A declared rate and the slots handed out, by connection id.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    requests: usize,
    window: Duration,
    connections: Mutex<HashMap<String, Slots>>,
}

#[derive(Debug, Default)]
struct Slots {
    /// The last `requests` slots, oldest first.
    taken: VecDeque<Instant>,
    /// No slot before this (the API asked to wait).
    paused_until: Option<Instant>,
}

/// `per` as written: a whole number and a unit, `ms`, `s`, `m` or `h` (`1s`, `500ms`, `1m`).
pub(crate) fn parse_period(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a whole number and a unit (ms, s, m, h), e.g. 1s".to_string())?;
    let period = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown unit `{other}`: expected ms, s, m or h (e.g. 1s)"
            ));
        }
    };
    if period.is_zero() || period > MAX_PER {
        return Err("expected a period from 1ms to 24h".into());
    }
    Ok(period)
}

impl RateLimiter {
    /// The limiter of `spec`, or why it is not a rate (the message names the key).
    pub(crate) fn new(spec: &RateLimitSpec) -> Result<RateLimiter, (String, String)> {
        if spec.requests == 0 || spec.requests > MAX_REQUESTS {
            return Err((
                "requests".into(),
                format!("expected a whole number from 1 to {MAX_REQUESTS}"),
            ));
        }
        let per = parse_period(&spec.per).map_err(|e| ("per".to_string(), e))?;
        Ok(RateLimiter {
            requests: spec.requests as usize,
            window: per + per / MARGIN_DIVISOR,
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a slot of `connection` (its stored id; `""` for calls without one).
    pub(crate) async fn acquire(&self, connection: &str) {
        let slot = self.reserve(connection, Instant::now());
        tokio::time::sleep_until(slot).await;
    }

    /// Takes the next slot of `connection` at or after `now`.
    fn reserve(&self, connection: &str, now: Instant) -> Instant {
        let mut connections = match self.connections.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let slots = connections.entry(connection.to_string()).or_default();
        let mut slot = now;
        if let Some(last) = slots.taken.back() {
            slot = slot.max(*last);
        }
        if slots.taken.len() >= self.requests
            && let Some(oldest) = slots.taken.front()
        {
            slot = slot.max(*oldest + self.window);
        }
        if let Some(until) = slots.paused_until {
            slot = slot.max(until);
        }
        slots.taken.push_back(slot);
        while slots.taken.len() > self.requests {
            slots.taken.pop_front();
        }
        slot
    }

    /// Holds every next slot of `connection` until `wait` from now has passed.
    pub(crate) fn pause(&self, connection: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut connections = match self.connections.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let slots = connections.entry(connection.to_string()).or_default();
        slots.paused_until = Some(slots.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u32, per: &str) -> RateLimiter {
        RateLimiter::new(&RateLimitSpec {
            requests,
            per: per.into(),
            retry_after: None,
            key: None,
        })
        .unwrap()
    }

    #[test]
    fn periods_have_a_unit() {
        assert_eq!(parse_period("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_period("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_period("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_period(" 1h "), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "1", "1d", "0s", "25h", "-1s", "1.5s"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
        let spec = |requests| RateLimitSpec {
            requests,
            per: "1s".into(),
            retry_after: None,
            key: None,
        };
        assert_eq!(RateLimiter::new(&spec(0)).unwrap_err().0, "requests");
        let bad = RateLimitSpec {
            requests: 5,
            per: "soon".into(),
            retry_after: None,
            key: None,
        };
        assert_eq!(RateLimiter::new(&bad).unwrap_err().0, "per");
    }

    #[test]
    fn a_definition_declares_its_rate_with_paths_in_errors() {
        let app = |rate: &str| {
            format!(
                r#"{{"name": "rated", "version": "1.0.0", "title": "Rated",
                    "base": {{"baseUrl": "https://api.rated.test", "rateLimit": {rate}}},
                    "modules": {{}}}}"#
            )
        };
        let ok = super::super::parse_app(
            "rated.json",
            &app(
                r#"{"requests": 5, "per": "1s", "retryAfter": "{{body.parameters.retry_after}}"}"#,
            ),
        )
        .unwrap();
        assert!(ok.base.rate.is_some() && ok.base.retry_after.is_some());
        for (rate, path) in [
            (r#"{"requests": 0, "per": "1s"}"#, "base.rateLimit.requests"),
            (r#"{"requests": 5, "per": "soon"}"#, "base.rateLimit.per"),
            (
                r#"{"requests": 5, "per": "1s", "retryAfter": "{{body.x"}"#,
                "base.rateLimit.retryAfter",
            ),
            (
                r#"{"requests": 5, "per": "1s", "key": "{{parameters.base"}"#,
                "base.rateLimit.key",
            ),
            (
                r#"{"requests": 5, "per": "1s", "burst": 2}"#,
                "base.rateLimit",
            ),
        ] {
            let err = super::super::parse_app("rated.json", &app(rate)).unwrap_err();
            assert!(err.to_string().contains(path), "{rate}: {err}");
        }
        let schema = super::super::json_schema().to_string();
        assert!(schema.contains("rateLimit") && schema.contains("retryAfter"));
    }

    #[tokio::test]
    async fn no_window_holds_more_than_the_declared_requests() {
        let limiter = limiter(5, "1s");
        let start = Instant::now();
        // 23 slots reserved at once for one connection, as concurrent calls would.
        let slots: Vec<Instant> = (0..23).map(|_| limiter.reserve("c1", start)).collect();
        for (i, slot) in slots.iter().enumerate() {
            let in_window = slots
                .iter()
                .filter(|s| **s >= *slot && s.duration_since(*slot) < Duration::from_secs(1))
                .count();
            assert!(in_window <= 5, "slot {i}: {in_window} in one window");
        }
        assert_eq!(slots[4], start, "the first 5 go at once");
        assert!(slots[5] >= start + Duration::from_millis(1100));
        assert!(slots[22] >= start + Duration::from_millis(4 * 1100));
        // Another connection has its own slots.
        assert_eq!(limiter.reserve("c2", start), start);
    }

    #[tokio::test]
    async fn a_pause_holds_the_next_slots() {
        let limiter = limiter(100, "1s");
        let start = Instant::now();
        limiter.pause("c1", Duration::from_secs(3));
        assert!(limiter.reserve("c1", start) >= start + Duration::from_secs(3));
        assert_eq!(limiter.reserve("c2", start), start);
    }
}
