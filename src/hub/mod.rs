//! The hub: the central service that gateways report to and ask about keys (issue 10; being
//! built). So far:
//!
//! - [`model`]: the correlation model: evidence from many gateways, decayed, into a key's
//!   reputation (formulas in its docs).
//! - [`store`]: the store trait and the embedded (redb) store.

pub mod model;
pub mod store;
