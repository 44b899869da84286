//! The model of `[dns]`, `[[dnsbl]]`, `[[dnswl]]`, `[[uribl]]` and `[allow]`: DNS lists and
//! local allowlists.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnetwork::IpNetwork;

/// Which Received hops IP lists check, besides the connecting client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceivedHops {
    /// None: the client is the only address checked.
    Off,
    /// The last hop outside the trusted networks (where the mail entered our relays).
    Last,
    /// Every hop outside the trusted networks.
    All,
}

/// `[dns]`: the resolver and the limits every list shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// Recursive resolvers to ask, in order. DNSBL operators refuse queries that come through
    /// public resolvers: run a local one (unbound). Default `127.0.0.1:53`.
    pub servers: Vec<SocketAddr>,
    /// Budget for all lookups of one message. Default 5 s.
    pub timeout: Duration,
    /// Answers kept in the cache. Default 10,000.
    pub cache_size: usize,
    /// TTL bounds for cached answers, negative ones included. Default 60 s and 1 h.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// Domain-list queries per message at most. Default 20.
    pub max_domain_queries: usize,
    /// Skip loopback, private, link-local and other non-public addresses. Default true.
    pub skip_private: bool,
    pub received: ReceivedHops,
    /// How often each zone is probed. Default 5 min.
    pub probe_interval: Duration,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            servers: vec![SocketAddr::from(([127, 0, 0, 1], 53))],
            timeout: Duration::from_secs(5),
            cache_size: 10_000,
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            max_domain_queries: 20,
            skip_private: true,
            received: ReceivedHops::Last,
            probe_interval: Duration::from_secs(300),
        }
    }
}

/// Whether a list holds IP addresses or domain names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Ip,
    Domain,
}

/// What a list is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The connecting client's address.
    Client,
    /// Addresses of the untrusted Received hops (see `[dns] received`).
    Received,
    /// Registered domains of the URLs in the message.
    Urls,
    /// The envelope sender's domain.
    MailFrom,
    /// The From header's domain.
    From,
    /// The HELO name.
    Helo,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Client => "client",
            Check::Received => "received",
            Check::Urls => "urls",
            Check::MailFrom => "mail_from",
            Check::From => "from",
            Check::Helo => "helo",
        }
    }

    pub(super) fn kind(self) -> ListKind {
        match self {
            Check::Client | Check::Received => ListKind::Ip,
            _ => ListKind::Domain,
        }
    }
}

pub(super) const CHECKS: [Check; 6] = [
    Check::Client,
    Check::Received,
    Check::Urls,
    Check::MailFrom,
    Check::From,
    Check::Helo,
];

/// One `[[dnsbl]]`, `[[dnswl]]` or `[[uribl]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsList {
    /// Symbol name, and prefix of the `_BLOCKED`, `_TIMEOUT`, ... symbols.
    pub name: String,
    pub zone: String,
    /// A query key (Spamhaus DQS and the like): queries go to `<item>.<key>.<zone>`. Never
    /// written to logs, symbols or SMTP replies.
    pub key: Option<String>,
    pub kind: ListKind,
    /// A `[[dnswl]]`: listings are good news (negative scores).
    pub allow: bool,
    pub checks: Vec<Check>,
    /// Score of a listing when `codes` is empty.
    pub score: f64,
    pub codes: Vec<Code>,
    /// A domain the list is known to list, probed to tell a working zone from a dead one
    /// (IP lists use 127.0.0.2).
    pub test_domain: Option<String>,
}

impl DnsList {
    /// The zone queries go to, key included.
    pub fn query_zone(&self) -> String {
        match &self.key {
            Some(k) => format!("{k}.{}", self.zone),
            None => self.zone.clone(),
        }
    }
}

/// `[allow]`: local allowlists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Allow {
    pub networks: Vec<IpNetwork>,
    /// Envelope sender domains; a domain also covers its subdomains.
    pub sender_domains: Vec<String>,
    /// Recipient addresses, or `@domain` for a whole domain.
    pub recipients: Vec<String>,
    /// Files with one entry per line (a network, a domain, or an address or `@domain`),
    /// `#` comments; re-read when they change.
    pub files: Vec<PathBuf>,
    /// Score of each allowlist symbol. Default -20.
    pub score: f64,
}

/// How a zone's return codes map to symbols.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeMatch {
    /// One address, as `127.0.0.2`.
    Exact(Ipv4Addr),
    /// An inclusive range, as ZEN's XBL `127.0.0.4`-`127.0.0.7`.
    Range(Ipv4Addr, Ipv4Addr),
    /// A bit in the last octet, as SURBL/URIBL multi (`returnbits`).
    Bits(u8),
}

impl CodeMatch {
    pub fn matches(&self, addr: Ipv4Addr) -> bool {
        match self {
            CodeMatch::Exact(a) => *a == addr,
            CodeMatch::Range(lo, hi) => (*lo..=*hi).contains(&addr),
            CodeMatch::Bits(mask) => {
                let o = addr.octets();
                o[0] == 127 && o[3] & mask != 0
            }
        }
    }
}

/// One entry of a zone's code map.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    pub when: CodeMatch,
    pub symbol: String,
    pub score: f64,
}
