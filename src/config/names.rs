//! Checks on names, networks and addresses that the config and list files share.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// Longest domain name (RFC 1035): a longer query name cannot be sent.
pub const MAX_NAME: usize = 253;

/// Letters, digits, hyphens and underscores in dot-separated labels of 1-63 bytes, at most
/// 253 bytes in all.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub fn parse_network(s: &str) -> Option<IpNetwork> {
    let s = s.trim();
    s.parse::<IpNetwork>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNetwork::from))
}

/// `user@example.com` or `@example.com`, lower-cased.
pub fn parse_recipient(s: &str) -> Option<String> {
    let s = s.trim().trim_matches(['<', '>']).to_ascii_lowercase();
    let (local, domain) = s.rsplit_once('@')?;
    (is_dns_name(domain) && !local.contains(char::is_whitespace)).then_some(s.clone())
}
