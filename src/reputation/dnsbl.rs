//! DNS list queries and answers, without I/O: the name to look up for an address or a domain,
//! and what an answer means. The one rule that matters most: an error is never a listing.
//!
//! Return codes follow the conventions of the big lists (Spamhaus ZEN/DBL, SURBL, URIBL):
//! answers in 127.0.0.0/8 are listings, except `127.0.0.1` (never a listing: test and "not
//! listed" answers of broken lists), the `127.255.255.0/24` error range (.252 typo in the zone
//! name, .254 query through a public resolver, .255 too many queries) and `127.0.1.255` (an IP
//! queried against a domain list). Anything outside 127/8 is an error too.

use std::net::{IpAddr, Ipv4Addr};

use crate::config::Code;
use crate::config::names::{MAX_NAME, is_dns_name};

/// The name to query for an IP address in `zone`: IPv4 octets reversed, IPv6 as 32 reversed
/// nibbles. A query key for services such as Spamhaus DQS is part of `zone`.
pub fn ip_query(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len());
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    name.push(
                        char::from_digit(u32::from(nibble), 16).expect("a nibble is a hex digit"),
                    );
                    name.push('.');
                }
            }
            name.push_str(zone);
            name
        }
    }
}

/// The name to query for a domain in a domain list, or None when the domain cannot be
/// queried (empty, too long, or with characters DNS names do not have).
pub fn domain_query(domain: &str, zone: &str) -> Option<String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.');
    let name = format!("{domain}.{zone}");
    (is_dns_name(&domain) && name.len() <= MAX_NAME).then_some(name)
}

/// What one A record in an answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A listing code to look up in the zone's code map.
    Listed(Ipv4Addr),
    /// The list answered, but with an error; the reason is for logs and the `*_BLOCKED` symbol.
    Error(&'static str),
}

/// Classifies one returned address.
pub fn classify(addr: Ipv4Addr) -> Answer {
    let o = addr.octets();
    if o[0] != 127 {
        return Answer::Error("answer outside 127.0.0.0/8 (wildcard or hijacked zone)");
    }
    match o {
        [127, 0, 0, 1] => Answer::Error("127.0.0.1 is never a listing"),
        [127, 255, 255, 252] => Answer::Error("typo in the zone name (127.255.255.252)"),
        [127, 255, 255, 254] => {
            Answer::Error("query through a public or open resolver (127.255.255.254)")
        }
        [127, 255, 255, 255] => Answer::Error("excessive number of queries (127.255.255.255)"),
        [127, 255, 255, _] => Answer::Error("error range 127.255.255.0/24"),
        [127, 0, 1, 255] => {
            Answer::Error("an IP address queried against a domain list (127.0.1.255)")
        }
        _ => Answer::Listed(addr),
    }
}

/// The symbols and scores for the addresses of one answer. Every listing code that no entry
/// maps still counts, with score 0, under `unmapped` so it is seen and logged; errors are
/// returned apart and never score.
pub fn interpret(addrs: &[Ipv4Addr], codes: &[Code], unmapped: &str) -> Interpretation {
    let mut out = Interpretation::default();
    for &a in addrs {
        match classify(a) {
            Answer::Error(why) => out.errors.push((a, why)),
            Answer::Listed(code) => {
                let mut any = false;
                for c in codes.iter().filter(|c| c.when.matches(code)) {
                    any = true;
                    if !out.symbols.iter().any(|(s, _)| *s == c.symbol) {
                        out.symbols.push((c.symbol.clone(), c.score));
                    }
                }
                if !any {
                    out.unmapped.push(code);
                    if !out.symbols.iter().any(|(s, _)| s == unmapped) {
                        out.symbols.push((unmapped.to_string(), 0.0));
                    }
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interpretation {
    pub symbols: Vec<(String, f64)>,
    pub errors: Vec<(Ipv4Addr, &'static str)>,
    pub unmapped: Vec<Ipv4Addr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CodeMatch;

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn query_names() {
        assert_eq!(
            ip_query("192.0.2.99".parse().unwrap(), "zen.example."),
            "99.2.0.192.zen.example"
        );
        assert_eq!(
            ip_query("2001:db8::1".parse().unwrap(), "bl.example"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example"
        );
        // An IPv4-mapped address is queried as IPv4.
        assert_eq!(
            ip_query("::ffff:192.0.2.1".parse().unwrap(), "bl.example"),
            "1.2.0.192.bl.example"
        );
        // A query key is part of the zone.
        assert_eq!(
            ip_query("127.0.0.2".parse().unwrap(), "KEY.zen.dq.example"),
            "2.0.0.127.KEY.zen.dq.example"
        );
        assert_eq!(
            domain_query("Example.COM.", "dbl.example").as_deref(),
            Some("example.com.dbl.example")
        );
        for bad in [
            "",
            "a..b",
            "spa ce.example",
            &format!("{}.example", "a".repeat(64)),
            "bad/char.example",
        ] {
            assert_eq!(domain_query(bad, "dbl.example"), None, "{bad:?}");
        }
        let long = format!("{}.example", vec!["a".repeat(60); 5].join("."));
        assert_eq!(domain_query(&long, "dbl.example"), None);
    }

    #[test]
    fn errors_are_never_listings() {
        let cases = [
            ("127.0.0.2", true),
            ("127.0.0.10", true),
            ("127.0.1.2", true),
            ("127.0.0.1", false),
            ("127.255.255.252", false),
            ("127.255.255.254", false),
            ("127.255.255.255", false),
            ("127.255.255.7", false),
            ("127.0.1.255", false),
            ("10.0.0.2", false),
            ("0.0.0.0", false),
            ("192.0.2.1", false),
        ];
        for (a, listed) in cases {
            assert_eq!(matches!(classify(ip4(a)), Answer::Listed(_)), listed, "{a}");
        }
    }

    #[test]
    fn exact_range_and_bitmask_codes() {
        let codes = vec![
            Code {
                when: CodeMatch::Exact(ip4("127.0.0.2")),
                symbol: "ZEN_SBL".into(),
                score: 4.0,
            },
            Code {
                when: CodeMatch::Range(ip4("127.0.0.4"), ip4("127.0.0.7")),
                symbol: "ZEN_XBL".into(),
                score: 3.0,
            },
            Code {
                when: CodeMatch::Bits(8),
                symbol: "MULTI_PH".into(),
                score: 2.0,
            },
            Code {
                when: CodeMatch::Bits(64),
                symbol: "MULTI_ABUSE".into(),
                score: 1.5,
            },
        ];
        let got = interpret(
            &[ip4("127.0.0.2"), ip4("127.0.0.5"), ip4("127.0.0.6")],
            &codes,
            "BL_UNMAPPED",
        );
        assert_eq!(
            got.symbols,
            vec![("ZEN_SBL".to_string(), 4.0), ("ZEN_XBL".to_string(), 3.0)]
        );
        // 72 = 64 + 8: two bits, two symbols.
        let got = interpret(&[ip4("127.0.0.72")], &codes, "BL_UNMAPPED");
        assert_eq!(
            got.symbols,
            vec![
                ("MULTI_PH".to_string(), 2.0),
                ("MULTI_ABUSE".to_string(), 1.5)
            ]
        );
        // An unmapped listing scores 0; errors score nothing at all.
        let got = interpret(
            &[ip4("127.0.0.3"), ip4("127.255.255.254")],
            &codes,
            "BL_UNMAPPED",
        );
        assert_eq!(got.symbols, vec![("BL_UNMAPPED".to_string(), 0.0)]);
        assert_eq!(got.unmapped, vec![ip4("127.0.0.3")]);
        assert_eq!(got.errors.len(), 1);
        // A bitmask never matches an error code, even with the bit set.
        let got = interpret(&[ip4("127.255.255.255")], &codes, "BL_UNMAPPED");
        assert!(got.symbols.is_empty());
    }
}
