//! Reputation: DNS lists and local allowlists now; hub lookups come next. Unit tests run the
//! DNS stage against a table resolver; integration tests against a real DNS server (rbldnsd).
//!
//! - [`dnsbl`]: query names and the meaning of answers (pure, no I/O).
//! - [`hops`]: which addresses to ask about: the client and the Received chain (pure).
//! - [`cache`]: the bounded TTL cache with shared misses.
//! - [`resolver`]: A lookups through hickory-resolver against the configured servers.
//! - [`lists`]: the DNS list stage: lookups under a per-message budget, zone probes.
//! - [`allow`]: local allowlists of networks, sender domains and recipients.
//! - [`hub`]: the hub lookup stage: one request per message, cached, behind a breaker.
//! - [`keys`]: what has a reputation at the hub: addresses, names, links, files and the
//!   content fingerprint of a message (pure).

pub mod allow;
pub mod cache;
pub mod dnsbl;
pub mod hops;
pub mod hub;
pub mod keys;
pub mod lists;
pub mod resolver;
