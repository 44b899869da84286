//! Reading `[dns]`, the list tables and `[allow]`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use toml::de::DeValue;

use super::lists::*;
use super::model::is_symbol_name;
use super::names::{is_dns_name, parse_network, parse_recipient};
use super::reader::{Reader, Table, join};

/// Longest per-message DNS budget: Postfix gives up on a milter command after 30 s
/// (`milter_command_timeout`), and the budget must leave room for the rest of the scan.
pub const MAX_DNS_TIMEOUT: Duration = Duration::from_secs(25);

/// Longest TTL bound: a day. Answers kept longer would outlive a delisting by far.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

pub(super) fn read_dns(r: &mut Reader<'_>, t: &Table<'_>, d: &mut Dns) {
    let p = "dns";
    r.known_keys(
        t,
        p,
        &[
            "servers",
            "timeout",
            "cache_size",
            "min_ttl",
            "max_ttl",
            "max_domain_queries",
            "skip_private",
            "received",
            "probe_interval",
        ],
    );
    if let Some(list) = r.string_list(t, p, "servers") {
        let mut servers = Vec::new();
        let empty = list.is_empty();
        for (s, at) in list {
            match parse_server(&s) {
                Some(a) => servers.push(a),
                None => r.problem_at(
                    at,
                    "dns.servers",
                    format!("{s:?} is not an address such as \"127.0.0.1\" or \"[::1]:5353\""),
                ),
            }
        }
        if empty {
            let v = t.get("servers").expect("key was just read");
            r.problem(v, "dns.servers", "at least one server is needed");
        }
        d.servers = servers;
    }
    if let Some(x) = r.duration(t, p, "timeout") {
        if x < Duration::from_millis(10) || x > MAX_DNS_TIMEOUT {
            let v = t.get("timeout").expect("key was just read");
            let msg = format!(
                "must be between 10ms and {MAX_DNS_TIMEOUT:?} (Postfix's milter_command_timeout is 30s)"
            );
            r.problem(v, "dns.timeout", msg);
        } else {
            d.timeout = x;
        }
    }
    if let Some(n) = r.integer(t, p, "cache_size", 10_000_000) {
        if n == 0 {
            let v = t.get("cache_size").expect("key was just read");
            r.problem(v, "dns.cache_size", "must be at least 1");
        } else {
            d.cache_size = n as usize;
        }
    }
    for key in ["min_ttl", "max_ttl"] {
        if let Some(x) = r.duration(t, p, key) {
            if x > MAX_TTL {
                let v = t.get(key).expect("key was just read");
                r.problem(
                    v,
                    &join(p, key),
                    format!("must be at most {MAX_TTL:?} (a day)"),
                );
            } else if key == "min_ttl" {
                d.min_ttl = x;
            } else {
                d.max_ttl = x;
            }
        }
    }
    if d.min_ttl > d.max_ttl {
        let v = t.get("min_ttl").or_else(|| t.get("max_ttl"));
        if let Some(v) = v {
            r.problem(v, "dns.min_ttl", "min_ttl is larger than max_ttl");
        }
    }
    if let Some(n) = r.integer(t, p, "max_domain_queries", 10_000) {
        d.max_domain_queries = n as usize;
    }
    d.skip_private = r.bool(t, p, "skip_private").unwrap_or(d.skip_private);
    if let Some(s) = r.string(t, p, "received") {
        d.received = match s.as_str() {
            "off" => ReceivedHops::Off,
            "last" => ReceivedHops::Last,
            "all" => ReceivedHops::All,
            _ => {
                let v = t.get("received").expect("key was just read");
                r.problem(
                    v,
                    "dns.received",
                    format!("{s:?}: use \"off\", \"last\" or \"all\""),
                );
                d.received
            }
        };
    }
    if let Some(x) = r.duration(t, p, "probe_interval") {
        if x < Duration::from_secs(1) || x > MAX_PROBE_INTERVAL {
            let v = t.get("probe_interval").expect("key was just read");
            r.problem(v, "dns.probe_interval", "must be between 1s and 24h");
        } else {
            d.probe_interval = x;
        }
    }
}

/// Longest `probe_interval`: a list that broke should not go unnoticed for more than a day
/// (and the timer must not overflow).
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

fn parse_server(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// The tables of `[[section]]`, with a problem for anything else under that key.
pub(super) fn tables<'t, 'i>(
    r: &mut Reader<'_>,
    root: &'t Table<'i>,
    section: &str,
) -> Vec<&'t Table<'i>> {
    let Some(v) = root.get(section) else {
        return Vec::new();
    };
    match v.get_ref() {
        DeValue::Array(items) => {
            let mut out = Vec::new();
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::Table(t) => out.push(t),
                    other => {
                        let msg =
                            format!("expected a [[{section}]] table, found {}", other.type_str());
                        r.problem(item, section, msg);
                    }
                }
            }
            out
        }
        other => {
            let msg = format!(
                "expected [[{section}]] tables (note the double brackets), found {}",
                other.type_str()
            );
            r.problem(v, section, msg);
            Vec::new()
        }
    }
}

/// Reads every `[[dnsbl]]`, `[[dnswl]]` and `[[uribl]]` table.
pub(super) fn read_lists(r: &mut Reader<'_>, root: &Table<'_>) -> Vec<DnsList> {
    let mut out: Vec<DnsList> = Vec::new();
    for section in ["dnsbl", "dnswl", "uribl"] {
        for (i, t) in tables(r, root, section).into_iter().enumerate() {
            let p = format!("{section}[{i}]");
            if let Some(list) = read_list(r, t, &p, section) {
                if out.iter().any(|l| l.name == list.name) {
                    let v = t.get("name").expect("a list has a name");
                    let msg = format!("{} is the name of another list already", list.name);
                    r.problem(v, &join(&p, "name"), msg);
                    continue;
                }
                out.push(list);
            }
        }
    }
    out
}

fn read_list(r: &mut Reader<'_>, t: &Table<'_>, p: &str, section: &str) -> Option<DnsList> {
    r.known_keys(
        t,
        p,
        &[
            "name",
            "zone",
            "key",
            "kind",
            "checks",
            "score",
            "codes",
            "test_domain",
        ],
    );
    let before = r.problem_count();
    let missing = |r: &mut Reader<'_>, key: &str| {
        let offset = t.iter().next().map_or(0, |(k, _)| k.span().start);
        r.problem_at(
            offset,
            &join(p, key),
            format!("[[{section}]] needs a {key}"),
        );
    };
    let name = r.string(t, p, "name");
    if name.is_none() && t.get("name").is_none() {
        missing(r, "name");
    }
    if let Some(n) = &name
        && !is_symbol_name(n)
    {
        let v = t.get("name").expect("key was just read");
        r.problem(
            v,
            &join(p, "name"),
            "a symbol name is A-Z, 0-9 and _, starting with a letter",
        );
    }
    let zone = r
        .string(t, p, "zone")
        .map(|z| z.trim_end_matches('.').to_ascii_lowercase());
    match &zone {
        None if t.get("zone").is_none() => missing(r, "zone"),
        Some(z) if !is_dns_name(z) => {
            let v = t.get("zone").expect("key was just read");
            r.problem(v, &join(p, "zone"), format!("{z:?} is not a DNS name"));
        }
        _ => {}
    }
    let key = r.string(t, p, "key").filter(|k| !k.is_empty());
    if let Some(k) = &key
        && !is_dns_name(k)
    {
        // The key itself is a secret: never repeat it in the message.
        let v = t.get("key").expect("key was just read");
        r.problem(
            v,
            &join(p, "key"),
            "the key must be letters, digits and hyphens",
        );
    }
    let default_kind = if section == "uribl" {
        ListKind::Domain
    } else {
        ListKind::Ip
    };
    let kind = match r.string(t, p, "kind").as_deref() {
        None => default_kind,
        Some("ip") if section != "uribl" => ListKind::Ip,
        Some("domain") => ListKind::Domain,
        Some(other) => {
            let v = t.get("kind").expect("key was just read");
            let allowed = if section == "uribl" {
                "\"domain\""
            } else {
                "\"ip\" or \"domain\""
            };
            r.problem(v, &join(p, "kind"), format!("{other:?}: use {allowed}"));
            default_kind
        }
    };
    let checks = match r.string_list(t, p, "checks") {
        None => match (section, kind) {
            ("uribl", _) => vec![Check::Urls],
            // An allowlist believes only the client: hops below it are the sender's word.
            ("dnswl", ListKind::Ip) => vec![Check::Client],
            (_, ListKind::Ip) => vec![Check::Client, Check::Received],
            ("dnswl", ListKind::Domain) => vec![Check::MailFrom, Check::From],
            (_, ListKind::Domain) => vec![Check::MailFrom, Check::From, Check::Helo],
        },
        Some(list) => {
            let mut checks = Vec::new();
            for (s, at) in list {
                match CHECKS.iter().find(|c| c.name() == s) {
                    Some(c) if c.kind() == kind => checks.push(*c),
                    Some(c) => {
                        let msg = format!(
                            "{:?} is for {} lists, and this one is kind = {:?}",
                            c.name(),
                            if c.kind() == ListKind::Ip {
                                "ip"
                            } else {
                                "domain"
                            },
                            if kind == ListKind::Ip { "ip" } else { "domain" }
                        );
                        r.problem_at(at, &join(p, "checks"), msg);
                    }
                    None => {
                        let names: Vec<&str> = CHECKS.iter().map(|c| c.name()).collect();
                        let msg = format!("{s:?} is not a check ({})", names.join(", "));
                        r.problem_at(at, &join(p, "checks"), msg);
                    }
                }
            }
            checks
        }
    };
    let allow = section == "dnswl";
    let score = r
        .number(t, p, "score")
        .unwrap_or(if allow { -1.0 } else { 1.0 });
    let codes = read_codes(r, t, p);
    let test_domain = r.string(t, p, "test_domain");
    if let Some(d) = &test_domain
        && !is_dns_name(d)
    {
        let v = t.get("test_domain").expect("key was just read");
        r.problem(v, &join(p, "test_domain"), format!("{d:?} is not a domain"));
    }
    // The longest query: an IPv6 address is 64 bytes of nibbles and dots.
    if let (Some(z), ListKind::Ip) = (&zone, kind) {
        let query = 64 + key.as_ref().map_or(0, |k| k.len() + 1) + z.len();
        if query > 253 {
            let v = t.get("zone").expect("a zone was read");
            let msg = "zone and key are too long for IPv6 queries (over 253 bytes)";
            r.problem(v, &join(p, "zone"), msg);
        }
    }
    if r.problem_count() > before {
        return None;
    }
    Some(DnsList {
        name: name?,
        zone: zone?,
        key,
        kind,
        allow,
        checks,
        score,
        codes,
        test_domain,
    })
}

fn read_codes(r: &mut Reader<'_>, t: &Table<'_>, p: &str) -> Vec<Code> {
    let key = join(p, "codes");
    let Some(v) = t.get("codes") else {
        return Vec::new();
    };
    let Some(items) = v.get_ref().as_array() else {
        let msg = format!(
            "expected a list of {{ code = \"127.0.0.2\", symbol = \"NAME\", score = 1.0 }}, found {}",
            v.get_ref().type_str()
        );
        r.problem(v, &key, msg);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{key}[{i}]");
        let DeValue::Table(ct) = item.get_ref() else {
            r.problem(
                item,
                &p,
                "expected a table such as { code = \"127.0.0.2\", symbol = \"NAME\", score = 1.0 }",
            );
            continue;
        };
        r.known_keys(ct, &p, &["code", "range", "bits", "symbol", "score"]);
        let code = r.string(ct, &p, "code");
        let range = r.string(ct, &p, "range");
        let bits = r.integer(ct, &p, "bits", 255);
        let when = match (code, range, bits) {
            (Some(c), None, None) => match c.parse::<Ipv4Addr>() {
                Ok(a) => Some(CodeMatch::Exact(a)),
                Err(_) => {
                    let v = ct.get("code").expect("key was just read");
                    r.problem(
                        v,
                        &join(&p, "code"),
                        format!("{c:?} is not an IPv4 address"),
                    );
                    None
                }
            },
            (None, Some(rg), None) => {
                let parsed = rg.split_once('-').and_then(|(a, b)| {
                    Some((a.trim().parse::<Ipv4Addr>().ok()?, b.trim().parse().ok()?))
                });
                match parsed {
                    Some((lo, hi)) if lo <= hi => Some(CodeMatch::Range(lo, hi)),
                    _ => {
                        let v = ct.get("range").expect("key was just read");
                        let msg = format!("{rg:?} is not a range such as \"127.0.0.4-127.0.0.7\"");
                        r.problem(v, &join(&p, "range"), msg);
                        None
                    }
                }
            }
            (None, None, Some(b)) if b > 0 => Some(CodeMatch::Bits(b as u8)),
            (None, None, Some(_)) => {
                let v = ct.get("bits").expect("key was just read");
                r.problem(v, &join(&p, "bits"), "a bitmask of 0 matches nothing");
                None
            }
            _ => {
                r.problem(item, &p, "give exactly one of code, range or bits");
                None
            }
        };
        let symbol = r.string(ct, &p, "symbol");
        if symbol.is_none() && ct.get("symbol").is_none() {
            r.problem(item, &p, "a code needs a symbol");
        }
        if let Some(s) = &symbol
            && !is_symbol_name(s)
        {
            let v = ct.get("symbol").expect("key was just read");
            r.problem(
                v,
                &join(&p, "symbol"),
                "a symbol name is A-Z, 0-9 and _, starting with a letter",
            );
        }
        let score = r.number(ct, &p, "score").unwrap_or(0.0);
        if let (Some(when), Some(symbol)) = (when, symbol) {
            out.push(Code {
                when,
                symbol,
                score,
            });
        }
    }
    out
}

pub(super) fn read_allow(r: &mut Reader<'_>, t: &Table<'_>, base: &Path, a: &mut Allow) {
    let p = "allow";
    r.known_keys(
        t,
        p,
        &["networks", "sender_domains", "recipients", "files", "score"],
    );
    if let Some(list) = r.string_list(t, p, "networks") {
        for (s, at) in list {
            match parse_network(&s) {
                Some(n) => a.networks.push(n),
                None => r.problem_at(
                    at,
                    "allow.networks",
                    format!("{s:?} is not a network such as \"192.0.2.0/24\""),
                ),
            }
        }
    }
    if let Some(list) = r.string_list(t, p, "sender_domains") {
        for (s, at) in list {
            let d = s
                .trim()
                .trim_start_matches('@')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if is_dns_name(&d) {
                a.sender_domains.push(d);
            } else {
                r.problem_at(at, "allow.sender_domains", format!("{s:?} is not a domain"));
            }
        }
    }
    if let Some(list) = r.string_list(t, p, "recipients") {
        for (s, at) in list {
            match parse_recipient(&s) {
                Some(x) => a.recipients.push(x),
                None => r.problem_at(
                    at,
                    "allow.recipients",
                    format!("{s:?} is not an address or @domain"),
                ),
            }
        }
    }
    if let Some(list) = r.string_list(t, p, "files") {
        for (f, at) in list {
            let full = base.join(f);
            r.readable(&full, false, at, "allow.files");
            a.files.push(full);
        }
    }
    if let Some(x) = r.number(t, p, "score") {
        a.score = x;
    }
}
