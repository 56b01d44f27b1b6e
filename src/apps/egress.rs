//! The egress guard: which hosts and addresses outgoing requests may reach. By default every
//! address that is not on the public internet is refused — loopback, private (RFC 1918, ULA),
//! link-local, CGNAT, multicast, unspecified, reserved, deprecated site-local — and every IPv6
//! form that embeds an IPv4 address is judged by the IPv4 address it embeds ([`embedded_v4`]:
//! IPv4-mapped, IPv4-compatible, SIIT-translated, NAT64 `64:ff9b::/96`, 6to4, Teredo) or, where
//! the embedding cannot be read without the network's configuration (local-use NAT64
//! `64:ff9b:1::/48`), refused — so that a scenario cannot make the service call itself, its
//! neighbours or a cloud metadata endpoint (`http://[64:ff9b::a9fe:a9fe]/` is
//! `169.254.169.254`). An [`EgressPolicy`] opens specific targets: a host name (allowed
//! whatever it resolves to) or an IP address or CIDR block (addresses in it are allowed).
//!
//! Invariants:
//! - The check is made on addresses, after DNS resolution: [`GuardedResolver`] is the client's
//!   resolver, so the addresses a connection is made to are the ones that were checked (no
//!   second lookup a rebinding DNS server could answer differently), and
//!   [`EgressPolicy::check_url`] checks IP-literal hosts, which never reach a resolver.
//! - A refusal happens before any connection and is an [`EgressRefused`] error that names the
//!   host and address and says how to allow it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::module::error::{ErrorKind, ModuleError};

/// IPv4 ranges refused by default, with what they are (said in the refusal).
const BLOCKED_V4: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified"),
    ([10, 0, 0, 0], 8, "private (RFC 1918)"),
    ([100, 64, 0, 0], 10, "carrier-grade NAT"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private (RFC 1918)"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 168, 0, 0], 16, "private (RFC 1918)"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([224, 0, 0, 0], 4, "multicast"),
    // Includes the broadcast address 255.255.255.255.
    ([240, 0, 0, 0], 4, "reserved"),
];

/// IPv6 ranges refused by default. Addresses that embed an IPv4 address are judged by it
/// first ([`embedded_v4`], [`blocked_range`]).
const BLOCKED_V6: &[(u128, u8, &str)] = &[
    (0xfc00 << 112, 7, "unique local (ULA)"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local (deprecated)"),
    (0xff00 << 112, 8, "multicast"),
    // RFC 8215: the network's own NAT64 prefix, of a length (and so an IPv4 position) only
    // its operator knows; what it reaches cannot be told from the address.
    (0x0064_ff9b_0001 << 80, 48, "local-use NAT64"),
];

/// IPv6 forms that carry an IPv4 address, judged by it ([`embedded_v4`]): (prefix, length).
const NAT64: (u128, u8) = (0x0064_ff9b << 96, 96);
const SIIT: (u128, u8) = (0xffff_0000 << 32, 96);
const SIX_TO_FOUR: (u128, u8) = (0x2002 << 112, 16);
const TEREDO: (u128, u8) = (0x2001_0000 << 96, 32);

/// One target an [`EgressPolicy`] opens: `example.internal`, `127.0.0.1`, `::1`, `10.0.0.0/8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressAllowance {
    /// A host name, lower case without a trailing dot: allowed whatever it resolves to.
    Host(String),
    /// An address block; a single address is a block of one. IPv4-mapped IPv6 blocks are
    /// stored as the IPv4 block they stand for.
    Network { address: IpAddr, prefix: u8 },
}

/// An allowance that cannot be parsed; its message names the entry and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{entry:?} is not an egress allowance ({reason}); expected a host name (example.internal), an IP address (127.0.0.1, ::1) or a CIDR block (10.0.0.0/8)"
)]
pub struct EgressEntryError {
    pub entry: String,
    pub reason: &'static str,
}

impl FromStr for EgressAllowance {
    type Err = EgressEntryError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let error = |reason| EgressEntryError {
            entry: entry.to_string(),
            reason,
        };
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err(error("it is empty"));
        }
        let parse_ip = |text: &str| {
            let text = text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(text);
            IpAddr::from_str(text).ok()
        };
        if let Some((address, prefix)) = trimmed.split_once('/')
            && !prefix.is_empty()
            && prefix.chars().all(|c| c.is_ascii_digit())
        {
            let address =
                parse_ip(address).ok_or_else(|| error("the part before / is not an IP address"))?;
            let prefix: u8 = prefix
                .parse()
                .map_err(|_| error("the prefix length after / is not a number from 0 to 128"))?;
            let bits = if address.is_ipv4() { 32 } else { 128 };
            if prefix > bits {
                return Err(error("the prefix length is longer than the address"));
            }
            return Ok(network(address, prefix));
        }
        if let Some(address) = parse_ip(trimmed) {
            let bits = if address.is_ipv4() { 32 } else { 128 };
            return Ok(network(address, bits));
        }
        let host = trimmed.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !host.split('.').all(label_ok) {
            return Err(error(
                "a host name has only letters, digits, '-' and '_' between dots, and no scheme, port or path",
            ));
        }
        if host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(error("it looks like an IPv4 address but is not one"));
        }
        Ok(EgressAllowance::Host(host))
    }
}

/// The block of `prefix` bits at `address`, an IPv4-mapped IPv6 block as its IPv4 block.
fn network(address: IpAddr, prefix: u8) -> EgressAllowance {
    match address {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => EgressAllowance::Network {
                address: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            None => EgressAllowance::Network { address, prefix },
        },
        _ => EgressAllowance::Network { address, prefix },
    }
}

impl fmt::Display for EgressAllowance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressAllowance::Host(host) => f.write_str(host),
            EgressAllowance::Network { address, prefix } => {
                let bits = if address.is_ipv4() { 32 } else { 128 };
                if *prefix == bits {
                    write!(f, "{address}")
                } else {
                    write!(f, "{address}/{prefix}")
                }
            }
        }
    }
}

/// Which non-public targets outgoing requests may reach. The default refuses them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed: Vec<EgressAllowance>,
}

impl EgressPolicy {
    /// The guard with `allowed` opened.
    pub fn new(allowed: Vec<EgressAllowance>) -> Self {
        EgressPolicy { allowed }
    }

    /// The guard with the parsed `entries` opened; the first bad entry is the error.
    pub fn allowing<I, S>(entries: I) -> Result<Self, EgressEntryError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allowed = entries
            .into_iter()
            .map(|entry| entry.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(EgressPolicy { allowed })
    }

    /// The guard with the loopback addresses (`127.0.0.0/8`, `::1`) opened: for local
    /// development and for tests that talk to servers on this machine.
    pub fn allowing_loopback() -> Self {
        EgressPolicy::allowing(["127.0.0.0/8", "::1"]).expect("valid loopback allowances")
    }

    /// The targets this policy opens.
    pub fn allowed(&self) -> &[EgressAllowance] {
        &self.allowed
    }

    /// Whether `host` (a name as it appears in a URL) is opened by name.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allowed.iter().any(
            |allowance| matches!(allowance, EgressAllowance::Host(name) if name.eq_ignore_ascii_case(host)),
        )
    }

    /// Whether a connection to `address` is refused: `host` names the target in the error.
    /// An IPv6 address that embeds an IPv4 one is judged, and named in the refusal, by the
    /// IPv4 address; an allowance of either opens it.
    pub fn check_address(&self, host: &str, address: IpAddr) -> Result<(), EgressRefused> {
        let Some(range) = blocked_range(address) else {
            return Ok(());
        };
        let embedded = canonical(address);
        if self.allowed.iter().any(|allowance| match allowance {
            EgressAllowance::Network {
                address: network,
                prefix,
            } => contains(*network, *prefix, embedded) || contains(*network, *prefix, address),
            EgressAllowance::Host(_) => false,
        }) {
            return Ok(());
        }
        Err(EgressRefused {
            host: host.to_string(),
            address: embedded,
            range,
        })
    }

    /// Checks a URL whose host is an IP literal (`http://127.0.0.1/`, `http://[::1]/`, and the
    /// forms the URL parser turns into one: `127.1`, `2130706433`, `0x7f000001`). A host name
    /// is checked when it is resolved, by [`GuardedResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), EgressRefused> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match IpAddr::from_str(literal) {
            Ok(address) => self.check_address(host, address),
            Err(_) => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 address embeds, else the address itself.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => address,
        },
        v4 => v4,
    }
}

/// The IPv4 address `v6` carries, in every IPv6 form that carries one where it is: IPv4-mapped
/// `::ffff:a.b.c.d`, SIIT-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` (RFC 6052's
/// well-known prefix), 6to4 `2002:AABB:CCDD::/48` and Teredo `2001:0:SSSS:SSSS:…:CCCC:CCCC`
/// (the client's address, stored inverted). IPv4-compatible `::a.b.c.d` is handled by
/// [`blocked_range`] (`::` and `::1` are not IPv4 addresses).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(v6);
    let within = |(network, prefix): (u128, u8)| contains_v6(network, prefix, bits);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if within(SIIT) || within(NAT64) {
        return Some(Ipv4Addr::from(bits as u32));
    }
    if within(SIX_TO_FOUR) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    if within(TEREDO) {
        return Some(Ipv4Addr::from(!(bits as u32)));
    }
    if bits >> 32 == 0 && bits > 1 {
        return Some(Ipv4Addr::from(bits as u32));
    }
    None
}

/// What kind of non-public address `address` is, or `None` for a public one.
fn blocked_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => {
            if v6 == Ipv6Addr::LOCALHOST {
                return Some("loopback");
            }
            if v6 == Ipv6Addr::UNSPECIFIED {
                return Some("unspecified");
            }
            let bits = u128::from(v6);
            // IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks).
            if bits >> 32 == 0 {
                return blocked_v4(Ipv4Addr::from(bits as u32)).or(Some("IPv4-compatible"));
            }
            if let Some(v4) = embedded_v4(v6) {
                return blocked_v4(v4);
            }
            BLOCKED_V6
                .iter()
                .find(|(network, prefix, _)| contains_v6(*network, *prefix, bits))
                .map(|(_, _, range)| *range)
        }
    }
}

fn blocked_v4(address: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(address);
    BLOCKED_V4
        .iter()
        .find(|(network, prefix, _)| contains_v4(u32::from_be_bytes(*network), *prefix, bits))
        .map(|(_, _, range)| *range)
}

fn contains(network: IpAddr, prefix: u8, address: IpAddr) -> bool {
    match (network, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) => contains_v4(n.into(), prefix, a.into()),
        (IpAddr::V6(n), IpAddr::V6(a)) => contains_v6(n.into(), prefix, a.into()),
        _ => false,
    }
}

fn contains_v4(network: u32, prefix: u8, address: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    network & mask == address & mask
}

fn contains_v6(network: u128, prefix: u8, address: u128) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    network & mask == address & mask
}

/// A connection the guard refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRefused {
    /// The host as the URL names it.
    pub host: String,
    /// The address it is (or resolved to).
    pub address: IpAddr,
    /// What kind of address that is: "loopback", "private (RFC 1918)" …
    pub range: &'static str,
}

impl fmt::Display for EgressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = if self.host.trim_matches(['[', ']']) == self.address.to_string() {
            self.host.clone()
        } else {
            format!("{} ({})", self.host, self.address)
        };
        write!(
            f,
            "refused to connect to {target}: a {} address is not reachable unless allowed; allow it with `--allow-egress {}` or SWITCHYARD_ALLOW_EGRESS",
            self.range, self.address
        )
    }
}

impl std::error::Error for EgressRefused {}

impl From<EgressRefused> for ModuleError {
    /// An `InvalidConfigurationError`: retrying cannot help, allowing the target can.
    fn from(refused: EgressRefused) -> Self {
        ModuleError::new(ErrorKind::InvalidConfigurationError, refused.to_string())
    }
}

/// The client's DNS resolver: resolves with the system resolver (through tokio), then keeps
/// only the addresses the policy allows; none allowed is an [`EgressRefused`] error, so no
/// connection is attempted.
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        GuardedResolver { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.allows_host(&host) {
                return Ok(Box::new(addresses.into_iter()) as Addrs);
            }
            let mut refusal = None;
            let mut allowed = Vec::with_capacity(addresses.len());
            for address in addresses {
                match policy.check_address(&host, address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(refused) => refusal = refusal.or(Some(refused)),
                }
            }
            match (allowed.is_empty(), refusal) {
                (true, Some(refused)) => Err(Box::new(refused) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &EgressPolicy, address: &str) -> Option<&'static str> {
        let address: IpAddr = address.parse().unwrap();
        policy
            .check_address("h", address)
            .err()
            .map(|refused| refused.range)
    }

    #[test]
    fn non_public_addresses_are_refused_by_default() {
        let policy = EgressPolicy::default();
        for (address, range) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("10.1.2.3", "private (RFC 1918)"),
            ("172.16.0.1", "private (RFC 1918)"),
            ("172.31.255.255", "private (RFC 1918)"),
            ("192.168.1.1", "private (RFC 1918)"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique local (ULA)"),
            ("fc00::1", "unique local (ULA)"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.8", "IETF protocol assignment"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.0.0.1", "private (RFC 1918)"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private (RFC 1918)"),
            ("::8.8.8.8", "IPv4-compatible"),
        ] {
            assert_eq!(refused(&policy, address), Some(range), "{address}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "198.20.0.0",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused(&policy, public), None, "{public}");
        }
    }

    #[test]
    fn ipv6_forms_that_embed_ipv4_are_judged_by_the_ipv4_they_embed() {
        let policy = EgressPolicy::default();
        for (address, embedded, range) in [
            // NAT64, RFC 6052's well-known prefix: the metadata address, loopback, private.
            ("64:ff9b::a9fe:a9fe", "169.254.169.254", "link-local"),
            ("64:ff9b::169.254.169.254", "169.254.169.254", "link-local"),
            ("64:ff9b::7f00:1", "127.0.0.1", "loopback"),
            ("64:ff9b::a00:1", "10.0.0.1", "private (RFC 1918)"),
            // SIIT (RFC 2765's IPv4-translated form).
            ("::ffff:0:a9fe:a9fe", "169.254.169.254", "link-local"),
            ("::ffff:0:7f00:1", "127.0.0.1", "loopback"),
            // 6to4: the IPv4 address is bits 16 to 48.
            ("2002:a9fe:a9fe::1", "169.254.169.254", "link-local"),
            ("2002:7f00:1::", "127.0.0.1", "loopback"),
            ("2002:c0a8:101:5::9", "192.168.1.1", "private (RFC 1918)"),
            // Teredo: the client's IPv4 address, inverted, in the last 32 bits.
            (
                "2001:0:4136:e378:8000:63bf:5601:5601",
                "169.254.169.254",
                "link-local",
            ),
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                "127.0.0.1",
                "loopback",
            ),
            // IPv4-mapped and IPv4-compatible, as before.
            ("::ffff:169.254.169.254", "169.254.169.254", "link-local"),
            ("::169.254.169.254", "169.254.169.254", "link-local"),
        ] {
            let ip: IpAddr = address.parse().unwrap();
            let refusal = policy.check_address("h", ip).unwrap_err();
            assert_eq!(refusal.range, range, "{address}");
            assert_eq!(refusal.address.to_string(), embedded, "{address}");
            // Allowing the IPv4 address (what the refusal says to do) opens the form too.
            let allowed = EgressPolicy::allowing([embedded]).unwrap();
            assert_eq!(refused(&allowed, address), None, "{address}");
        }
        // Forms whose embedding cannot be read, and deprecated site-local: refused as such.
        for (address, range) in [
            ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"),
            ("64:ff9b:1:ffff::1", "local-use NAT64"),
            ("fec0::1", "site-local (deprecated)"),
            ("feff:ffff::1", "site-local (deprecated)"),
        ] {
            assert_eq!(refused(&policy, address), Some(range), "{address}");
        }
        // The same forms of public addresses are public; a v6 allowance of the form opens it.
        for public in [
            "64:ff9b::808:808",
            "::ffff:0:808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "2001:db8:a9fe:a9fe::1",
        ] {
            assert_eq!(refused(&policy, public), None, "{public}");
        }
        let by_block = EgressPolicy::allowing(["64:ff9b:1::/48"]).unwrap();
        assert_eq!(refused(&by_block, "64:ff9b:1::a9fe:a9fe"), None);
        // And in URLs, as a scenario would write them.
        for url in [
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[fec0::1]/",
        ] {
            let err = policy.check_url(&Url::parse(url).unwrap()).unwrap_err();
            assert!(err.to_string().contains("--allow-egress"), "{url}: {err}");
        }
    }

    #[test]
    fn allowances_open_addresses_blocks_and_names() {
        let policy =
            EgressPolicy::allowing(["127.0.0.1", "10.0.0.0/8", "::1", "Example.Internal."])
                .unwrap();
        assert_eq!(refused(&policy, "127.0.0.1"), None);
        assert_eq!(refused(&policy, "::ffff:127.0.0.1"), None);
        assert_eq!(refused(&policy, "127.0.0.2"), Some("loopback"));
        assert_eq!(refused(&policy, "10.200.3.4"), None);
        assert_eq!(refused(&policy, "::1"), None);
        assert_eq!(refused(&policy, "192.168.0.1"), Some("private (RFC 1918)"));
        assert!(policy.allows_host("example.internal"));
        assert!(policy.allows_host("EXAMPLE.internal."));
        assert!(!policy.allows_host("other.internal"));
        let shown: Vec<String> = policy.allowed().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["127.0.0.1", "10.0.0.0/8", "::1", "example.internal"]
        );
        let everything = EgressPolicy::allowing(["0.0.0.0/0", "::/0"]).unwrap();
        assert_eq!(refused(&everything, "169.254.169.254"), None);
        assert_eq!(refused(&everything, "fe80::1"), None);
        let mapped = EgressPolicy::allowing(["::ffff:192.168.0.0/112"]).unwrap();
        assert_eq!(refused(&mapped, "192.168.7.7"), None);
        assert_eq!(
            mapped.allowed(),
            [EgressAllowance::Network {
                address: "192.168.0.0".parse().unwrap(),
                prefix: 16
            }]
        );
    }

    #[test]
    fn a_bad_allowance_is_an_error_naming_it() {
        for (entry, reason) in [
            ("", "empty"),
            ("10.0.0.0/33", "longer than the address"),
            ("nope/8", "not an IP address"),
            ("http://example.com", "no scheme"),
            ("example.com:8080", "no scheme, port"),
            ("127.1", "looks like an IPv4 address"),
            ("a..b", "between dots"),
        ] {
            let err = EgressPolicy::allowing(["127.0.0.1", entry]).unwrap_err();
            assert_eq!(err.entry, entry);
            let message = err.to_string();
            assert!(message.contains(&format!("{entry:?}")), "{message}");
            assert!(message.contains(reason), "{message}");
            assert!(message.contains("10.0.0.0/8"), "{message}");
        }
    }

    #[test]
    fn ip_literal_urls_are_checked_and_the_refusal_says_how_to_allow() {
        let policy = EgressPolicy::default();
        for url in [
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://0.0.0.0/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
        ] {
            let url = Url::parse(url).unwrap();
            let err = policy.check_url(&url).unwrap_err();
            let message = ModuleError::from(err).message;
            assert!(message.contains("--allow-egress"), "{message}");
            assert!(message.contains("SWITCHYARD_ALLOW_EGRESS"), "{message}");
        }
        let refused = policy
            .check_url(&Url::parse("http://0x7f000001/").unwrap())
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "refused to connect to 127.0.0.1: a loopback address is not reachable unless allowed; allow it with `--allow-egress 127.0.0.1` or SWITCHYARD_ALLOW_EGRESS"
        );
        assert!(
            policy
                .check_url(&Url::parse("http://example.com/").unwrap())
                .is_ok()
        );
        assert!(
            policy
                .check_url(&Url::parse("http://8.8.8.8/").unwrap())
                .is_ok()
        );
    }
}
