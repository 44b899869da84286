//! The stages that belong to no subsystem: the message's structure and trusted senders.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::scan::{Compute, ScanInput, Symbol};

/// Structural anomalies of the MIME view (too many parts, too deep, bad encoding) as symbols.
pub struct MimeStage;

impl Compute for MimeStage {
    fn name(&self) -> &'static str {
        "mime"
    }

    fn scan(&self, input: &ScanInput, _: Instant) -> Vec<Symbol> {
        let dropped = input.message.headers_dropped;
        let excess = (dropped > 0).then(|| {
            Symbol::new(
                "TOO_MANY_HEADERS",
                3.0,
                format!(
                    "{} headers; only the first {} were scanned",
                    dropped + input.message.headers.len(),
                    crate::message::MAX_HEADERS
                ),
            )
        });
        let long = input.message.long_names;
        let long = (long > 0).then(|| {
            Symbol::new(
                "HEADER_NAME_TOO_LONG",
                1.0,
                format!(
                    "{long} header names longer than {} bytes (RFC 5322's line limit), not scanned",
                    crate::message::MAX_HEADER_NAME
                ),
            )
        });
        excess
            .into_iter()
            .chain(long)
            .chain(input.view().anomalies.iter().map(|a| {
                let (name, score) = a.symbol();
                Symbol::new(name, score, format!("{a:?}"))
            }))
            .collect()
    }
}

/// Senders from trusted networks or authenticated ones, when they are scanned, get a symbol
/// (with a configurable, usually negative, score). Skipping them is the session's job.
pub struct TrustStage {
    pub config: Arc<Config>,
}

impl Compute for TrustStage {
    fn name(&self) -> &'static str {
        "trust"
    }

    fn scan(&self, input: &ScanInput, _: Instant) -> Vec<Symbol> {
        let t = &self.config.trust;
        let mut out = Vec::new();
        if let Some(ip) = input.envelope.client_ip
            && t.networks.iter().any(|n| n.contains(ip))
        {
            out.push(Symbol::new(
                "TRUSTED_NETWORK",
                t.networks_score,
                format!("client {ip} is in trust.networks"),
            ));
        }
        if let Some(user) = &input.envelope.auth_user {
            out.push(Symbol::new(
                "AUTHENTICATED",
                t.authenticated_score,
                format!("sender authenticated as {user}"),
            ));
        }
        out
    }
}
