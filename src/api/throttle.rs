//! The throttle of failed guesses at the API token (issue 22 point 6): a wrong
//! `Authorization` under `/api` and a wrong token at the console's sign-in count against the
//! client's address. Past [`FREE_FAILURES`] an address is blocked for a wait that doubles
//! with each further failure, from [`FIRST_WAIT`] up to [`MAX_WAIT`]; while blocked, what it
//! presents is not checked at all (an answer would tell a good guess from a bad one) and it
//! gets 429 with `Retry-After`. A success forgets the address; so does an hour without a
//! failure.
//!
//! Invariants: nothing here ever waits — a valid request costs one map lookup, and a client
//! that has not failed is never slowed; memory is bounded (the [`CAPACITY`] addresses that
//! failed most recently are kept, least recently failed first out); an IPv6 client is
//! counted by its /64 (one host usually holds a whole /64). Held in memory only: a restart
//! forgets every count.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::Extensions;
use axum::http::request::Parts;
use hashlink::LruCache;

/// Failures an address may make before it is blocked.
pub const FREE_FAILURES: u32 = 5;
/// The block after the first failure past the free ones; each further failure doubles it.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest block.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// An address with no failure for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Addresses remembered at most.
pub const CAPACITY: usize = 16_384;

/// The address a request came from (`ConnectInfo`, set by [`super::serve`]); the unspecified
/// address when the server did not say (a router driven without a listener), so such
/// requests share one count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn of(extensions: &Extensions) -> ClientIp {
        ClientIp(
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
                .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        )
    }

    /// The key an address is counted under: IPv4 as is (an IPv4-mapped IPv6 address as its
    /// IPv4 address), IPv6 by its /64.
    fn key(self) -> IpAddr {
        match self.0 {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp::of(&parts.extensions))
    }
}

/// What is known of one address's failures.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// The failed guesses of the clients, by address.
pub struct Throttle {
    records: Mutex<LruCache<IpAddr, Record>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::with_capacity(CAPACITY)
    }
}

impl Throttle {
    /// A throttle remembering `capacity` addresses at most.
    pub fn with_capacity(capacity: usize) -> Self {
        Throttle {
            records: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    /// How long `client` must still wait before a guess is looked at; `None` when it may
    /// present one now.
    pub fn blocked(&self, client: ClientIp) -> Option<Duration> {
        self.blocked_at(client, Instant::now())
    }

    /// Counts a failed guess of `client`; the wait it must now keep, if this failure blocks it.
    pub fn failed(&self, client: ClientIp) -> Option<Duration> {
        self.failed_at(client, Instant::now())
    }

    /// `client` presented the token: its failures are forgotten.
    pub fn succeeded(&self, client: ClientIp) {
        if let Ok(mut records) = self.records.lock()
            && !records.is_empty()
        {
            records.remove(&client.key());
        }
    }

    fn blocked_at(&self, client: ClientIp, now: Instant) -> Option<Duration> {
        let records = self.records.lock().ok()?;
        let until = records.peek(&client.key())?.blocked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    fn failed_at(&self, client: ClientIp, now: Instant) -> Option<Duration> {
        let mut records = self.records.lock().ok()?;
        let key = client.key();
        let failures = match records.get(&key) {
            Some(r) if now.saturating_duration_since(r.last_failure) < FORGET_AFTER => {
                r.failures.saturating_add(1)
            }
            _ => 1,
        };
        let wait = wait_after(failures);
        records.insert(
            key,
            Record {
                failures,
                last_failure: now,
                blocked_until: wait.map(|w| now + w),
            },
        );
        wait
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

/// The block that `failures` failures in a row earn.
fn wait_after(failures: u32) -> Option<Duration> {
    let past_free = failures.checked_sub(FREE_FAILURES + 1)?;
    let doubled = FIRST_WAIT.checked_mul(1u32.checked_shl(past_free).unwrap_or(u32::MAX));
    Some(doubled.map_or(MAX_WAIT, |d| d.min(MAX_WAIT)))
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> ClientIp {
        ClientIp(text.parse().unwrap())
    }

    #[test]
    fn the_wait_doubles_past_the_free_failures_up_to_the_cap() {
        let throttle = Throttle::default();
        let (client, t0) = (ip("203.0.113.7"), Instant::now());
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.failed_at(client, t0), None);
            assert_eq!(throttle.blocked_at(client, t0), None);
        }
        let mut now = t0;
        let mut expected = FIRST_WAIT;
        for _ in 0..20 {
            assert_eq!(throttle.failed_at(client, now), Some(expected));
            assert_eq!(throttle.blocked_at(client, now), Some(expected));
            now += expected;
            assert_eq!(throttle.blocked_at(client, now), None, "the block ends");
            expected = (expected * 2).min(MAX_WAIT);
        }
        assert_eq!(expected, MAX_WAIT);
        // Another address is not touched by any of it.
        assert_eq!(throttle.blocked_at(ip("203.0.113.8"), now), None);
        // A success forgets the address: it starts again with its free failures.
        throttle.succeeded(client);
        assert_eq!(throttle.failed_at(client, now), None);
        // So does an hour without failures.
        for _ in 1..FREE_FAILURES {
            throttle.failed_at(client, now);
        }
        assert_eq!(throttle.failed_at(client, now), Some(FIRST_WAIT));
        let later = now + FORGET_AFTER;
        assert_eq!(throttle.failed_at(client, later), None);
        assert_eq!(wait_after(u32::MAX), Some(MAX_WAIT));
    }

    #[test]
    fn memory_is_bounded_and_the_latest_failures_are_kept() {
        let throttle = Throttle::with_capacity(100);
        let now = Instant::now();
        let blocked = ip("198.51.100.1");
        for _ in 0..=FREE_FAILURES {
            throttle.failed_at(blocked, now);
        }
        assert!(throttle.blocked_at(blocked, now).is_some());
        for n in 0..10_000u32 {
            let client = ClientIp(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n)));
            throttle.failed_at(client, now);
            assert!(throttle.len() <= 100);
        }
        assert_eq!(throttle.len(), 100);
        // The oldest failures went first: the blocked address among them.
        assert_eq!(throttle.blocked_at(blocked, now), None);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for n in 0..=FREE_FAILURES {
            throttle.failed_at(ip(&format!("2001:db8:1:2::{n:x}")), now);
        }
        assert!(
            throttle
                .blocked_at(ip("2001:db8:1:2:ffff::1"), now)
                .is_some()
        );
        assert_eq!(throttle.blocked_at(ip("2001:db8:1:3::1"), now), None);
        // An IPv4-mapped address is its IPv4 address.
        for _ in 0..=FREE_FAILURES {
            throttle.failed_at(ip("::ffff:192.0.2.1"), now);
        }
        assert!(throttle.blocked_at(ip("192.0.2.1"), now).is_some());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_001)), 3);
    }
}
