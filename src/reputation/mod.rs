//! Reputation lookups: DNS lists now; hub lookups and the shared cache come next. Every outside
//! lookup sits behind a trait with a real and a test implementation.
//!
//! - [`dnsbl`]: query names and the meaning of answers (pure, no I/O).
//! - [`cache`]: the bounded TTL cache with shared misses.

pub mod cache;
pub mod dnsbl;
