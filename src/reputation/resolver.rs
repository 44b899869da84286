//! A-record lookups, behind the [`Resolve`] trait: [`Resolver`] asks the configured recursive
//! resolvers, [`Table`] answers from a table (tests).
//!
//! hickory-resolver does the DNS work; its own cache is off (size 0), so the lookup cache
//! (`cache.rs`) and the zone probes see every answer as the server gives it. Names are
//! queried as absolute names (trailing dot) with no search domains, so a zone can never be
//! completed with the host's domain.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveErrorKind, TokioResolver};

/// Why a lookup gave no answer. Listings and "not listed" are answers; these are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing came back in time.
    Timeout,
    /// The server answered with an error (SERVFAIL, REFUSED) or could not be reached.
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("no answer in time"),
            Failure::Error(e) => f.write_str(e),
        }
    }
}

/// The addresses of an answer (empty: the name does not exist, i.e. not listed) and how long
/// the answer may be kept.
pub type Answer = (Vec<Ipv4Addr>, Duration);

pub type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, Failure>> + Send + 'a>>;

/// Asks for the A records of a name.
pub trait Resolve: Send + Sync {
    /// The A records of `name` (a name without the trailing dot).
    fn lookup_a<'a>(&'a self, name: &'a str) -> AnswerFuture<'a>;
    /// Queries sent so far.
    fn queries(&self) -> u64;
}

/// Answers from a table: the addresses or failure given for a name, NXDOMAIN (no addresses)
/// for any other, and never an answer for the names set to hang. Counts its queries.
#[derive(Default)]
pub struct Table {
    answers: Mutex<HashMap<String, Result<Vec<Ipv4Addr>, Failure>>>,
    hang: Mutex<Vec<String>>,
    asked: Mutex<Vec<String>>,
    queries: AtomicU64,
}

impl Table {
    pub fn set(&self, name: &str, answer: Result<Vec<Ipv4Addr>, Failure>) {
        self.answers
            .lock()
            .expect("table lock")
            .insert(name.to_string(), answer);
    }

    pub fn list(&self, name: &str, codes: &[&str]) {
        let addrs = codes
            .iter()
            .map(|c| c.parse().expect("an IPv4 code"))
            .collect();
        self.set(name, Ok(addrs));
    }

    /// Queries for `name` get no answer at all.
    pub fn hang(&self, name: &str) {
        self.hang.lock().expect("table lock").push(name.to_string());
    }

    /// The names asked so far, in order, and forgets them.
    pub fn asked(&self) -> Vec<String> {
        std::mem::take(&mut *self.asked.lock().expect("table lock"))
    }
}

impl Resolve for Table {
    fn lookup_a<'a>(&'a self, name: &'a str) -> AnswerFuture<'a> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.asked
            .lock()
            .expect("table lock")
            .push(name.to_string());
        let hangs = self
            .hang
            .lock()
            .expect("table lock")
            .iter()
            .any(|h| h == name);
        let answer = self.answers.lock().expect("table lock").get(name).cloned();
        Box::pin(async move {
            if hangs {
                std::future::pending::<()>().await;
            }
            answer
                .unwrap_or(Ok(Vec::new()))
                .map(|addrs| (addrs, Duration::from_secs(300)))
        })
    }

    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// The real resolver: hickory-resolver asking the configured servers over UDP.
pub struct Resolver {
    inner: TokioResolver,
    /// Queries sent to the servers (cache hits are not queries).
    queries: AtomicU64,
    /// Kept when an answer carries no TTL (a negative answer without SOA).
    default_ttl: Duration,
}

impl Resolver {
    /// A resolver asking `servers` in order; each query waits at most `timeout` per attempt.
    pub fn new(servers: &[SocketAddr], timeout: Duration, default_ttl: Duration) -> Resolver {
        let mut group = NameServerConfigGroup::new();
        // UDP only: list answers are a few A records, and a TCP fallback to a server that
        // does not listen on TCP (rbldnsd does not) would turn a timeout into an error.
        for &s in servers {
            group.push(NameServerConfig::new(s, Protocol::Udp));
        }
        let config = ResolverConfig::from_parts(None, vec![], group);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        opts.edns0 = true;
        let inner = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build();
        Resolver {
            inner,
            queries: AtomicU64::new(0),
            default_ttl,
        }
    }

    async fn lookup(&self, name: &str) -> Result<Answer, Failure> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.inner.ipv4_lookup(fqdn).await {
            Ok(found) => {
                let addrs: Vec<Ipv4Addr> = found.iter().map(|a| a.0).collect();
                let ttl = found
                    .as_lookup()
                    .records()
                    .iter()
                    .map(|r| r.ttl())
                    .min()
                    .map_or(self.default_ttl, |t| Duration::from_secs(t.into()));
                Ok((addrs, ttl))
            }
            Err(e) => match e.kind() {
                ResolveErrorKind::Proto(p) => match p.kind() {
                    // NXDOMAIN, or the name exists without an A record: not listed.
                    ProtoErrorKind::NoRecordsFound {
                        response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                        negative_ttl,
                        ..
                    } => {
                        let ttl = negative_ttl
                            .map_or(self.default_ttl, |t| Duration::from_secs(t.into()));
                        Ok((Vec::new(), ttl))
                    }
                    ProtoErrorKind::NoRecordsFound { response_code, .. } => {
                        Err(Failure::Error(format!("server answered {response_code}")))
                    }
                    ProtoErrorKind::Timeout => Err(Failure::Timeout),
                    _ => Err(Failure::Error(p.to_string())),
                },
                _ => Err(Failure::Error(e.to_string())),
            },
        }
    }
}

impl Resolve for Resolver {
    fn lookup_a<'a>(&'a self, name: &'a str) -> AnswerFuture<'a> {
        Box::pin(self.lookup(name))
    }

    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}
