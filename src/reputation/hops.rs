//! Which addresses IP lists are asked about: the connecting client and, when repmilter sits
//! behind other relays, the hops of the Received chain outside the trusted networks. Pure.
//!
//! Received headers are read newest first. Each names the host it came from with an address
//! in brackets, in the forms Postfix (`from h (h [192.0.2.1])`), Sendmail (the same) and Exim
//! (`from [192.0.2.1] (helo=h)`, `from h ([192.0.2.1] helo=h)`) write; `IPv6:` prefixes are
//! dropped. The chain below the first untrusted hop is written by machines we do not control,
//! so `last` mode stops there.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::config::ReceivedHops;

/// Received headers read at most: a loop or a forged chain cannot make us query more.
pub const MAX_RECEIVED: usize = 30;

/// Untrusted hops checked at most in `all` mode.
pub const MAX_HOPS: usize = 5;

/// Where an address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Received,
}

/// Whether an address is worth asking a public list about.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link local.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The address a Received header says the message came from, if it names one.
pub fn received_from(value: &str) -> Option<IpAddr> {
    // A Received header with a from clause starts with it; one without (local delivery,
    // "by ... for <from@...>") names no sending host.
    let lower = value.to_ascii_lowercase();
    let start = value.len() - value.trim_start().len();
    if !lower[start..].starts_with("from") {
        return None;
    }
    // The "from" clause ends where "by" starts; an address after that is our own.
    let end = lower[start..]
        .find(" by ")
        .or_else(|| lower[start..].find("\nby "))
        .or_else(|| lower[start..].find("\tby "))
        .map_or(lower.len(), |i| start + i);
    // Postfix and Sendmail write the HELO name first and the address they saw last, in the
    // parentheses (`from [10.0.0.1] (rdns [192.0.2.1])`); Exim writes the address first and
    // marks the HELO (`from [192.0.2.1] (helo=[10.0.0.1])`). A sender chooses its HELO, so
    // the address is the last bracketed one that is not a HELO.
    let clause = &value[start..end];
    let mut found = None;
    let mut pos = 0;
    while let Some(open) = clause[pos..].find('[') {
        let open = pos + open;
        let Some(close) = clause[open..].find(']') else {
            break;
        };
        let close = open + close;
        pos = close + 1;
        let before = clause[..open].trim_end().to_ascii_lowercase();
        if before.ends_with("helo=") || before.ends_with("helo =") || before.ends_with("helo") {
            continue;
        }
        let inside = clause[open + 1..close].trim();
        let inside = inside
            .strip_prefix("IPv6:")
            .or_else(|| inside.strip_prefix("ipv6:"))
            .unwrap_or(inside);
        if let Ok(ip) = inside.parse::<IpAddr>() {
            found = Some(ip.to_canonical());
        }
    }
    found
}

/// The addresses to check, each once, client first.
pub fn select(
    client: Option<IpAddr>,
    received: &[String],
    trusted: &[IpNetwork],
    skip_private: bool,
    mode: ReceivedHops,
) -> Vec<(IpAddr, Source)> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    let wanted = |ip: IpAddr| !is_trusted(ip) && (!skip_private || is_public(ip));
    let mut out = Vec::new();
    let client = client.map(|c| c.to_canonical());
    if let Some(c) = client
        && wanted(c)
    {
        out.push((c, Source::Client));
    }
    // A client we do not trust is where the mail entered: hops before it are its word.
    let client_is_relay = client.is_none_or(|c| is_trusted(c) || (skip_private && !is_public(c)));
    if mode == ReceivedHops::Off || !client_is_relay {
        return out;
    }
    for value in received.iter().take(MAX_RECEIVED) {
        let Some(ip) = received_from(value) else {
            continue;
        };
        if Some(ip) == client || out.iter().any(|(a, _)| *a == ip) {
            continue;
        }
        if is_trusted(ip) {
            continue;
        }
        if skip_private && !is_public(ip) {
            // An internal hop: keep walking, as for a trusted one.
            continue;
        }
        out.push((ip, Source::Received));
        if mode == ReceivedHops::Last
            || out.iter().filter(|(_, s)| *s == Source::Received).count() >= MAX_HOPS
        {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_in_received_headers() {
        let cases = [
            (
                "from mail.example.com (mail.example.com [198.51.100.7])\n\tby mx.example.net (Postfix) with ESMTP id 1",
                Some("198.51.100.7"),
            ),
            (
                "from [203.0.113.9] (helo=x) by mx with esmtp",
                Some("203.0.113.9"),
            ),
            ("from h ([203.0.113.10] helo=h) by mx", Some("203.0.113.10")),
            ("from h (h [IPv6:2001:db8::1]) by mx", Some("2001:db8::1")),
            // The address after "by" is the receiving host, not the sender.
            ("from localhost by mx.example.net [192.0.2.1]", None),
            ("by mx.example.net with LMTP", None),
            (
                "by mx.example.net for <from@example.org> ([192.0.2.9])",
                None,
            ),
            ("\n\tfrom h (h [192.0.2.8]) by mx", Some("192.0.2.8")),
            ("from x ([not an ip] [192.0.2.44]) by y", Some("192.0.2.44")),
            ("from x ([192.0.2.1", None),
            // The sender's HELO is an address literal: the address the MTA saw wins.
            (
                "from [10.0.0.1] (host.example [198.51.100.9]) by mx",
                Some("198.51.100.9"),
            ),
            (
                "from [198.51.100.10] (helo=[10.0.0.1]) by mx",
                Some("198.51.100.10"),
            ),
            (
                "from h ([198.51.100.11] helo=[10.0.0.2]) by mx",
                Some("198.51.100.11"),
            ),
            ("from h (h [::ffff:192.0.2.5]) by mx", Some("192.0.2.5")),
        ];
        for (value, want) in cases {
            assert_eq!(received_from(value), want.map(ip), "{value}");
        }
    }

    #[test]
    fn public_and_private_addresses() {
        for a in [
            "127.0.0.2",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "100.64.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(ip(a)), "{a}");
        }
        for a in ["8.8.8.8", "198.51.99.1", "2a00:1450::1", "::ffff:8.8.4.4"] {
            assert!(is_public(ip(a)), "{a}");
        }
    }

    #[test]
    fn hop_selection() {
        let received: Vec<String> = [
            "from relay2 (relay2 [10.0.0.2]) by mx",
            "from relay1 (relay1 [192.0.2.10]) by relay2",
            "from bad (bad [198.51.100.66]) by relay1",
            "from worse (worse [203.0.113.77]) by bad",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let trusted: Vec<IpNetwork> = vec!["192.0.2.0/24".parse().unwrap()];
        // Behind trusted relays: the client (a relay) is not checked; the first hop outside
        // the trusted and private networks is.
        let got = select(
            Some(ip("192.0.2.10")),
            &received,
            &trusted,
            true,
            ReceivedHops::Last,
        );
        assert_eq!(got, vec![(ip("198.51.100.66"), Source::Received)]);
        let got = select(
            Some(ip("192.0.2.10")),
            &received,
            &trusted,
            true,
            ReceivedHops::All,
        );
        assert_eq!(
            got,
            vec![
                (ip("198.51.100.66"), Source::Received),
                (ip("203.0.113.77"), Source::Received)
            ]
        );
        // An untrusted client is checked, and its Received headers are not believed.
        let got = select(
            Some(ip("198.51.100.5")),
            &received,
            &trusted,
            true,
            ReceivedHops::All,
        );
        assert_eq!(got, vec![(ip("198.51.100.5"), Source::Client)]);
        // Received checks off.
        let got = select(
            Some(ip("192.0.2.10")),
            &received,
            &trusted,
            true,
            ReceivedHops::Off,
        );
        assert!(got.is_empty());
        // Private addresses count when skip_private is off (the tests use 127.0.0.x).
        let got = select(Some(ip("127.0.0.2")), &[], &[], false, ReceivedHops::Last);
        assert_eq!(got, vec![(ip("127.0.0.2"), Source::Client)]);
        let got = select(Some(ip("127.0.0.2")), &[], &[], true, ReceivedHops::Last);
        assert!(got.is_empty());
    }
}
