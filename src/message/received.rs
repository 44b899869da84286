//! SpamAssassin's Received-header relay parser, so that repmilter can give rules the
//! `X-Spam-Relays-Trusted`, `-Untrusted`, `-Internal` and `-External` pseudo-headers exactly
//! as SpamAssassin 4.0.1 computes them.
//!
//! This is a port of `Mail::SpamAssassin::Message::Metadata::Received`:
//! [`parse_line`] is `parse_received_line` (one header value to a [`Relay`], to
//! [`Line::Ignored`] for SA's `return 0` — a handover that is not a TCP/IP hop — or to
//! [`Line::Unparseable`] for its bare `return`), and [`relays`] is `parse_received_headers`
//! (the chain split at the trust boundary). Rules written for SpamAssassin match on
//! [`Relay::as_string`], so the port keeps SA's quirks, not what a header "really" says.
//!
//! How the Perl was carried over:
//! - The formats are tried in SA's order and the first that matches wins (its
//!   `goto enough`); values set by a format that then falls through stay set, as in Perl.
//! - Matching is on the octets of the value with `regex::bytes` and `(?-u)`: SpamAssassin
//!   keeps headers as UTF-8 octets (`Message::Node::_decode_header`), so its `\s`, `\w`,
//!   `\d`, `\b`, `/i` and `.` are ASCII and byte-wide; bounded repeats such as
//!   `[^\)]{0,40}` count bytes, here too. Captures become strings lossily, which changes
//!   nothing unless a capture splits a character where Perl would emit the partial bytes.
//! - `regex` has the same leftmost-first semantics as Perl's backtracking for patterns
//!   without look-around, so most patterns are SA's text unchanged. SA's `IP_ADDRESS`,
//!   `LOCALHOST` and `IP_PRIVATE` (Constants.pm) carry look-behinds (`(?<!:)`,
//!   `(?<![a-f0-9:])`) and a look-ahead (`(?![a-f0-9:])`) that `regex` lacks. Where SA
//!   embeds them between fixed characters that already satisfy those assertions (a `[`,
//!   `(`, `@` or space before; `]`, `)`, `%`, `,`, `.` or space after) they are dropped; the
//!   few places where they decide the match are rewritten by hand, each with a comment.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::LazyLock;

use ipnetwork::IpNetwork;
use regex::bytes::{Captures, Regex};

/// Most Received headers read from one message; older ones are not looked at. Postfix
/// bounces a message with this many (`hopcount_limit`, default 50) as a mail loop, so no
/// message an MTA delivers has more, and a forged pile of them costs bounded work.
pub const MAX_RECEIVED: usize = 50;

/// Longest header value parsed, in bytes; the rest is cut off. This is SpamAssassin's own
/// `MAX_HEADER_VALUE_LENGTH`: it truncates every header value there when it reads a
/// message, so SA never sees more either (it counts from just after the colon, so a value
/// passed without its leading space may keep one byte more than SA kept).
pub const MAX_VALUE_LEN: usize = 8192;

/// The headers SpamAssassin 4.0.1 reads an originating client address from
/// (`originating_ip_headers` in `10_default_prefs.cf`; Conf.pm's own default is empty), in
/// the order it appends them to the chain.
pub const ORIGINATING_IP_HEADERS: [&str; 6] = [
    "X-Yahoo-Post-IP",
    "X-Originating-IP",
    "X-Apparently-From",
    "X-SenderIP",
    "X-AOL-IP",
    "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp",
];

/// One parsed handover: who connected (`ip`, `rdns`, `helo`, `ident`) to whom (`by`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relay {
    pub ip: String,
    /// Reverse DNS as the receiving MTA recorded it; empty when it had none or did not say.
    pub rdns: String,
    pub helo: String,
    pub by: String,
    pub ident: String,
    pub envfrom: String,
    /// The MTA's queue id, as written (SA does not mask characters in it).
    pub id: String,
    /// How the client authenticated (`ESMTPA`, `Sendmail`, `Postfix`, ...); empty if not.
    pub auth: String,
    /// `ip` is loopback, link-local, RFC 1918 or shared (CGN) address space.
    pub ip_private: bool,
    /// Set by [`relays`]: the handover happened inside the internal networks.
    pub internal: bool,
    /// Set by [`relays`]; always false here, as repmilter has no `msa_networks`.
    pub msa: bool,
}

impl Relay {
    /// SpamAssassin's text for one relay, the unit of the `X-Spam-Relays-*` headers:
    /// `[ ip=.. rdns=.. helo=.. by=.. ident=.. envfrom=.. intl=0|1 id=.. auth=.. msa=0|1 ]`.
    pub fn as_string(&self) -> String {
        // SA writes `intl=0` and `msa=0` first and substitutes the first ` intl=\d ` and
        // ` msa=\d ` afterwards; an `auth` with spaces can hold the first ` msa=\d `.
        let envfrom = if truthy(self.envfrom.as_bytes()) {
            self.envfrom.as_str()
        } else {
            ""
        };
        let s = format!(
            "[ ip={} rdns={} helo={} by={} ident={} envfrom={} intl=0 id={} auth={} msa=0 ]",
            self.ip, self.rdns, self.helo, self.by, self.ident, envfrom, self.id, self.auth
        );
        let s = replace_first_flag(&s, " intl=", self.internal);
        replace_first_flag(&s, " msa=", self.msa)
    }
}

/// Replaces the first `{key}\d ` (key with its leading space) by `{key}0|1 `.
fn replace_first_flag(s: &str, key: &str, value: bool) -> String {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find(key).map(|i| i + from) {
        let d = i + key.len();
        if b.get(d).is_some_and(u8::is_ascii_digit) && b.get(d + 1) == Some(&b' ') {
            let mut out = String::with_capacity(s.len());
            out.push_str(&s[..d]);
            out.push(if value { '1' } else { '0' });
            out.push_str(&s[d + 1..]);
            return out;
        }
        from = i + 1;
    }
    s.to_string()
}

/// What one Received header is to SpamAssassin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Relay(Relay),
    /// Known not to describe a TCP/IP handover (local submission, a content filter, a
    /// mail fetcher, ...): skipped without counting as unparseable.
    Ignored,
    /// No known format, or not enough in it (SA wants an IP and a `by`).
    Unparseable,
}

/// Parses one Received header value (folded or not), as SpamAssassin's
/// `parse_received_line`. At most [`MAX_VALUE_LEN`] bytes of it are read.
pub fn parse_line(value: &str) -> Line {
    parse(value.as_bytes()).0
}

/// A message's relays split at the trust boundary, newest first in each list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relays {
    pub trusted: Vec<Relay>,
    pub untrusted: Vec<Relay>,
    pub internal: Vec<Relay>,
    pub external: Vec<Relay>,
    /// Received headers in no format SA knows.
    pub unparseable: usize,
}

impl Relays {
    /// `X-Spam-Relays-Trusted`.
    pub fn trusted_str(&self) -> String {
        join(&self.trusted)
    }
    /// `X-Spam-Relays-Untrusted`.
    pub fn untrusted_str(&self) -> String {
        join(&self.untrusted)
    }
    /// `X-Spam-Relays-Internal`.
    pub fn internal_str(&self) -> String {
        join(&self.internal)
    }
    /// `X-Spam-Relays-External`.
    pub fn external_str(&self) -> String {
        join(&self.external)
    }
}

fn join(relays: &[Relay]) -> String {
    relays
        .iter()
        .map(Relay::as_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The values to pass to [`relays`] as `originating_ip`, as SA picks them: for each name in
/// [`ORIGINATING_IP_HEADERS`], in that order, the last header of that name (any case).
pub fn originating_ip_values<'a>(headers: &[(&str, &'a str)]) -> Vec<&'a str> {
    ORIGINATING_IP_HEADERS
        .iter()
        .filter_map(|name| {
            headers
                .iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        })
        .collect()
}

/// Splits a message's relays as SpamAssassin's `parse_received_headers` does.
///
/// `received`: the Received header values, newest first (at most [`MAX_RECEIVED`] are
/// read). `originating_ip`: values of the [`ORIGINATING_IP_HEADERS`] (see
/// [`originating_ip_values`]); the first address in each becomes a synthetic oldest hop, as
/// in SA. `trusted`: `None` infers the boundary as SA does without `trusted_networks` (a
/// hop from a private address or an authenticated one keeps the chain trusted);
/// `Some(nets)` is `trusted_networks` (plus 127.0.0.0/8 and ::1, which SA always adds) and
/// also serves as `internal_networks`, as in SA when only the former is configured.
pub fn relays(received: &[&str], originating_ip: &[&str], trusted: Option<&[IpNetwork]>) -> Relays {
    let mut lines: Vec<Cow<'_, [u8]>> = received
        .iter()
        .take(MAX_RECEIVED)
        .map(|v| Cow::Borrowed(v.as_bytes()))
        .collect();
    // SA turns each originating address into a Received-like line and parses it with the
    // rest (bug 5680); one value per configured header name at most.
    for value in originating_ip.iter().take(ORIGINATING_IP_HEADERS.len()) {
        if let Some(ip) = first_ip(cut(value.as_bytes())) {
            let mut line = b"from X-Originating-IP: ".to_vec();
            line.extend_from_slice(ip);
            lines.push(Cow::Owned(line));
        }
    }

    let mut out = Relays::default();
    let mut in_trusted = true;
    let mut in_internal = true;
    // A mail fetcher's handover restarts the chain while we are still in trusted hops.
    let mut allow_fetcher_restart = true;
    // qmail-scanner notes the envelope sender of the handover recorded just below it.
    let mut qmail_scanner_envfrom: Option<Vec<u8>> = None;

    for line in &lines {
        let qms = qmail_scanner_envfrom.take().filter(|e| truthy(e));
        let (parsed, effect) = parse(line);
        match effect {
            Effect::None => {}
            Effect::Fetcher => {
                if allow_fetcher_restart {
                    out.trusted.clear();
                    out.internal.clear();
                    out.external.clear();
                }
            }
            Effect::QmailScanner(e) => qmail_scanner_envfrom = e,
        }
        let mut relay = match parsed {
            Line::Relay(r) => r,
            Line::Ignored => continue,
            Line::Unparseable => {
                out.unparseable += 1;
                continue;
            }
        };
        if let Some(e) = qms {
            relay.envfrom = String::from_utf8_lossy(&e).into_owned();
        }

        if in_trusted {
            match trusted {
                None => {
                    if !relay.ip_private && relay.auth.is_empty() {
                        in_trusted = false;
                        in_internal = false;
                    }
                }
                Some(nets) => {
                    // internal_networks is trusted_networks here, so a hop is internal
                    // exactly when it is trusted.
                    if relay.auth.is_empty() && !trusted_contains(nets, &relay.ip) {
                        in_trusted = false;
                        in_internal = false;
                    }
                }
            }
        }
        relay.internal = in_internal;
        if in_trusted {
            out.trusted.push(relay.clone());
            allow_fetcher_restart = true;
        } else {
            out.untrusted.push(relay.clone());
            allow_fetcher_restart = false;
        }
        if in_internal {
            out.internal.push(relay);
        } else {
            out.external.push(relay);
        }
    }
    out
}

/// Whether SA's `trusted_networks` holds `ip`: the configured networks plus 127.0.0.0/8 and
/// ::1, which SA always adds. Without Net::Patricia (as installed) SA compares IPv4
/// addresses against IPv4 networks and against IPv6 ones as `::ffff:a.b.c.d`, and an IPv4
/// network also holds its IPv4-mapped IPv6 addresses.
fn trusted_contains(nets: &[IpNetwork], ip: &str) -> bool {
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return false;
    };
    let loopback = match addr {
        IpAddr::V4(a) => a.octets()[0] == 127,
        IpAddr::V6(a) => {
            a == Ipv6Addr::LOCALHOST || a.to_ipv4_mapped().is_some_and(|a| a.octets()[0] == 127)
        }
    };
    loopback
        || nets.iter().any(|net| match (net, addr) {
            (IpNetwork::V4(n), IpAddr::V4(a)) => n.contains(a),
            (IpNetwork::V6(n), IpAddr::V4(a)) => n.contains(a.to_ipv6_mapped()),
            (IpNetwork::V6(n), IpAddr::V6(a)) => n.contains(a),
            (IpNetwork::V4(n), IpAddr::V6(a)) => a.to_ipv4_mapped().is_some_and(|a| n.contains(a)),
        })
}

/// Perl truth of a string: not empty and not `"0"`.
fn truthy(s: &[u8]) -> bool {
    !s.is_empty() && s != b"0"
}

fn cut(value: &[u8]) -> &[u8] {
    &value[..value.len().min(MAX_VALUE_LEN)]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

// ---------------------------------------------------------------------------------------
// Patterns. `{IP}`, `{IP4}`, `{IP6}` and `{LOCALHOST}` in a pattern stand for SA's
// constants without their look-arounds (see the module docs for where that is exact).

/// One IPv4 octet, as SA spells it (no leading zeros).
macro_rules! octet {
    () => {
        "(?:1[0-9][0-9]|2[0-4][0-9]|25[0-5]|[1-9][0-9]|[0-9])"
    };
}
macro_rules! dotted_quad {
    () => {
        concat!(octet!(), r"\.", octet!(), r"\.", octet!(), r"\.", octet!())
    };
}
/// The IPv4 branch of IP_ADDRESS, less its `(?<!:)`.
macro_rules! ip4 {
    () => {
        concat!(r"\b", dotted_quad!(), r"\b")
    };
}
/// The IPv6 branch of IP_ADDRESS after its optional `IPv6:` prefix, less the look-behind
/// before it and the `(?![a-f0-9:])` after it. Alternatives in SA's order.
macro_rules! ip6_core {
    () => {
        concat!(
            "(?i:",
            // IPv4 mapped in IPv6: twelve bytes in one of these forms, then a dotted quad
            "(?:(?:[a-f0-9]{1,4}:){6}",
            "|::(?:[a-f0-9]{1,4}:){0,5}",
            "|(?:[a-f0-9]{1,4}:){1,5}:",
            "|[a-f0-9]{1,4}::(?:[a-f0-9]{1,4}:){1,4}",
            "|(?:[a-f0-9]{1,4}:){2}:(?:[a-f0-9]{1,4}:){1,3}",
            "|(?:[a-f0-9]{1,4}:){3}:(?:[a-f0-9]{1,4}:){1,2}",
            "|(?:[a-f0-9]{1,4}:){4}:[a-f0-9]{1,4}:)",
            dotted_quad!(),
            // or a pure IPv6 address
            "|(?:[a-f0-9]{1,4}:){7}[a-f0-9]{1,4}",
            "|:(?::[a-f0-9]{1,4}){1,7}",
            "|(?:[a-f0-9]{1,4}:){1,7}:",
            "|[a-f0-9]{1,4}:(?::[a-f0-9]{1,4}){1,6}",
            "|(?:[a-f0-9]{1,4}:){2}(?::[a-f0-9]{1,4}){1,5}",
            "|(?:[a-f0-9]{1,4}:){3}(?::[a-f0-9]{1,4}){1,4}",
            "|(?:[a-f0-9]{1,4}:){4}(?::[a-f0-9]{1,4}){1,3}",
            "|(?:[a-f0-9]{1,4}:){5}(?::[a-f0-9]{1,4}){1,2}",
            "|(?:[a-f0-9]{1,4}:){6}:[a-f0-9]{1,4}",
            "|::)"
        )
    };
}
macro_rules! ip6 {
    () => {
        concat!("(?i:IPv6:)?", ip6_core!())
    };
}
macro_rules! ip {
    () => {
        concat!("(?:", ip4!(), "|", ip6!(), ")")
    };
}
/// The twelve leading bytes of an IPv4-mapped address, all zero but `ffff` (LOCALHOST and
/// IP_PRIVATE spell them so).
macro_rules! mapped_zero_prefix {
    () => {
        concat!(
            "(?:(?:0{1,4}:){5}ffff:",
            "|::(?:0{1,4}:){0,4}ffff:",
            "|(?:0{1,4}:){1,4}:ffff:",
            "|0{1,4}::(?:0{1,4}:){1,3}ffff:",
            "|(?:0{1,4}:){2}:0{1,2}:ffff:",
            "|(?:0{1,4}:){3}:0:ffff:",
            "|(?:0{1,4}:){4}:ffff:)"
        )
    };
}
/// `::1` in all its spellings.
macro_rules! ip6_loopback {
    () => {
        concat!(
            "(?:(?:0{1,4}:){7}0{0,3}1",
            "|:(?::0{1,4}){0,6}:0{0,3}1",
            "|0{1,4}:(?::0{1,4}){0,5}:0{0,3}1",
            "|(?:0{1,4}:){2}(?::0{1,4}){0,4}:0{0,3}1",
            "|(?:0{1,4}:){3}(?::0{1,4}){0,3}:0{0,3}1",
            "|(?:0{1,4}:){4}(?::0{1,4}){0,2}:0{0,3}1",
            "|(?:0{1,4}:){5}(?::0{1,4}){0,1}:0{0,3}1",
            "|(?:0{1,4}:){6}:0{0,3}1)"
        )
    };
}
macro_rules! localhost {
    () => {
        concat!(
            r"(?i:localhost(?:\.localdomain)?",
            r"|\b127\.0\.0\.1\b",
            "|(?:IPv6:)?(?:",
            mapped_zero_prefix!(),
            r"127\.0\.0\.1|",
            ip6_loopback!(),
            "))"
        )
    };
}
macro_rules! private_v4 {
    () => {
        r"(?:10|127|169\.254|172\.(?:1[6-9]|2[0-9]|3[01])|192\.168|100\.(?:6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7]))"
    };
}

fn compile(pattern: &str) -> Regex {
    let pattern = pattern
        .replace("{IP}", ip!())
        .replace("{IP4}", ip4!())
        .replace("{IP6}", ip6!())
        .replace("{LOCALHOST}", localhost!());
    // The patterns are fixed text, compiled (all of them) by the unit tests.
    Regex::new(&format!("(?-u){pattern}")).expect("received.rs pattern compiles")
}

/// `(IP)` followed by `rest4` (IPv4) or `rest6` (IPv6) searched anywhere in a value. The
/// look-behinds of IP_ADDRESS matter here, so the byte before the address is matched too:
/// an IPv4 address must not follow a word character or `:`, an unprefixed IPv6 one must
/// not follow a hex digit or `:`, an `IPv6:`-prefixed one may follow anything. Each branch
/// (ip group, then the groups of `rest`) is tried in SA's order for the same start, so the
/// leftmost-first match is Perl's; see [`branch_groups`].
fn unanchored_ip(rest4: &str, rest6: &str) -> String {
    let a = format!("({}){rest4}", ip4!());
    let b = format!("((?i:IPv6:){}){rest6}", ip6_core!());
    let c = format!("({}){rest6}", ip6_core!());
    format!(r"(?:^(?:{a}|{b}|{c})|[^\w:](?:{a}|{b}|{c})|[g-zG-Z_](?:{b}|{c})|[0-9a-fA-F:](?:{b}))")
}

/// The `per_branch` groups of the branch of an [`unanchored_ip`] regex that matched.
fn branch_groups<'h>(c: &Captures<'h>, per_branch: usize) -> Vec<&'h [u8]> {
    let mut i = 1;
    while i < c.len() {
        if c.get(i).is_some() {
            return (i..i + per_branch)
                .map(|g| c.get(g).map_or(&b""[..], |m| m.as_bytes()))
                .collect();
        }
        i += per_branch;
    }
    vec![&b""[..]; per_branch]
}

macro_rules! patterns {
    ($($(#[$doc:meta])* $name:ident = $pattern:expr;)*) => {
        $($(#[$doc])* static $name: LazyLock<Regex> = LazyLock::new(|| compile(&$pattern));)*
        /// SpamAssassin's relay pseudo-headers, which its rules read like headers.
pub const PSEUDO_HEADERS: [&str; 4] = [
    "X-Spam-Relays-Trusted",
    "X-Spam-Relays-Untrusted",
    "X-Spam-Relays-Internal",
    "X-Spam-Relays-External",
];

/// The texts of [`PSEUDO_HEADERS`] for one message, in that order, and SpamAssassin's
/// `EnvelopeFrom` (see [`envelope_from`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayHeaders {
    pub relays: [String; 4],
    pub envelope_from: Option<String>,
    /// The relays themselves, for the eval tests that read them.
    pub parsed: Relays,
}

impl RelayHeaders {
    pub fn new(r: &Relays, envelope_from: Option<String>) -> RelayHeaders {
        RelayHeaders {
            relays: [
                r.trusted_str(),
                r.untrusted_str(),
                r.internal_str(),
                r.external_str(),
            ],
            envelope_from,
            parsed: r.clone(),
        }
    }

    /// The text of a pseudo-header by name (any case); None for other names, and for
    /// `EnvelopeFrom` when there is none.
    pub fn get(&self, name: &str) -> Option<&str> {
        if name.eq_ignore_ascii_case("EnvelopeFrom") {
            return self.envelope_from.as_deref();
        }
        PSEUDO_HEADERS
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
            .map(|i| self.relays[i].as_str())
    }
}

/// Whether a header name is one of [`PSEUDO_HEADERS`] or `EnvelopeFrom`.
pub fn is_pseudo_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("EnvelopeFrom")
        || PSEUDO_HEADERS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// SpamAssassin's `EnvelopeFrom` (`get_envelope_from`, without `envelope_sender_header`):
/// the envelope sender the newest untrusted relay (or else the oldest trusted one) recorded;
/// else, unless an `X-Sender` comes with a fetchmail hop, the first `X-Envelope-From`,
/// `Envelope-Sender` or `Return-Path` that is not below a Received header (below one, a
/// sender could have written it).
pub fn envelope_from(message: &super::Message, relays: &Relays) -> Option<String> {
    let hop = relays.untrusted.first().or(relays.trusted.last());
    if let Some(hop) = hop
        && (hop.envfrom.find('@').is_some_and(|i| i > 0))
    {
        return Some(hop.envfrom.clone());
    }
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let first_addr = |name: &str| {
        let raw = message.header(name)?;
        super::mime::addresses(raw)
            .into_iter()
            .find_map(|(_, a)| a)
            .or_else(|| Some(text(raw).trim().trim_matches(['<', '>']).to_string()))
    };
    let received = |n: &str| n.eq_ignore_ascii_case("Received");
    if first_addr("X-Sender").is_some_and(|a| a.contains('@'))
        && message
            .headers
            .iter()
            .any(|(n, v)| received(n) && text(v).contains("(fetchmail"))
    {
        return None;
    }
    // Whether the first header of that name comes after a Received header.
    let below_received = |name: &str| {
        let first_received = message.headers.iter().position(|(n, _)| received(n));
        let at = message
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name));
        matches!((first_received, at), (Some(r), Some(a)) if r < a)
    };
    for name in ["X-Envelope-From", "Envelope-Sender", "Return-Path"] {
        if let Some(addr) = first_addr(name) {
            if below_received(name) {
                if name == "X-Envelope-From" {
                    return None;
                }
                continue;
            }
            return Some(addr);
        }
    }
    None
}

/// The relays of a message as SpamAssassin sees them behind a milter. The MTA hides its own
/// Received header from milters (Postfix does), so the connection it reports, when it
/// reports one, is written as that header would be and read as the newest hop; then the
/// message's Received headers. This is what spamass-milter does for SpamAssassin.
pub fn of_message(
    message: &super::Message,
    envelope: &super::Envelope,
    trusted: Option<&[IpNetwork]>,
) -> Relays {
    let text: Vec<(&str, Cow<'_, str>)> = message
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v)))
        .collect();
    let connection = envelope.client_ip.map(|ip| {
        let rdns = match envelope.client_name.as_str() {
            "" | "unknown" => "unknown".to_string(),
            name => name.to_string(),
        };
        let helo = if envelope.helo.is_empty() {
            "unknown"
        } else {
            envelope.helo.as_str()
        };
        let with = if envelope.auth_user.is_some() {
            "ESMTPA"
        } else {
            "ESMTP"
        };
        let ip = match ip {
            IpAddr::V6(v6) => format!("IPv6:{v6}"),
            v4 => v4.to_string(),
        };
        // The envelope sender as the MTA would record it, so that `EnvelopeFrom` is the
        // real one.
        let sender = if envelope.from.is_empty() {
            String::new()
        } else {
            format!(" (envelope-from <{}>)", envelope.from)
        };
        format!("from {helo} ({rdns} [{ip}]){sender} by localhost (Postfix) with {with}")
    });
    let received: Vec<&str> = connection
        .as_deref()
        .into_iter()
        .chain(
            text.iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("Received"))
                .map(|(_, v)| v.as_ref()),
        )
        .collect();
    let pairs: Vec<(&str, &str)> = text.iter().map(|(n, v)| (*n, v.as_ref())).collect();
    relays(&received, &originating_ip_values(&pairs), trusted)
}

#[cfg(test)]
        static ALL_PATTERNS: &[&LazyLock<Regex>] = &[$(&$name),*];
    };
}

patterns! {
    // The start: what is a relay at all, and what to cut off.
    FROM_ANY = r"(?i)^\(?from ";
    WITH_LOCAL_FOR = r"\bwith local for\b";
    FROM_BY_SEMI = r"(?i)^from (\S+) by [^\s;]+ ?;";
    BRACKETED_V4 = r"^\[[\d.]+\]$";
    DATE = r"[\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\d+ (?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \d+ \d+:\d+(?::\d+)? \S+$";
    ID = r" id <?([^\s<>;]{3,})";
    HELO_EQ = r"\bhelo=([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)(?:[^-A-Za-z0-9.^+_&:=?!@%*$\\/]|$)";
    HELO_CMD = r"\b(?:HELO|EHLO) ([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)(?:[^-A-Za-z0-9.^+_&:=?!@%*$\\/]|$)";
    BY = r" by (\S+)(?:[^-A-Za-z0-9;.]|$)";

    // Authentication.
    AUTH_WITH = r"(?i) with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)";
    AUTH_GMAIL = r" by mx\.google\.com with ESMTPS id [a-z0-9]{1,4}sm[0-9]{2,9}[a-z]{3}\.[0-9]{1,3}\.[0-9]{4}\.(?:[0-6][0-9]\.){4}[0-6][0-9]";
    AUTH_GMAIL_TLS = r"\(version=([^ ]+) cipher=([^\)]+)\)";
    AUTH_COURIER = r"^from .*?(?:\]\)|\)\]) \(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \S+(?:, .*?)?\) by ";
    AUTH_SENDMAIL = r"^from .*?(?:\](?: \([^)]*\))?\)|\)\]) .*?\(.*?authenticated.*?\).*? by";
    AUTH_GMX = r"from \S* \((?:HELO|EHLO) (\S*)\) \[({IP})\] by (mail\.gmx\.(?:net|com)) \([^\)]+\) with ((?:ESMTP|SMTP))";
    AUTH_CRITICAL_PATH = r"\) by .+ \(\d{1,2}\.\d\.\d{3}(?:\.\d{1,3})?\) \(authenticated as .+\) id ";
    AUTH_POSTFIX = r"\) \(Authenticated sender: \S+\) by \S+ \(([^\)]+)\) with ";
    AUTH_COMMUNIGATE = r"CommuniGate Pro (HTTP|SMTP|XIMSS|IMAP)";
    AUTH_HTTP_DAV = r" with Microsoft Exchange Server HTTP-DAV\b";
    AUTH_VIA_HTTP = r"(?i) \(via (HTTP.?)\)(?: |;|$)";

    // "from ..." formats, in SA's order.
    ENVFROM = r"(?i)(?:return-path:? |envelope-(?:sender|from)[ =])(\S+)\b";
    SQUIRREL_USER = r" \((?:SquirrelMail|NaSMail) authenticated user ";
    /// `/(IP)\b(?![.-]).{10,80}by (\S+) with HTTP/` unanchored. The look-aheads are
    /// folded into the first byte of `.{10,80}`: never `.` or `-`, and after IPv6 never
    /// a hex digit or `:` either. Two groups per branch: ip, by.
    SQUIRREL = unanchored_ip(
        r"[^.\-\n].{9,79}by (\S+) with HTTP",
        r"\b[^a-fA-F0-9:.\-\n].{9,79}by (\S+) with HTTP",
    );
    /// `/(IP) by (\S+) \(IP\) with HTTP \(WebMailUI\)/` unanchored; ip, by per branch.
    AOL = unanchored_ip(
        r" by (\S+) \({IP}\) with HTTP \(WebMailUI\)",
        r" by (\S+) \({IP}\) with HTTP \(WebMailUI\)",
    );
    SMTPSVC = r"^(\S*) \(\[({IP})\][^\)]{0,40}\) by (\S+) with Microsoft SMTPSVC";
    SMTPSVC_PICKUP = r"^mail pickup service by (\S+) with Microsoft SMTPSVC$";
    MS_SMTP_SERVER = r" with (?:Microsoft SMTP Server|mapi id) (?:\([^\)]+\) )?\d+\.\d+\.\d+\.\d+(?:$| )";
    MS_SMTP = r"^(\S+) \(\[?({IP})(?:%[A-Z0-9._~-]*)?\]?\) by (\S+) ";
    /// SA: `\((\[?IP\]?)(?::\d+)\)`. IPv6 cannot be followed by `:` (its look-ahead), so
    /// an IPv6 address needs the closing bracket before the port.
    XMAIL = r"^(\S+) \((\[?(?:{IP4}\]?|{IP6}\]))(?::\d+)\) by (\S+)(?: \(\S+\))? with \[XMail";
    XMAIL_ID = r" id <(\S+)>";
    XMAIL_FROM = r" from <(\S+)>";
    ECELERITY = r"\(ecelerity\b";
    /// SA: `\[(IP):\d+\]`; only IPv4 can be followed by `:` (IPv6's look-ahead).
    ECELERITY_HELO = r"^\(\[({IP4}):\d+\] helo=(\S+)\) by (\S+) ";
    ECELERITY_PLAIN = r"^\S+ \(\[({IP4}):\d+\]\) by (\S+) ";
    EXIM_LOCAL = r"\bwith local(?:-\S+)? ";
    EXIM_IP_FIRST = r"^\[({IP})\] \((.*?)\) by (\S+) ";
    EXIM_RDNS = r"^(\S+) \(\[({IP})\](.*?)\) by (\S+) ";
    EXIM_BRACKET = r"^(\S+) \[({IP})\](:\d+)? by (\S+) ";
    EXIM_ODD_RDNS = r"^(\S+) ";
    EXIM_ODD_HELO = r" \((\S+)\) ";
    EXIM_ODD_IP = r" \[({IP})(?:\.\d+)?\] ";
    EXIM_ODD_BY = r"by (\S+) ";
    SUB_HELO = r"helo=(\S+)";
    SUB_IDENT = r"ident=(\S*)";
    POSTFIX = r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) ";
    /// Also the "pobox.com (h005018086b3b.ne.client2.attbi.com[66.31.45.164])" format.
    POSTFIX_NO_SPACE = r"^(\S+) \((\S+)\[({IP})\]\) by (\S+) ";
    SCALIX = r"^(\S+) \( ?({IP})\) by (\S+)";
    LOTUS = r"^(\S+) \(\[({IP})\]\) by (\S+) \(Lotus";
    WITH_HTTP = r"\bwith HTTP\b";
    HTTP_NUMERIC_HELO = r"^({IP}) \(\[{IP}\]\) by (\S+)";
    QMAIL_LDAP = r" by \S+ \(qmail-\S+\) with ";
    SENDMAIL = r"^(\S+) \((\S+) \[({IP})\].*\) by (\S+) \(";
    IDENT_PREFIX = r"^IDENT:([^@]*)@";
    USER_PREFIX = r"^([^@]*)@";
    EXCHANGE_IMS = r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) with \S+ \(";
    HELO_EQ_BRACKET = r"^(\S+) \(\[({IP})\] helo=(\S+)\) by (\S+) with ";
    UNKNOWN_DOMAIN = r"^(\S+) \(<unknown\S*>\[({IP})\]\) by (\S+) ";
    ATTBI = r"^(\S+) \((\S+\.\S+)\[({IP})\]\) by (\S+) ";
    IDENT_AT_BRACKET = r"^(\S+) \((\S*)@\[({IP})\].*\) by (\S+) \(";
    HOTMAIL = r"by (\S+\.hotmail\.msn\.com) ";
    LEADING_IP = r"^({IP}) ";
    QPSMTPD = r"^(\S+) \((?:HELO|EHLO) (\S*)\) \(({IP})\) by (\S+) \(qpsmtpd/\S+\) with (?:ESMTP|SMTP)";
    LHLO = r"^(\S+) \(LHLO (\S*)\) \(({IP})\) by (\S+) with LMTP";
    GMX = r"^(\S+) \((?:HELO|EHLO) (\S*)\) \[({IP})\] by (\S+) \([^\)]+\) with (?:ESMTP|SMTP)";
    SMTPD_FOR = r"^(\S+) \(\[({IP})\]\) by (\S+) via smtpd \(for \S+\) with SMTP\(";
    /// SA ends this with `(SMTP|QMQP)(?! id )`; only whether it matches is used, so the
    /// look-ahead becomes "then the end, or anything but ` id `".
    QMAIL = r"^\S+( \((?:HELO|EHLO) \S*\))? \((\S+@)?\[?{IP}\]?\)( \(envelope-sender <\S+>\))? by \S+( \(.+\))* with (.* )?(?:SMTP|QMQP)(?:$|[^ ]| $| [^i]| i$| i[^d]| id$| id[^ ])";
    QMAIL_HELO_IDENT = r"^(\S+) \((?:HELO|EHLO) ([^ \(\)]*)\) \((\S*)@\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    QMAIL_HELO = r"^(\S+) \((?:HELO|EHLO) ([^ \(\)]*)\) \(\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    QMAIL_IDENT = r"^(\S+) \((\S*)@\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    QMAIL_PLAIN = r"^(\S+) \(\[?({IP})\]?\)( \(envelope-sender <\S+>\))? by (\S+)";
    VIA_HTTP_END = r" via HTTP$";
    YAHOO_HTTP = r"^\[({IP})\] by (\S+) via HTTP$";
    SPACE_BRACKET = r"^(\S+) \( \[({IP})\]\).*? by (\S+) ";
    PAREN_RDNS = r"^\((\S+) \[({IP})\]\) by (\S+) ";
    BRACKET_BY = r"^\[({IP})\] by (\S+) ";
    PAREN_IP_BY = r"^\(\[?({IP})\]?\) by (\S+) ";
    MDAEMON = r"^(\S+) \[({IP})\] by (\S+) \[{IP}\] with ";
    MDAEMON_PAREN = r"^(\S+) \[\(({IP})\)\] by (\S+) \({IP}\) ";
    SENDMAIL_NO_RDNS = r"^(\S+) \(\[({IP})\]\) by (\S+) \(";
    SENDMAIL_LOOSE = r"^(\S+) \((\S+) \[({IP})\]\).*? by (\S+)\b";
    /// SA: `\[(IP)(?:[.:]\d+)?\]`; IPv6 cannot be followed by `:` (its look-ahead).
    /// Groups: helo, IPv4, IPv6, by.
    PORT_SUFFIX = r"^(\S+) \(\[(?:({IP4})(?:[.:]\d+)?|({IP6})(?:\.\d+)?)\]\).*? by (\S+) ";
    AUTH_BITS = r"^(\S+) \((\S+) \[({IP})\]\)(?: \(authenticated bits=\d+\))? by (\S+) \(";
    FETCHER = r"with (?:POP3|IMAP)";
    QMAILISH_HELO = r"^(\S+) \((?:HELO|EHLO) ([^\)]*)\) \((\S*@)?\[?({IP})\]?\).* by (\S+) ";
    QMAILISH = r"^(\S+) \((\S*@)?\[?({IP})\]?\).* by (\S+) ";
    OUTBLAZE = r"^\[({IP})\] by (\S+) with http for ";
    SMAP = r"^(\S+)\(({IP})\) by (\S+) via smap ";
    SMAP_HELO = r"^(\S+)\(({IP}), (?:HELO|EHLO) (\S*)\) by (\S+) via smap ";
    POST_OFFICE = r"^\[({IP})\] by (\S+) \(Post";
    ARGOSOFT = r"^\[({IP})\] by (\S+) \(ArGoSoft";
    SMTPL = r"^({IP}) by (\S+) \((?:SMTPL|InterScan)\b";
    BSMTP = r"^\S+ by \S+ with BSMTP";
    SPIKE = r"^(\S+) \((\S+) \[({IP})\]\) by (\S+) with ";
    /// SA: `\((?:(\S+)\@)?(IP).*?\) by`. After IPv6 its look-ahead decides which
    /// alternative wins, so the first byte of `.*?` (or the `)`) may not be a hex digit
    /// or `:`. Groups: rdns, helo, ident, IPv4, IPv6, by.
    YAHOO_PLAIN = r"^(\S+) \((?:HELO|EHLO) (\S*)\) \((?:(\S+)@)?(?:({IP4}).*?|({IP6})(?:[^a-fA-F0-9:].*?)??)\) by (\S+) with ";
    COMMUNIGATE_HELO = r"^\[({IP})\] \((?:account \S+ )?(?:HELO|EHLO) (\S*)\) by (\S+) \(";
    COMMUNIGATE_VERIFIED = r"^(\S+) \(\[({IP})\] verified\) by (\S+) \(";
    CIPHERTRUST = r"^\(\[({IP})\]\) by (\S+) with ";
    IRONPORT = r"^([^\d]\S+) \(({IP})\) by (\S+) ";
    CONTENT_TECHNOLOGIES = r"^\S+ \(\S+\) by \S+ \(Content Technologies ";
    DOUBLE_BRACKET = r"^(\S+) \(\[({IP})\] \[(\S+)\]\) by (\S+) with ";
    TUMBLEWEED = r"^({IP}) by (\S+) with ";
    FSECURE = r"^\[({IP})\]\S+ \((?:HELO|EHLO) (\S*)\) by (\S+) ";
    ALTAVISTA = r"^({IP}) \((?:HELO|EHLO) (\S*)\) by (\S+) ";
    OEMCOMPUTER = r"^(\S+) \[({IP})\] by (\S+) ";
    NODNSQUERY = r"^(\S+)\(({IP})\) by (\S+) ";
    MAILGATE = r"^\[({IP})\] by (\S+) \(MailGate ";
    UNVERIFIED = r"^(\S+) \(unverified \[({IP})\]\) by (\S+) ";
    IP_COMMENT = r"^({IP}) \([A-Za-z][^\)]+\) by (\S+) with ";
    IP_SUB = r"^\[({IP})\] \(([^\)]+)\) by (\S+) ";
    IDENT_IP = r"^(\S+) \((?:\S+@)?({IP})\) by (\S+) with ";
    OBTUSE = r#"^(\S+)\(({IP})\)(?:, claiming to be "(\S+)")? via \S+ by (\S+),"#;
    YAHOO_LOGIN = r"^(\S+) \((\S+)@({IP}) with login\) by (\S+\.yahoo\.com) with SMTP";
    SYNTHETIC = r"^X-Originating-IP: ({IP})$";

    // "from ..." handovers SA ignores.
    IGN_LOCAL_IDENT = r"^\S+ \([^\s@]+@{LOCALHOST}\) by \S+ \(";
    IGN_EXIM_LOCAL = r"^\S+ \S+ by \S+ with local-e?smtp ";
    IGN_AVG = r"^127\.0\.0\.1 \(AVG SMTP \S+ \[\S+\]\)";
    IGN_QMS_UID = r"^\S+@\S+ by \S+ by uid \S+ ";
    IGN_ADDRESS_BY = r"^\S+@\S+ by \S+ ";
    IGN_UNKNOWN_LOCAL = r"^Unknown/Local \(";
    IGN_LOCALHOST = r"^{LOCALHOST} \((?:\S+@)?{LOCALHOST}[\)\[]";
    IGN_LOCALHOST_IP = r"^\S+ \((?:\S+@)?{LOCALHOST}\) ";
    IGN_LOCALHOST_BRACKET = r"^\S+ \(\S+@\S+ \[{LOCALHOST}\]\) ";
    IGN_COURIER_AUTH = r"^\(AUTH: \S+\) by \S+ with ";
    IGN_UNIX = r"^localhost \(localhost \[\[UNIX: localhost\]\]\) by ";
    IGN_AMAZON = r"^\S+\.amazon\.com by \S+\.amazon\.com with ESMTP \(peer crosscheck: ";
    IGN_GROUPWISE = r"^[^.]+ by \S+ with Novell_GroupWise";
    IGN_RAPTOR = r"^no\.name\.available by \S+ via smtpd \(for ";
    QMAIL_SCANNER = r"^\S+ by \S+ \(.{0,100}\) with qmail-scanner";
    IGN_WITH_LOCAL = r"^\S+ by \S+ with local";
    IGN_CYRUS = r"^\S+ \(\[unix socket\]\) by \S+ \(Cyrus v[0-9]*?\.[0-9]*?\.[0-9]*?\) with LMTPA";
    IGN_NO_IP = r"^\S+ by \S+ (?:with|via|for|\()";
    IGN_NO_IP_2 = r"^\S+ (?:(?:with|via|for) \S+|\(unverified\)) by\b";
    IGN_SENDGRID = r"^\S+ \(unknown\) by \S+ \(SG\) with \b";
    IGN_OPENSMTPD = r"^\S+ \(\S+ \[local\]\) by \S+ \(OpenSMTPD\) with \b";
    IGN_MAILENABLE = r"^\(\[{LOCALHOST}\]\) with MailEnable ";
    IGN_FACEBOOK = r"^facebook\.com \([^\)]+\) by facebook\.com with Thrift id \S+$";
    IGN_GMAILAPI = r"^\S+ named \S+ by gmailapi\.google\.com with HTTPREST$";
    IGN_ID_ONLY = r"^\S+ id \S+$";
    IGN_JETSEND = r"^\[<.*? \(Jetsend";
    HELO_GUESS = r"^(\S+)[^-A-Za-z0-9.]";

    // "FROM ..." (simta, Rockliffe) and "(from ...)".
    SIMTA = r"^(\S+) \((\S+) \[({IP})\]\) BY (\S+) (?:\([^\)]+\) WITH SMTP )?ID <?(\S+?)>?(?: FOR <[^>]+>)?$";
    NAVGW = r"^(\S*) \[({IP})\]\) by (\S+) \(NAVGW .*?\) with ";
    IGN_SENDMAIL_T = r"^\S+@localhost\) by \S+ ";
    IGN_JQUEUEMAIL = r"^[^\s@]+@[^)]+\) by \S+\(jqueuemail\) id [^\s;]+";

    // The last resort, and the clean-up.
    ANY_BRACKETED_IP = r"\[({IP})\]";
    /// `m/(IP_ADDRESS)/` anywhere (originating headers); one group per branch. After
    /// IPv6 the look-ahead becomes "a byte that is not a hex digit or `:`, or the end".
    FIRST_IP = unanchored_ip("", "(?:[^a-fA-F0-9:]|$)");
    IP_ZONE = r"(?i)%[A-Z0-9._~-]*\z";
    IP_MAPPED_V4 = r"(?i)^0*:0*:(?:0*:)*ffff:(\d+\.\d+\.\d+\.\d+)$";
    /// IP_PRIVATE, anchored at the start as in SA; only whether it matches is used, so its
    /// final look-ahead becomes "a byte that is not a hex digit or `:`, or the end".
    IP_PRIVATE = concat!(
        "(?i)^(?:", private_v4!(), r"\..*",
        "|(?:IPv6:)?(?:", mapped_zero_prefix!(), private_v4!(), r"\..*",
        "|fe[89ab][0-9a-f]:.*|", ip6_loopback!(), ")(?:[^a-f0-9:]|$))"
    );
}

// ---------------------------------------------------------------------------------------
// The parser.

/// What SA's `parse_received_line` does besides returning a result.
#[derive(Debug)]
enum Effect {
    None,
    /// `found_pop_fetcher_sig`: a mail fetcher's handover.
    Fetcher,
    /// qmail-scanner's note of the envelope sender, for the next header.
    QmailScanner(Option<Vec<u8>>),
}

/// How a run of formats ended: SA's `goto enough`, a `return 0`, or falling through.
enum Flow {
    Enough,
    Ignore(Effect),
    FallThrough,
}

/// The values `parse_received_line` collects, as octets.
#[derive(Default)]
struct Fields {
    ip: Vec<u8>,
    rdns: Vec<u8>,
    helo: Vec<u8>,
    by: Vec<u8>,
    id: Vec<u8>,
    ident: Vec<u8>,
    envfrom: Option<Vec<u8>>,
    auth: Vec<u8>,
}

fn group(c: &Captures<'_>, i: usize) -> Vec<u8> {
    c.get(i).map_or_else(Vec::new, |m| m.as_bytes().to_vec())
}

fn parse(value: &[u8]) -> (Line, Effect) {
    let mut s = normalize_space(cut(value));
    // "get rid of invalid semicolon at the end of the header": `1 while s/\s?;$//`.
    while s.last() == Some(&b';') {
        s.pop();
        if s.last() == Some(&b' ') {
            s.pop();
        }
    }

    if !FROM_ANY.is_match(&s) || WITH_LOCAL_FOR.is_match(&s) {
        return (Line::Ignored, Effect::None);
    }
    // "from virtual-access.org by bolero.conactive.com ; <date>": no address to be had.
    if let Some(c) = FROM_BY_SEMI.captures(&s)
        && !BRACKETED_V4.is_match(&c[1])
    {
        return (Line::Ignored, Effect::None);
    }
    if let Some(m) = DATE.find(&s) {
        s.drain(m.range());
    }
    if let Some(i) = memchr::memmem::find(&s, b")by ") {
        s.insert(i + 1, b' ');
    }

    let mut f = Fields::default();
    if let Some(c) = ID.captures(&s) {
        f.id = group(&c, 1);
    }
    if let Some(c) = HELO_EQ.captures(&s).or_else(|| HELO_CMD.captures(&s)) {
        f.helo = group(&c, 1);
    }
    if let Some(c) = BY.captures(&s) {
        f.by = group(&c, 1);
    }
    f.auth = auth(&s);

    let (flow, rest) = if let Some(rest) = s.strip_prefix(b"from ") {
        (from_formats(rest, &mut f), rest)
    } else if let Some(rest) = s.strip_prefix(b"FROM ") {
        (upper_from_formats(rest, &mut f), rest)
    } else if let Some(rest) = s.strip_prefix(b"(from ") {
        (paren_from_formats(rest, &mut f), rest)
    } else {
        (Flow::FallThrough, &s[..])
    };
    match flow {
        Flow::Enough => {}
        Flow::Ignore(effect) => return (Line::Ignored, effect),
        Flow::FallThrough => {
            if !truthy(&f.ip)
                && let Some(c) = ANY_BRACKETED_IP.captures(rest)
            {
                f.ip = group(&c, 1);
            }
            if !(truthy(&f.ip) && truthy(&f.by)) {
                return (Line::Unparseable, Effect::None);
            }
        }
    }
    (Line::Relay(enough(f)), Effect::None)
}

/// `s/\s+/ /g; s/^ //; s/ $//` with Perl's ASCII `\s` (which includes vertical tab).
fn normalize_space(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut space = false;
    for &b in value {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c') {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(b' ');
            }
            space = false;
            out.push(b);
        }
    }
    out
}

/// The authentication marker, tried in SA's order.
fn auth(s: &[u8]) -> Vec<u8> {
    let has_by = contains(s, b" by ");
    if has_by && let Some(c) = AUTH_WITH.captures(s) {
        return group(&c, 1);
    }
    // GMail should say ESMTPSA but does not.
    if AUTH_GMAIL.is_match(s)
        && let Some(c) = AUTH_GMAIL_TLS.captures(s)
    {
        let mut a = b"GMail - transport=".to_vec();
        a.extend_from_slice(&c[1]);
        a.extend_from_slice(b" cipher=");
        a.extend_from_slice(&c[2]);
        return a;
    }
    if let Some(c) = AUTH_COURIER.captures(s) {
        return group(&c, 1);
    }
    if contains(s, b"authenticated") && AUTH_SENDMAIL.is_match(s) {
        return b"Sendmail".to_vec();
    }
    // GMX authenticates users without saying so.
    if let Some(c) = AUTH_GMX.captures(s) {
        let mut a = b"GMX (".to_vec();
        a.extend_from_slice(&c[4]);
        a.extend_from_slice(b" / ");
        a.extend_from_slice(&c[3]);
        a.push(b')');
        return a;
    }
    if contains(s, b" (authenticated as ") && AUTH_CRITICAL_PATH.is_match(s) {
        return b"CriticalPath".to_vec();
    }
    // Postfix's smtpd_sasl_authenticated_header; the name may be changed (mail_name).
    if let Some(c) = AUTH_POSTFIX.captures(s) {
        if &c[1] == b"Postfix" {
            return b"Postfix".to_vec();
        }
        let mut a = b"Postfix (".to_vec();
        a.extend_from_slice(&c[1]);
        a.push(b')');
        return a;
    }
    if AUTH_COMMUNIGATE.is_match(s) && contains(s, b" (account ") {
        return b"Communigate".to_vec();
    }
    if AUTH_HTTP_DAV.is_match(s) {
        return b"HTTP-DAV".to_vec();
    }
    if has_by && let Some(c) = AUTH_VIA_HTTP.captures(s) {
        return group(&c, 1);
    }
    Vec::new()
}

/// Exim's `(helo=x ident=y)` comment: SA removes the helo before looking for the ident.
fn exim_sub(sub: &[u8], f: &mut Fields) {
    let mut sub = sub.to_vec();
    if let Some(c) = SUB_HELO.captures(&sub) {
        let range = c.get(0).map(|m| m.range()).unwrap_or_default();
        f.helo = group(&c, 1);
        sub.drain(range);
    }
    if let Some(c) = SUB_IDENT.captures(&sub) {
        f.ident = group(&c, 1);
    }
}

/// `ident@` left in a qmail capture, without its `@` (when Perl-true).
fn qmail_ident(c: &Captures<'_>, i: usize) -> Vec<u8> {
    let mut ident = group(c, i);
    if truthy(&ident) && ident.last() == Some(&b'@') {
        ident.pop();
    }
    ident
}

/// The formats of "from ...", `s` without that prefix; SA's order, first match wins.
fn from_formats(s: &[u8], f: &mut Fields) -> Flow {
    if let Some(c) = ENVFROM.captures(s) {
        f.envfrom = Some(group(&c, 1));
    }

    if SQUIRREL_USER.is_match(s)
        && let Some(c) = SQUIRREL.captures(s)
    {
        let g = branch_groups(&c, 2);
        f.ip = g[0].to_vec();
        f.by = g[1].to_vec();
        return Flow::Enough;
    }
    if contains(s, b"aol.com")
        && contains(s, b"with HTTP (WebMailUI)")
        && let Some(c) = AOL.captures(s)
    {
        let g = branch_groups(&c, 2);
        f.ip = g[0].to_vec();
        f.by = g[1].to_vec();
        return Flow::Enough;
    }

    // One of these MTA-specific formats at most is tried (SA's if/elsif chain).
    if contains(s, b" SMTPSVC") {
        if let Some(c) = SMTPSVC.captures(s) {
            f.helo = group(&c, 1);
            f.ip = group(&c, 2);
            f.by = group(&c, 3);
            return Flow::Enough;
        }
        if SMTPSVC_PICKUP.is_match(s) {
            return Flow::Ignore(Effect::None);
        }
    } else if MS_SMTP_SERVER.is_match(s) {
        if let Some(c) = MS_SMTP.captures(s) {
            f.helo = group(&c, 1);
            f.ip = group(&c, 2);
            f.by = group(&c, 3);
            f.id.clear();
            return Flow::Enough;
        }
    } else if contains(s, b"[XMail ") {
        if let Some(c) = XMAIL.captures(s) {
            f.helo = group(&c, 1);
            f.ip = group(&c, 2);
            f.by = group(&c, 3);
            if let Some(c) = XMAIL_ID.captures(s) {
                f.id = group(&c, 1);
            }
            if let Some(c) = XMAIL_FROM.captures(s) {
                f.envfrom = Some(group(&c, 1));
            }
            return Flow::Enough;
        }
    } else if ECELERITY.is_match(s) {
        if let Some(c) = ECELERITY_HELO.captures(s) {
            f.ip = group(&c, 1);
            f.helo = group(&c, 2);
            f.by = group(&c, 3);
            return Flow::Enough;
        }
        if let Some(c) = ECELERITY_PLAIN.captures(s) {
            f.ip = group(&c, 1);
            f.by = group(&c, 2);
            return Flow::Enough;
        }
    } else if contains(s, b"Exim") {
        if EXIM_LOCAL.is_match(s) {
            return Flow::Ignore(Effect::None);
        }
        if let Some(c) = EXIM_IP_FIRST.captures(s) {
            f.ip = group(&c, 1);
            f.by = group(&c, 3);
            exim_sub(&c[2], f);
            return Flow::Enough;
        }
        if let Some(c) = EXIM_RDNS.captures(s) {
            f.rdns = group(&c, 1);
            f.ip = group(&c, 2);
            f.by = group(&c, 4);
            // The rDNS doubles as HELO unless one is given (SA bug 5112).
            f.helo = f.rdns.clone();
            exim_sub(&c[3], f);
            return Flow::Enough;
        }
        if let Some(c) = EXIM_BRACKET.captures(s) {
            f.rdns = group(&c, 1);
            f.ip = group(&c, 2);
            f.helo = group(&c, 1);
            f.by = group(&c, 4);
            return Flow::Enough;
        }
        // Odd Exim formats: take what can be had; these stay set if it falls through.
        if let Some(c) = EXIM_ODD_RDNS.captures(s) {
            f.rdns = group(&c, 1);
        }
        if let Some(c) = EXIM_ODD_HELO.captures(s) {
            f.helo = group(&c, 1);
        }
        if let Some(c) = EXIM_ODD_IP.captures(s) {
            f.ip = group(&c, 1);
        }
        if let Some(c) = EXIM_ODD_BY.captures(s) {
            f.by = group(&c, 1);
            if truthy(&f.ip) {
                return Flow::Enough;
            }
        }
    } else if contains(s, b" (Postfix) with") {
        if let Some(c) = POSTFIX.captures(s).or_else(|| POSTFIX_NO_SPACE.captures(s)) {
            f.helo = group(&c, 1);
            f.rdns = group(&c, 2);
            f.ip = group(&c, 3);
            f.by = group(&c, 4);
            if f.rdns == b"unknown" {
                f.rdns.clear();
            }
            return Flow::Enough;
        }
    } else if contains(s, b"(Scalix SMTP Relay") {
        if let Some(c) = SCALIX.captures(s) {
            f.helo = group(&c, 1);
            f.ip = group(&c, 2);
            f.by = group(&c, 3);
            return Flow::Enough;
        }
    } else if contains(s, b" (Lotus Domino ")
        && let Some(c) = LOTUS.captures(s)
    {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }

    // A numeric HELO faked for webmail over HTTP.
    if WITH_HTTP.is_match(s)
        && let Some(c) = HTTP_NUMERIC_HELO.captures(s)
    {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    // Sendmail, unless qmail-ldap (which looks like it).
    if !QMAIL_LDAP.is_match(s)
        && let Some(c) = SENDMAIL.captures(s)
    {
        f.helo = group(&c, 1);
        f.rdns = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        // IDENT lookups: "(IDENT:user@host [ip])" or "(user@host [ip])".
        if let Some(c) = IDENT_PREFIX.captures(&f.rdns.clone()) {
            f.ident = group(&c, 1);
            f.rdns.drain(..c.get(0).map_or(0, |m| m.end()));
        }
        if let Some(c) = USER_PREFIX.captures(&f.rdns.clone()) {
            f.ident = group(&c, 1);
            f.rdns.drain(..c.get(0).map_or(0, |m| m.end()));
        }
        return Flow::Enough;
    }

    // From here on the formats get less standard.
    if let Some(c) = EXCHANGE_IMS.captures(s) {
        f.rdns = group(&c, 2);
        f.ip = group(&c, 3);
        f.helo = group(&c, 1);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = HELO_EQ_BRACKET.captures(s) {
        f.rdns = group(&c, 1);
        f.ip = group(&c, 2);
        f.helo = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = UNKNOWN_DOMAIN.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = ATTBI.captures(s) {
        f.helo = group(&c, 1);
        f.rdns = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = IDENT_AT_BRACKET.captures(s) {
        f.helo = group(&c, 1);
        f.ident = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = HOTMAIL.captures(s) {
        f.by = group(&c, 1);
        if let Some(c) = LEADING_IP.captures(s) {
            f.ip = group(&c, 1);
        }
        return Flow::Enough;
    }
    if let Some(c) = QPSMTPD
        .captures(s)
        .or_else(|| LHLO.captures(s))
        .or_else(|| GMX.captures(s))
    {
        f.rdns = group(&c, 1);
        f.helo = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = SMTPD_FOR.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    // The many qmail variants; SA goes to `enough` even if none of the four parses it.
    if QMAIL.is_match(s) {
        if let Some(c) = QMAIL_HELO_IDENT.captures(s) {
            f.rdns = group(&c, 1);
            f.helo = group(&c, 2);
            f.ident = group(&c, 3);
            f.ip = group(&c, 4);
            f.by = group(&c, 6);
        } else if let Some(c) = QMAIL_HELO.captures(s) {
            f.rdns = group(&c, 1);
            f.helo = group(&c, 2);
            f.ip = group(&c, 3);
            f.by = group(&c, 5);
        } else if let Some(c) = QMAIL_IDENT.captures(s) {
            f.rdns = group(&c, 1);
            f.helo = group(&c, 1);
            f.ident = group(&c, 2);
            f.ip = group(&c, 3);
            f.by = group(&c, 5);
        } else if let Some(c) = QMAIL_PLAIN.captures(s) {
            f.rdns = group(&c, 1);
            f.helo = group(&c, 1);
            f.ip = group(&c, 2);
            f.by = group(&c, 4);
        }
        if f.rdns == b"unknown" {
            f.rdns.clear();
        }
        return Flow::Enough;
    }
    if VIA_HTTP_END.is_match(s)
        && let Some(c) = YAHOO_HTTP.captures(s)
    {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if let Some(c) = SPACE_BRACKET.captures(s) {
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = PAREN_RDNS.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = BRACKET_BY.captures(s).or_else(|| PAREN_IP_BY.captures(s)) {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if let Some(c) = MDAEMON
        .captures(s)
        .or_else(|| MDAEMON_PAREN.captures(s))
        .or_else(|| SENDMAIL_NO_RDNS.captures(s))
    {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = SENDMAIL_LOOSE.captures(s) {
        // couriertcpd writes "softdnserr" where the rDNS goes (SA bug 2326).
        if &c[2] != b"softdnserr" {
            f.rdns = group(&c, 2);
        }
        f.helo = group(&c, 1);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = PORT_SUFFIX.captures(s) {
        f.helo = group(&c, 1);
        f.ip = c
            .get(2)
            .or_else(|| c.get(3))
            .map_or_else(Vec::new, |m| m.as_bytes().to_vec());
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = AUTH_BITS.captures(s) {
        f.helo = group(&c, 1);
        f.rdns = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    // fetchmail, getmail: the hop from the mailbox server; the chain restarts here.
    if FETCHER.is_match(s) {
        return Flow::Ignore(Effect::Fetcher);
    }
    if let Some(c) = QMAILISH_HELO.captures(s) {
        f.rdns = group(&c, 1);
        f.helo = group(&c, 2);
        f.ident = qmail_ident(&c, 3);
        f.ip = group(&c, 4);
        f.by = group(&c, 5);
        return Flow::Enough;
    }
    if let Some(c) = QMAILISH.captures(s) {
        // qmail drops the HELO when it equals the rDNS (SA bug 2744).
        f.rdns = group(&c, 1);
        f.helo = group(&c, 1);
        f.ident = qmail_ident(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if contains(s, b" with http for ")
        && let Some(c) = OUTBLAZE.captures(s)
    {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if contains(s, b" via smap ")
        && let Some(c) = SMAP.captures(s)
    {
        f.rdns = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = SMAP_HELO.captures(s) {
        f.rdns = group(&c, 1);
        f.ip = group(&c, 2);
        f.helo = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if contains(s, b" (Post")
        && let Some(c) = POST_OFFICE.captures(s)
    {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if contains(s, b" (ArGoSoft")
        && let Some(c) = ARGOSOFT.captures(s)
    {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if let Some(c) = SMTPL.captures(s) {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    // BSMTP is not a TCP/IP handover.
    if contains(s, b" with BSMTP") && BSMTP.is_match(s) {
        return Flow::Ignore(Effect::None);
    }
    if let Some(c) = SPIKE.captures(s) {
        f.helo = group(&c, 1);
        f.rdns = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = YAHOO_PLAIN.captures(s) {
        f.rdns = group(&c, 1);
        f.helo = group(&c, 2);
        if let Some(m) = c.get(3) {
            f.ident = m.as_bytes().to_vec();
        }
        f.ip = c
            .get(4)
            .or_else(|| c.get(5))
            .map_or_else(Vec::new, |m| m.as_bytes().to_vec());
        f.by = group(&c, 6);
        return Flow::Enough;
    }
    if let Some(c) = COMMUNIGATE_HELO.captures(s) {
        f.ip = group(&c, 1);
        f.helo = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if contains(s, b" (CommuniGate Pro")
        && let Some(c) = COMMUNIGATE_VERIFIED.captures(s)
    {
        f.rdns = group(&c, 1);
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = CIPHERTRUST.captures(s) {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if let Some(c) = IRONPORT.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    // Useless without an address (and it would match too much further down).
    if CONTENT_TECHNOLOGIES.is_match(s) {
        return Flow::Ignore(Effect::None);
    }
    if let Some(c) = DOUBLE_BRACKET.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = TUMBLEWEED.captures(s) {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if let Some(c) = POSTFIX_NO_SPACE.captures(s) {
        f.helo = group(&c, 1);
        f.rdns = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = FSECURE.captures(s).or_else(|| ALTAVISTA.captures(s)) {
        f.ip = group(&c, 1);
        f.helo = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = OEMCOMPUTER.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = NODNSQUERY.captures(s) {
        f.rdns = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = MAILGATE.captures(s) {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if let Some(c) = UNVERIFIED.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = IP_COMMENT.captures(s) {
        f.ip = group(&c, 1);
        f.by = group(&c, 2);
        return Flow::Enough;
    }
    if let Some(c) = IP_SUB.captures(s) {
        f.ip = group(&c, 1);
        f.by = group(&c, 3);
        exim_sub(&c[2], f);
        return Flow::Enough;
    }
    if let Some(c) = IDENT_IP.captures(s) {
        f.rdns = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if let Some(c) = OBTUSE.captures(s) {
        f.rdns = group(&c, 1);
        f.ip = group(&c, 2);
        f.helo = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    if let Some(c) = YAHOO_LOGIN.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        return Flow::Enough;
    }
    // The line `relays` makes from an originating-IP header.
    if let Some(c) = SYNTHETIC.captures(s) {
        f.ip = group(&c, 1);
        f.by.clear();
        return Flow::Enough;
    }

    // Handovers to ignore: local ones, content filters, and MTAs that log no address.
    // ("return 0" rather than unparseable, so that ALL_TRUSTED can still fire.)
    let ignored = [
        &IGN_LOCAL_IDENT,
        &IGN_EXIM_LOCAL,
        &IGN_AVG,
        &IGN_QMS_UID,
        &IGN_ADDRESS_BY,
        &IGN_UNKNOWN_LOCAL,
        &IGN_LOCALHOST,
        &IGN_LOCALHOST_IP,
        &IGN_LOCALHOST_BRACKET,
        &IGN_COURIER_AUTH,
        &IGN_UNIX,
        &IGN_AMAZON,
        &IGN_GROUPWISE,
        &IGN_RAPTOR,
    ];
    if ignored.iter().any(|r| r.is_match(s)) {
        return Flow::Ignore(Effect::None);
    }
    // qmail-scanner repeats the handover below it, adding only the envelope sender.
    if QMAIL_SCANNER.is_match(s) {
        return Flow::Ignore(Effect::QmailScanner(
            f.envfrom.take().map(|e| clean_envfrom(&e)),
        ));
    }
    let ignored = [
        &IGN_WITH_LOCAL,
        &IGN_CYRUS,
        &IGN_NO_IP,
        &IGN_NO_IP_2,
        &IGN_SENDGRID,
        &IGN_OPENSMTPD,
    ];
    if ignored.iter().any(|r| r.is_match(s)) || contains(s, b"(LSMTP for") {
        return Flow::Ignore(Effect::None);
    }
    let ignored = [
        &IGN_MAILENABLE,
        &IGN_FACEBOOK,
        &IGN_GMAILAPI,
        &IGN_ID_ONLY,
        &IGN_JETSEND,
    ];
    if ignored.iter().any(|r| r.is_match(s)) {
        return Flow::Ignore(Effect::None);
    }

    if !truthy(&f.helo)
        && let Some(c) = HELO_GUESS.captures(s)
    {
        f.helo = group(&c, 1);
    }
    Flow::FallThrough
}

/// "FROM ..." in capitals: simta and Rockliffe.
fn upper_from_formats(s: &[u8], f: &mut Fields) -> Flow {
    if let Some(c) = SIMTA.captures(s) {
        f.helo = group(&c, 1);
        f.rdns = group(&c, 2);
        f.ip = group(&c, 3);
        f.by = group(&c, 4);
        f.id = group(&c, 5);
        if f.rdns == b"unverified" {
            f.rdns.clear();
        }
        return Flow::Enough;
    }
    Flow::FallThrough
}

/// "(from ...)": Norton AntiVirus Gateway, and local submissions to ignore.
fn paren_from_formats(s: &[u8], f: &mut Fields) -> Flow {
    if let Some(c) = NAVGW.captures(s) {
        f.helo = group(&c, 1);
        f.ip = group(&c, 2);
        f.by = group(&c, 3);
        return Flow::Enough;
    }
    if IGN_SENDMAIL_T.is_match(s) || IGN_JQUEUEMAIL.is_match(s) {
        return Flow::Ignore(Effect::None);
    }
    Flow::FallThrough
}

/// SA marks characters that have no business in these fields with `!` (so an address
/// literal HELO `[1.2.3.4]` reads `!1.2.3.4!`).
fn strip(field: &mut [u8]) {
    for b in field {
        if matches!(
            b,
            b' ' | b'\t'
                | b'\n'
                | b'\r'
                | b'\x0b'
                | b'\x0c'
                | b'\0'
                | b'#'
                | b'['
                | b']'
                | b'('
                | b')'
                | b'<'
                | b'>'
                | b'|'
        ) {
            *b = b'!';
        }
    }
}

/// `s/^\s*<*//; s/>*\s*$//` and the `!` marking, as SA cleans an envelope sender.
fn clean_envfrom(e: &[u8]) -> Vec<u8> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    let mut start = e.iter().take_while(|b| is_space(b)).count();
    start += e[start..].iter().take_while(|&&b| b == b'<').count();
    let e = &e[start..];
    let mut end = e.len() - e.iter().rev().take_while(|b| is_space(b)).count();
    end -= e[..end].iter().rev().take_while(|&&b| b == b'>').count();
    let mut e = e[..end].to_vec();
    strip(&mut e);
    e
}

/// SA's `enough:` label: clean the fields up and build the relay.
fn enough(mut f: Fields) -> Relay {
    // A trailing dot on the rDNS (SA bug 7810).
    while f.rdns.last() == Some(&b'.') {
        f.rdns.pop();
    }
    if f.rdns.eq_ignore_ascii_case(b"unknown") || f.rdns.first() == Some(&b'[') {
        f.rdns.clear();
    }
    if f.ip.len() >= 5 && f.ip[..5].eq_ignore_ascii_case(b"ipv6:") {
        f.ip.drain(..5);
    }
    if f.ip.first() == Some(&b'[') {
        f.ip.remove(0);
    }
    if f.ip.last() == Some(&b']') {
        f.ip.pop();
    }
    // An IPv6 zone (`%eth0`), then `::ffff:a.b.c.d` as plain IPv4.
    if let Some(m) = IP_ZONE.find(&f.ip) {
        f.ip.truncate(m.start());
    }
    if let Some(c) = IP_MAPPED_V4.captures(&f.ip) {
        f.ip = group(&c, 1);
    }
    if f.by.last() == Some(&b';') {
        f.by.pop();
    }
    for field in [&mut f.ip, &mut f.rdns, &mut f.helo, &mut f.by, &mut f.ident] {
        strip(field);
    }
    let envfrom = f.envfrom.map(|e| clean_envfrom(&e)).unwrap_or_default();

    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Relay {
        ip_private: IP_PRIVATE.is_match(&f.ip),
        ip: text(&f.ip),
        rdns: text(&f.rdns),
        helo: text(&f.helo),
        by: text(&f.by),
        ident: text(&f.ident),
        envfrom: text(&envfrom),
        id: text(&f.id),
        auth: text(&f.auth),
        internal: false,
        msa: false,
    }
}

/// The first address in an originating-IP header value, as SA's `m/($IP_ADDRESS)/`.
fn first_ip(value: &[u8]) -> Option<&[u8]> {
    let c = FIRST_IP.captures(value)?;
    let ip = branch_groups(&c, 1)[0];
    Some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message and SpamAssassin's answer for it.
    ///
    /// Every expected string here is SpamAssassin 4.0.1's own: each case was written as a
    /// message (these Received headers, newest first, and `X-Originating-IP` for the
    /// `originating` values) and run through
    /// `spamassassin -L -t --cf='add_header all RT _RELAYSTRUSTED_'
    /// --cf='add_header all RU _RELAYSUNTRUSTED_'` (and the same for `_RELAYSINTERNAL_` and
    /// `_RELAYSEXTERNAL_`, which came out equal to trusted and untrusted in every case, as
    /// they must when internal_networks is inferred or copied from trusted_networks).
    struct Case {
        name: &'static str,
        received: &'static [&'static str],
        originating: &'static [&'static str],
        trusted: &'static str,
        untrusted: &'static str,
    }

    fn check(cases: &[Case], nets: Option<&[IpNetwork]>) {
        assert!(!cases.is_empty());
        for case in cases {
            let r = relays(case.received, case.originating, nets);
            assert_eq!(r.trusted_str(), case.trusted, "{}: trusted", case.name);
            assert_eq!(
                r.untrusted_str(),
                case.untrusted,
                "{}: untrusted",
                case.name
            );
            assert_eq!(r.internal_str(), case.trusted, "{}: internal", case.name);
            assert_eq!(r.external_str(), case.untrusted, "{}: external", case.name);
        }
    }

    /// Without trusted_networks: SA infers trust from private addresses and
    /// authentication. Covers Postfix (rDNS, `unknown`, a trailing dot), Sendmail (forged,
    /// IDENT, envelope-from), the Exim forms, qmail, Microsoft SMTPSVC and Exchange (with
    /// an IPv6 zone and a public IPv6 address), ESMTPSA and Postfix's "Authenticated
    /// sender" extending trust, private hops on top, ignored and unparseable headers in a
    /// chain, IPv6 (prefixed, loopback, IPv4-mapped), a mail fetcher restarting the chain,
    /// qmail-scanner's envelope sender, X-Originating-IP, and rarer MTAs.
    #[test]
    fn relays_as_spamassassin_infers_them() {
        let cases = [
            Case {
                name: "postfix_rdns",
                received: &[
                    "from mail.example.org (mail.example.org [203.0.113.5]) by mx.example.net (Postfix) with ESMTP id 4ABC123DEF for <user@example.net>; Tue, 3 Jun 2025 10:00:00 +0000 (UTC)",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id=4ABC123DEF auth= msa=0 ]",
            },
            Case {
                name: "postfix_unknown",
                received: &[
                    "from helo.example (unknown [198.51.100.7]) by mx.example.net (Postfix) with ESMTP id 5BCD234EFA; Tue, 3 Jun 2025 10:00:00 +0000 (UTC)",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=198.51.100.7 rdns= helo=helo.example by=mx.example.net ident= envfrom= intl=0 id=5BCD234EFA auth= msa=0 ]",
            },
            Case {
                name: "postfix_rdns_trailing_dot_folded",
                received: &[
                    "from mail.example.org (mail.example.org. [203.0.113.5])\n\tby mx.example.net (Postfix) with ESMTP id 4ABC123DEF\n\tfor <user@example.net>; Tue, 3 Jun 2025 10:00:00 +0000 (UTC)",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id=4ABC123DEF auth= msa=0 ]",
            },
            Case {
                name: "sendmail_forged",
                received: &[
                    "from mail1.insuranceiq.com (host66.insuranceiq.com [65.217.159.66] (may be forged)) by dogma.slashnull.org (8.11.6/8.11.6) with ESMTP id h2F0c2x31856 for <jm@jmason.org>; Sat, 15 Mar 2003 00:38:03 GMT",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=65.217.159.66 rdns=host66.insuranceiq.com helo=mail1.insuranceiq.com by=dogma.slashnull.org ident= envfrom= intl=0 id=h2F0c2x31856 auth= msa=0 ]",
            },
            Case {
                name: "sendmail_ident",
                received: &[
                    "from ran-out.mx.develooper.com (IDENT:qmailr@one.develooper.com [64.81.84.115]) by dogma.slashnull.org (8.11.6/8.11.6) with SMTP id h381Vvf19860 for <jm-cpan@jmason.org>; Tue, 8 Apr 2003 02:31:57 +0100",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=64.81.84.115 rdns=one.develooper.com helo=ran-out.mx.develooper.com by=dogma.slashnull.org ident=qmailr envfrom= intl=0 id=h381Vvf19860 auth= msa=0 ]",
            },
            Case {
                name: "sendmail_envelope_from",
                received: &[
                    "from mail.example.org (mail.example.org [203.0.113.5]) by mx.example.net (8.14.4/8.14.4) with ESMTP id p1234567 (envelope-from <bounce@example.org>); Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom=bounce@example.org intl=0 id=p1234567 auth= msa=0 ]",
            },
            Case {
                name: "exim_ip_first",
                received: &[
                    "from [218.19.142.229] (helo=hotmail.com ident=yiuhyotp) by yzordderrex with smtp (Exim 3.35 #1 (Debian)) id 194BE5-0005Zh-00; Sat, 12 Apr 2003 03:58:53 +0100",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=218.19.142.229 rdns= helo=hotmail.com by=yzordderrex ident=yiuhyotp envfrom= intl=0 id=194BE5-0005Zh-00 auth= msa=0 ]",
            },
            Case {
                name: "exim_rdns_helo",
                received: &[
                    "from dsl092-072-213.bos1.dsl.speakeasy.net ([66.92.72.213] helo=blazing.arsecandle.org) by sc8-sf-list1.sourceforge.net with esmtp (Cipher TLSv1:DES-CBC3-SHA:168) (Exim 3.31-VA-mm2 #1 (Debian)) id 18lyuU-0007TI-00 for <SpamAssassin-talk@lists.sourceforge.net>; Thu, 20 Feb 2003 14:11:18 -0800",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=66.92.72.213 rdns=dsl092-072-213.bos1.dsl.speakeasy.net helo=blazing.arsecandle.org by=sc8-sf-list1.sourceforge.net ident= envfrom= intl=0 id=18lyuU-0007TI-00 auth= msa=0 ]",
            },
            Case {
                name: "exim_port",
                received: &[
                    "from server040.webpack.hosteurope.de ([80.237.130.48]:52313) by vps832469583.serverpool.info with esmtps (TLS-1.0:DHE_RSA_3DES_EDE_CBC_SHA:24) (Exim 4.50) id 1GzVLs-0002Oz-7b; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=80.237.130.48 rdns=server040.webpack.hosteurope.de helo=server040.webpack.hosteurope.de by=vps832469583.serverpool.info ident= envfrom= intl=0 id=1GzVLs-0002Oz-7b auth= msa=0 ]",
            },
            Case {
                name: "exim_bracket",
                received: &[
                    "from boggle.ihug.co.nz [203.109.252.209] by grunt6.ihug.co.nz with esmtp (Exim 3.35 #1 (Debian)) id 18SWRe-0006X6-00; Sun, 29 Dec 2002 18:57:06 +1300",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=203.109.252.209 rdns=boggle.ihug.co.nz helo=boggle.ihug.co.nz by=grunt6.ihug.co.nz ident= envfrom= intl=0 id=18SWRe-0006X6-00 auth= msa=0 ]",
            },
            Case {
                name: "exim_odd",
                received: &[
                    "from helene8.i.pinwand.net (helene.cats.ms) [10.0.8.6.13219] (mail) by lisbeth.i.pinwand.net with esmtp (Exim 3.35 #1 (Debian)) id 1CO5y7-0001vC-00; Sun, 31 Oct 2004 04:01:23 +0100",
                ],
                originating: &[],
                trusted: "[ ip=10.0.8.6 rdns=helene8.i.pinwand.net helo=helene.cats.ms by=lisbeth.i.pinwand.net ident= envfrom= intl=1 id=1CO5y7-0001vC-00 auth= msa=0 ]",
                untrusted: "",
            },
            Case {
                name: "exim_local_ignored",
                received: &[
                    "from andrew by trinity.supernews.net with local (Exim 4.12) id 18xeL6-000Dn1-00; Tue, 25 Mar 2003 02:39:00 +0000",
                    "from mail.example.org (mail.example.org [203.0.113.5]) by trinity.supernews.net (Postfix) with ESMTP id 4ABC123DEF; Tue, 25 Mar 2003 02:38:00 +0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=trinity.supernews.net ident= envfrom= intl=0 id=4ABC123DEF auth= msa=0 ]",
            },
            Case {
                name: "qmail_unknown_helo",
                received: &[
                    "from unknown (HELO mail.example.com) (192.0.2.55) by mx.example.net with SMTP; 14 Nov 2003 08:05:50 -0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=192.0.2.55 rdns= helo=mail.example.com by=mx.example.net ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "qmail_ident",
                received: &[
                    "from postfix3-2.free.fr (HELO machine.domain.com) (foobar@213.228.0.169) by totor.bouissou.net with SMTP; 14 Nov 2003 08:05:50 -0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=213.228.0.169 rdns=postfix3-2.free.fr helo=machine.domain.com by=totor.bouissou.net ident=foobar envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "qmail_invoked_ignored",
                received: &[
                    "(qmail 27981 invoked by uid 225); 14 Mar 2003 07:24:34 -0000",
                    "from unknown (HELO x) (1.2.3.4) by mx.example.net with SMTP; 14 Mar 2003 07:24:30 -0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=1.2.3.4 rdns= helo=x by=mx.example.net ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "smtpsvc",
                received: &[
                    "from inet-vrs-05.redmond.corp.microsoft.com ([157.54.6.157]) by INET-IMC-05.redmond.corp.microsoft.com with Microsoft SMTPSVC(5.0.2195.6624); Thu, 6 Mar 2003 12:02:35 -0800",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=157.54.6.157 rdns= helo=inet-vrs-05.redmond.corp.microsoft.com by=INET-IMC-05.redmond.corp.microsoft.com ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "exchange_smtp_server",
                received: &[
                    "from EXC-DAG-02.global.net (10.45.252.152) by EXC-DAG-02.global.net (10.45.252.152) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id 15.1.1261.35; Mon, 29 Oct 2018 11:17:19 +0100",
                    "from mail.example.org (mail.example.org [203.0.113.5]) by EXC-DAG-02.global.net (Postfix) with ESMTP id 4ABC123DEF; Mon, 29 Oct 2018 11:17:00 +0100",
                ],
                originating: &[],
                trusted: "[ ip=10.45.252.152 rdns=EXC-DAG-02.global.net helo=EXC-DAG-02.global.net by=EXC-DAG-02.global.net ident= envfrom= intl=1 id=15.1.1261.35 auth= msa=0 ]",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=EXC-DAG-02.global.net ident= envfrom= intl=0 id=4ABC123DEF auth= msa=0 ]",
            },
            Case {
                name: "exchange_mapi_zone",
                received: &[
                    "from AM5PR0402MB2836.eurprd04.prod.outlook.com ([fe80::19bd:c588:dd17:5226]) by AM5PR0402MB2836.eurprd04.prod.outlook.com ([fe80::19bd:c588:dd17:5226%6]) with mapi id 15.20.1943.023; Wed, 5 Jun 2019 10:17:08 +0000",
                ],
                originating: &[],
                trusted: "[ ip=fe80::19bd:c588:dd17:5226 rdns= helo=AM5PR0402MB2836.eurprd04.prod.outlook.com by=AM5PR0402MB2836.eurprd04.prod.outlook.com ident= envfrom= intl=1 id= auth= msa=0 ]",
                untrusted: "",
            },
            Case {
                name: "exchange_online_ipv6",
                received: &[
                    "from DM6PR11MB1234.namprd11.prod.outlook.com (2603:10b6:5:1e0::15) by SN6PR11MB5678.namprd11.prod.outlook.com (2603:10b6:805:20::12) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.5000.1; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=2603:10b6:5:1e0::15 rdns=DM6PR11MB1234.namprd11.prod.outlook.com helo=DM6PR11MB1234.namprd11.prod.outlook.com by=SN6PR11MB5678.namprd11.prod.outlook.com ident= envfrom= intl=0 id=15.20.5000.1 auth= msa=0 ]",
            },
            Case {
                name: "esmtpsa_behind_private",
                received: &[
                    "from smtp.example.net (smtp.example.net [10.0.0.5]) by mx.example.net (Postfix) with ESMTP id AAA111; Tue, 3 Jun 2025 10:00:02 +0000",
                    "from laptop (dsl-198-51-100-9.example.com [198.51.100.9]) by smtp.example.net (Postfix) with ESMTPSA id BBB222; Tue, 3 Jun 2025 10:00:01 +0000",
                    "from spammer.example (spammer.example [192.0.2.99]) by laptop (Postfix) with ESMTP id CCC333; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "[ ip=10.0.0.5 rdns=smtp.example.net helo=smtp.example.net by=mx.example.net ident= envfrom= intl=1 id=AAA111 auth= msa=0 ] [ ip=198.51.100.9 rdns=dsl-198-51-100-9.example.com helo=laptop by=smtp.example.net ident= envfrom= intl=1 id=BBB222 auth=ESMTPSA msa=0 ]",
                untrusted: "[ ip=192.0.2.99 rdns=spammer.example helo=spammer.example by=laptop ident= envfrom= intl=0 id=CCC333 auth= msa=0 ]",
            },
            Case {
                name: "postfix_authenticated_sender",
                received: &[
                    "from laptop (dsl-198-51-100-9.example.com [198.51.100.9]) (Authenticated sender: alice) by smtp.example.net (Postfix) with ESMTP id BBB222; Tue, 3 Jun 2025 10:00:01 +0000",
                ],
                originating: &[],
                trusted: "[ ip=198.51.100.9 rdns=dsl-198-51-100-9.example.com helo=laptop by=smtp.example.net ident= envfrom= intl=1 id=BBB222 auth=Postfix msa=0 ]",
                untrusted: "",
            },
            Case {
                name: "private_then_public",
                received: &[
                    "from localhost (localhost [127.0.0.1]) by mx.example.net (Postfix) with ESMTP id AAA111; Tue, 3 Jun 2025 10:00:02 +0000",
                    "from gw.example.net (gw.example.net [192.168.1.1]) by mx.example.net (Postfix) with ESMTP id AAA110; Tue, 3 Jun 2025 10:00:01 +0000",
                    "from mail.example.org (mail.example.org [203.0.113.5]) by gw.example.net (Postfix) with ESMTP id AAA100; Tue, 3 Jun 2025 10:00:00 +0000",
                    "from inner.example.org (inner.example.org [10.1.2.3]) by mail.example.org (Postfix) with ESMTP id AAA090; Tue, 3 Jun 2025 09:59:00 +0000",
                ],
                originating: &[],
                trusted: "[ ip=127.0.0.1 rdns=localhost helo=localhost by=mx.example.net ident= envfrom= intl=1 id=AAA111 auth= msa=0 ] [ ip=192.168.1.1 rdns=gw.example.net helo=gw.example.net by=mx.example.net ident= envfrom= intl=1 id=AAA110 auth= msa=0 ]",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=gw.example.net ident= envfrom= intl=0 id=AAA100 auth= msa=0 ] [ ip=10.1.2.3 rdns=inner.example.org helo=inner.example.org by=mail.example.org ident= envfrom= intl=0 id=AAA090 auth= msa=0 ]",
            },
            Case {
                name: "unparseable_in_chain",
                received: &[
                    "from weird-host.example (some comment) by mx.example.net; Tue, 3 Jun 2025 10:00:02 +0000",
                    "from mail.example.org (mail.example.org [203.0.113.5]) by mx.example.net (Postfix) with ESMTP id AAA100; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id=AAA100 auth= msa=0 ]",
            },
            Case {
                name: "ipv6_postfix",
                received: &[
                    "from mail.example.org (mail.example.org [IPv6:2001:db8::25]) by mx.example.net (Postfix) with ESMTPS id 4XYZ12345; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=2001:db8::25 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id=4XYZ12345 auth= msa=0 ]",
            },
            Case {
                name: "ipv6_loopback_and_mapped",
                received: &[
                    "from localhost (localhost [IPv6:::1]) by mx.example.net (Postfix) with ESMTP id 4XYZ00001; Tue, 3 Jun 2025 10:00:01 +0000",
                    "from mail.example.org (mail.example.org [::ffff:203.0.113.5]) by mx.example.net (Postfix) with ESMTP id 4XYZ00000; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "[ ip=::1 rdns=localhost helo=localhost by=mx.example.net ident= envfrom= intl=1 id=4XYZ00001 auth= msa=0 ]",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id=4XYZ00000 auth= msa=0 ]",
            },
            Case {
                name: "fetchmail_restart",
                received: &[
                    "from localhost (localhost [127.0.0.1]) by home.example (Postfix) with ESMTP id F1; Tue, 3 Jun 2025 10:00:03 +0000",
                    "from pop.example.net [10.0.0.9] by localhost with POP3 (fetchmail-6.4.0) for <me@localhost> (single-drop); Tue, 3 Jun 2025 10:00:02 +0000",
                    "from mx.example.net (mx.example.net [10.0.0.8]) by pop.example.net (Postfix) with ESMTP id F2; Tue, 3 Jun 2025 10:00:01 +0000",
                    "from mail.example.org (mail.example.org [203.0.113.5]) by mx.example.net (Postfix) with ESMTP id F3; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "[ ip=10.0.0.8 rdns=mx.example.net helo=mx.example.net by=pop.example.net ident= envfrom= intl=1 id= auth= msa=0 ]",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "qmail_scanner_envfrom",
                received: &[
                    "from 156.56.111.196 by blazing.arsecandle.org (envelope-from <gentoo-announce-return-530-rod=arsecandle.org@lists.gentoo.org>, uid 502) with qmail-scanner-1.24 (clamdscan: 0.80/594. Clear:RC:0(156.56.111.196):. Processed in 0.288806 secs); 06 Feb 2005 21:11:38 -0000",
                    "from lists.gentoo.org (HELO parrot.gentoo.org) (156.56.111.196) by blazing.arsecandle.org with SMTP; 06 Feb 2005 21:11:37 -0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=156.56.111.196 rdns=lists.gentoo.org helo=parrot.gentoo.org by=blazing.arsecandle.org ident= envfrom=gentoo-announce-return-530-rod=arsecandle.org@lists.gentoo.org intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "originating_ip",
                received: &[
                    "from mail.example.org (mail.example.org [203.0.113.5]) by mx.example.net (Postfix) with ESMTP id 4ABC123DEF; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &["[198.51.100.23]"],
                trusted: "",
                untrusted: "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net ident= envfrom= intl=0 id=4ABC123DEF auth= msa=0 ] [ ip=198.51.100.23 rdns= helo= by= ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "from_by_semicolon_ignored",
                received: &[
                    "from virtual-access.org by bolero.conactive.com ; Thu, 20 Feb 2003 23:32:58 +0100",
                    "from [86.122.158.69] by mta2.iomartmail.com; Thu, 2 Aug 2007 21:50:04 -0200",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=86.122.158.69 rdns= helo=!86.122.158.69! by=mta2.iomartmail.com ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "squirrelmail",
                received: &[
                    "from 142.169.110.122 (SquirrelMail authenticated user synapse) by mail.nomis80.org with HTTP; Sat, 3 Apr 2004 10:33:43 -0500 (EST)",
                ],
                originating: &[],
                trusted: "[ ip=142.169.110.122 rdns= helo= by=mail.nomis80.org ident= envfrom= intl=1 id= auth=HTTP msa=0 ]",
                untrusted: "",
            },
            Case {
                name: "xmail",
                received: &[
                    "from list.brainbuzz.com (63.146.189.86:23198) by mx1.yourtech.net with [XMail 1.20 ESMTP Server] id <S72E> for <jason@ellingson.org.spamassassin.org> from <bounce-cscommunity-11965901@list.cramsession.com.spamassassin.org>; Sat, 18 Sep 2004 23:17:54 -0500",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=63.146.189.86 rdns= helo=list.brainbuzz.com by=mx1.yourtech.net ident= envfrom=bounce-cscommunity-11965901@list.cramsession.com.spamassassin.org intl=0 id=S72E auth= msa=0 ]",
            },
            Case {
                name: "yahoo_plain_ipv6",
                received: &[
                    "from customer.example (HELO AGAMENON) (baldusi@2001:db8::1:5 with plain) by smtp.mail.vip.sc5.yahoo.com with SMTP; 11 Mar 2003 21:03:28 -0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=2001:db8::1:5 rdns=customer.example helo=AGAMENON by=smtp.mail.vip.sc5.yahoo.com ident=baldusi envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "simta",
                received: &[
                    "FROM hackers.mr.itd.umich.edu (smtp.mail.umich.edu [141.211.14.81]) BY madman.mr.itd.umich.edu ID 434B508E.174A6.13932 ; 11 Oct 2005 01:41:34 -0400",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=141.211.14.81 rdns=smtp.mail.umich.edu helo=hackers.mr.itd.umich.edu by=madman.mr.itd.umich.edu ident= envfrom= intl=0 id=434B508E.174A6.13932 auth= msa=0 ]",
            },
            Case {
                name: "mixed_case_from_fallthrough",
                received: &[
                    "From mail.example.org ([203.0.113.5]) by mx.example.net with ESMTP id abc123; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "",
                untrusted: "[ ip=203.0.113.5 rdns= helo= by=mx.example.net ident= envfrom= intl=0 id=abc123 auth= msa=0 ]",
            },
        ];
        check(&cases, None);
    }

    /// `--cf='trusted_networks 203.0.113.0/24 2001:db8:1::/48'`: 127/8 is always trusted,
    /// a private address no longer is, an authenticated hop still is, IPv4-mapped addresses
    /// (`::ffff:7f00:1`) are held by IPv4 networks but IPv4-compatible ones (`::a.b.c.d`)
    /// are not, and a two-character queue id is too short for SA's `id` (three or more).
    #[test]
    fn relays_with_configured_trusted_networks() {
        let cases = [
            Case {
                name: "configured_trust",
                received: &[
                    "from localhost (localhost [127.0.0.1]) by mx.example.net (Postfix) with ESMTP id T1; Tue, 3 Jun 2025 10:00:03 +0000",
                    "from relay.example.net (relay.example.net [203.0.113.5]) by mx.example.net (Postfix) with ESMTP id T2; Tue, 3 Jun 2025 10:00:02 +0000",
                    "from gw.example.net (gw.example.net [192.168.1.1]) by relay.example.net (Postfix) with ESMTP id T3; Tue, 3 Jun 2025 10:00:01 +0000",
                    "from relay2.example.net (relay2.example.net [203.0.113.77]) by gw.example.net (Postfix) with ESMTP id T4; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "[ ip=127.0.0.1 rdns=localhost helo=localhost by=mx.example.net ident= envfrom= intl=1 id= auth= msa=0 ] [ ip=203.0.113.5 rdns=relay.example.net helo=relay.example.net by=mx.example.net ident= envfrom= intl=1 id= auth= msa=0 ]",
                untrusted: "[ ip=192.168.1.1 rdns=gw.example.net helo=gw.example.net by=relay.example.net ident= envfrom= intl=0 id= auth= msa=0 ] [ ip=203.0.113.77 rdns=relay2.example.net helo=relay2.example.net by=gw.example.net ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "configured_trust_auth_and_ipv6",
                received: &[
                    "from mail.example.net (mail.example.net [IPv6:2001:db8:1::25]) by mx.example.net (Postfix) with ESMTP id T5; Tue, 3 Jun 2025 10:00:02 +0000",
                    "from laptop (dsl.example.com [198.51.100.9]) by mail.example.net (Postfix) with ESMTPSA id T6; Tue, 3 Jun 2025 10:00:01 +0000",
                    "from spammer.example (spammer.example [192.0.2.99]) by laptop (Postfix) with ESMTP id T7; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "[ ip=2001:db8:1::25 rdns=mail.example.net helo=mail.example.net by=mx.example.net ident= envfrom= intl=1 id= auth= msa=0 ] [ ip=198.51.100.9 rdns=dsl.example.com helo=laptop by=mail.example.net ident= envfrom= intl=1 id= auth=ESMTPSA msa=0 ]",
                untrusted: "[ ip=192.0.2.99 rdns=spammer.example helo=spammer.example by=laptop ident= envfrom= intl=0 id= auth= msa=0 ]",
            },
            Case {
                name: "configured_trust_mapped_addresses",
                received: &[
                    "from h1.example.net (h1.example.net [::ffff:7f00:1]) by mx.example.net (Postfix) with ESMTP id MAP1; Tue, 3 Jun 2025 10:00:03 +0000",
                    "from h2.example.net (h2.example.net [IPv6:::ffff:cb00:7109]) by h1.example.net (Postfix) with ESMTP id MAP2; Tue, 3 Jun 2025 10:00:02 +0000",
                    "from h3.example.net (h3.example.net [IPv6:0:0:0:0:0:ffff:203.0.113.10]) by h2.example.net (Postfix) with ESMTP id MAP3; Tue, 3 Jun 2025 10:00:01 +0000",
                    "from h4.example.net (h4.example.net [::203.0.113.11]) by h3.example.net (Postfix) with ESMTP id MAP4; Tue, 3 Jun 2025 10:00:00 +0000",
                ],
                originating: &[],
                trusted: "[ ip=::ffff:7f00:1 rdns=h1.example.net helo=h1.example.net by=mx.example.net ident= envfrom= intl=1 id=MAP1 auth= msa=0 ] [ ip=::ffff:cb00:7109 rdns=h2.example.net helo=h2.example.net by=h1.example.net ident= envfrom= intl=1 id=MAP2 auth= msa=0 ] [ ip=203.0.113.10 rdns=h3.example.net helo=h3.example.net by=h2.example.net ident= envfrom= intl=1 id=MAP3 auth= msa=0 ]",
                untrusted: "[ ip=::203.0.113.11 rdns=h4.example.net helo=h4.example.net by=h3.example.net ident= envfrom= intl=0 id=MAP4 auth= msa=0 ]",
            },
        ];
        let nets: Vec<IpNetwork> = ["203.0.113.0/24", "2001:db8:1::/48"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        check(&cases, Some(&nets));
    }

    #[test]
    fn as_string_layout_and_fields() {
        // SA: [ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net
        // ident= envfrom=bounce@example.org intl=0 id=p1234567 auth= msa=0 ]
        let Line::Relay(r) = parse_line(
            "from mail.example.org (mail.example.org [203.0.113.5]) by mx.example.net \
             (8.14.4/8.14.4) with ESMTP id p1234567 (envelope-from <bounce@example.org>); \
             Tue, 3 Jun 2025 10:00:00 +0000",
        ) else {
            panic!("not parsed");
        };
        assert_eq!(
            r.as_string(),
            "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net \
             ident= envfrom=bounce@example.org intl=0 id=p1234567 auth= msa=0 ]"
        );
        assert_eq!(r.envfrom, "bounce@example.org");
        assert!(!r.ip_private && !r.internal && !r.msa);

        // SA (trusted, so intl=1): [ ip=198.51.100.9 rdns=dsl-198-51-100-9.example.com
        // helo=laptop by=smtp.example.net ident= envfrom= intl=1 id=BBB222 auth=ESMTPSA msa=0 ]
        let Line::Relay(mut r) = parse_line(
            "from laptop (dsl-198-51-100-9.example.com [198.51.100.9]) by smtp.example.net \
             (Postfix) with ESMTPSA id BBB222; Tue, 3 Jun 2025 10:00:01 +0000",
        ) else {
            panic!("not parsed");
        };
        r.internal = true;
        assert_eq!(
            r.as_string(),
            "[ ip=198.51.100.9 rdns=dsl-198-51-100-9.example.com helo=laptop \
             by=smtp.example.net ident= envfrom= intl=1 id=BBB222 auth=ESMTPSA msa=0 ]"
        );
    }

    #[test]
    fn ignored_and_unparseable_lines() {
        // SA's debug log (`-D received-header`) reports only the last as unparseable; the
        // others yield no relay (see the cases above).
        for ignored in [
            "(qmail 27981 invoked by uid 225); 14 Mar 2003 07:24:34 -0000",
            "from andrew by trinity.supernews.net with local (Exim 4.12) id 18xeL6-000Dn1-00; \
             Tue, 25 Mar 2003 02:39:00 +0000",
            "from virtual-access.org by bolero.conactive.com ; Thu, 20 Feb 2003 23:32:58 +0100",
            "from pop.example.net [10.0.0.9] by localhost with POP3 (fetchmail-6.4.0) for \
             <me@localhost> (single-drop); Tue, 3 Jun 2025 10:00:02 +0000",
        ] {
            assert_eq!(parse_line(ignored), Line::Ignored, "{ignored}");
        }
        let weird = "from weird-host.example (some comment) by mx.example.net; \
                     Tue, 3 Jun 2025 10:00:02 +0000";
        assert_eq!(parse_line(weird), Line::Unparseable);
        let r = relays(&[weird], &[], None);
        assert_eq!(r.unparseable, 1);
        assert!(r.trusted.is_empty() && r.untrusted.is_empty());
    }

    #[test]
    fn originating_headers_are_picked_as_spamassassin_does() {
        // SA picks the configured names in order, the last header of each name, the first
        // address in its value. Its untrusted relays for this message (same headers):
        // [ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net
        // ident= envfrom= intl=0 id=4ABC123DEF auth= msa=0 ] [ ip=198.51.100.1 rdns= helo=
        // by= ident= envfrom= intl=0 id= auth= msa=0 ] [ ip=192.0.2.2 ... ] [ ip=2001:db8::7 ... ]
        let received = "from mail.example.org (mail.example.org [203.0.113.5]) by \
                        mx.example.net (Postfix) with ESMTP id 4ABC123DEF; \
                        Tue, 3 Jun 2025 10:00:00 +0000";
        let headers = [
            ("Received", received),
            ("X-Originating-IP", "[192.0.2.1]"),
            ("x-originating-ip", "[192.0.2.2]"),
            ("X-Yahoo-Post-IP", "198.51.100.1"),
            (
                "X-Apparently-From",
                "user@example.com via [IPv6:2001:db8::7] mobile",
            ),
        ];
        let originating = originating_ip_values(&headers);
        let r = relays(&[received], &originating, None);
        assert_eq!(
            r.untrusted_str(),
            "[ ip=203.0.113.5 rdns=mail.example.org helo=mail.example.org by=mx.example.net \
             ident= envfrom= intl=0 id=4ABC123DEF auth= msa=0 ] \
             [ ip=198.51.100.1 rdns= helo= by= ident= envfrom= intl=0 id= auth= msa=0 ] \
             [ ip=192.0.2.2 rdns= helo= by= ident= envfrom= intl=0 id= auth= msa=0 ] \
             [ ip=2001:db8::7 rdns= helo= by= ident= envfrom= intl=0 id= auth= msa=0 ]"
        );
        assert_eq!(r.external_str(), r.untrusted_str());
        assert!(r.trusted.is_empty() && r.internal.is_empty());
    }

    /// Where SA's look-arounds decide the match and were rewritten by hand. The expected
    /// values are SpamAssassin 4.0.1's `parse_received_line` output for each line (called
    /// from Perl on a bare `Metadata` object).
    #[test]
    fn look_around_rewrites_agree_with_spamassassin() {
        let cases: [(&str, Option<&str>); 9] = [
            // IPv6 may not be followed by ":port" without a bracket between (XMail,
            // ecelerity, "[ip:port]").
            (
                "from list.example.com (2001:db8::1:23198) by mx1.example.net with \
                 [XMail 1.20 ESMTP Server] id <S72E>",
                None,
            ),
            (
                "from list.example.com ([2001:db8::1]:23198) by mx1.example.net with \
                 [XMail 1.20 ESMTP Server] id <S72E>",
                Some(
                    "[ ip=2001:db8::1 rdns= helo=list.example.com by=mx1.example.net ident= \
                     envfrom= intl=0 id=S72E auth= msa=0 ]",
                ),
            ),
            (
                "from ([2001:db8::1:33672] helo=dev1.example.org) by m12.example.com \
                 (ecelerity 2.1.1.3 r(11743)) with ESMTP id 52/92-02454",
                None,
            ),
            (
                "from jsoliday.example.com ([1:2:3:4:5:6:7:8:25]) by mailhost.example.com \
                 with esmtp (v3.35.1) id 1GNrLz-000295-00",
                None,
            ),
            (
                "from jsoliday.example.com ([10.1.2.3:25]) by mailhost.example.com with esmtp \
                 (v3.35.1) id 1GNrLz-000295-00",
                Some(
                    "[ ip=10.1.2.3 rdns= helo=jsoliday.example.com by=mailhost.example.com \
                     ident= envfrom= intl=0 id=1GNrLz-000295-00 auth= msa=0 ]",
                ),
            ),
            // The look-ahead picks the longest IPv6 reading before " with plain".
            (
                "from customer.example (HELO AGAMENON) (baldusi@2001:db8::1:5 with plain) by \
                 smtp.mail.vip.sc5.yahoo.com with SMTP",
                Some(
                    "[ ip=2001:db8::1:5 rdns=customer.example helo=AGAMENON \
                     by=smtp.mail.vip.sc5.yahoo.com ident=baldusi envfrom= intl=0 id= auth= \
                     msa=0 ]",
                ),
            ),
            // Unanchored: an IPv4 address may not follow ':'.
            (
                "from x:1.2.3.4 (SquirrelMail authenticated user bob) by mail.example.org \
                 with HTTP",
                None,
            ),
            (
                "from ab::1 (SquirrelMail authenticated user bob) by mail.example.org with HTTP",
                Some(
                    "[ ip=ab::1 rdns= helo= by=mail.example.org ident= envfrom= intl=0 id= \
                     auth=HTTP msa=0 ]",
                ),
            ),
            (
                "from unknown (HELO x.example) (u@[2001:db8::1]) by mx.example.net with SMTP \
                 id 1",
                Some(
                    "[ ip=2001:db8::1 rdns= helo=x.example by=mx.example.net ident=u envfrom= \
                     intl=0 id= auth= msa=0 ]",
                ),
            ),
        ];
        for (line, expected) in cases {
            match (parse_line(line), expected) {
                (Line::Relay(r), Some(e)) => assert_eq!(r.as_string(), e, "{line}"),
                (Line::Unparseable, None) => {}
                (other, _) => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_pattern_compiles() {
        for p in ALL_PATTERNS {
            LazyLock::force(p);
        }
    }

    /// Not from SpamAssassin: hostile input must cost bounded work and never panic.
    #[test]
    fn hostile_input_is_bounded_and_never_panics() {
        // Long values, cut mid-character; unanchored address searches over many candidates.
        let mut long = String::from("from x (SquirrelMail authenticated user y) ");
        while long.len() < 3 * MAX_VALUE_LEN {
            long.push_str("1.2.3.4 é ::ffff:1.2.3.4 aol.com with HTTP (WebMailUI) [");
        }
        let odd = [
            "",
            "from",
            "from ",
            "from (",
            "from [",
            "(from ",
            "FROM ",
            "from \u{0} by \u{7f} ;;;; ",
            "from é (é [1.2.3.4]) by é (Postfix) with ESMTP id ééé",
            "from x ([IPv6:::ffff:1.2.3.4%eth0]) by y with Microsoft SMTP Server 1.2.3.4",
            long.as_str(),
        ];
        for value in odd {
            let _ = parse_line(value);
        }
        let many = vec![long.as_str(); 3 * MAX_RECEIVED];
        let r = relays(&many, &[long.as_str(); 10], None);
        assert!(r.trusted.len() + r.untrusted.len() + r.unparseable <= MAX_RECEIVED + 6);
        for n in [MAX_VALUE_LEN - 1, MAX_VALUE_LEN, MAX_VALUE_LEN + 1] {
            let value: String = "é".repeat(n / 2 + 1);
            let _ = parse_line(&value[..value.floor_char_boundary(n)]);
        }
    }
}

#[cfg(test)]
mod milter_tests {
    use super::*;
    use crate::message::{Envelope, Message};

    #[test]
    fn the_mtas_connection_is_the_newest_hop_and_carries_the_envelope_sender() {
        let msg = Message::from_raw(
            b"Return-Path: <bounce@lists.example>\r\nReceived: from a.example (a.example [192.0.2.7]) by mx.example (Postfix) with ESMTP id 1\r\nSubject: x\r\n\r\nx\r\n",
            1 << 20,
        );
        let env = Envelope {
            client_ip: Some("198.51.100.9".parse().unwrap()),
            client_name: "unknown".into(),
            helo: "pc17".into(),
            from: "alice@example.org".into(),
            ..Envelope::default()
        };
        let r = of_message(&msg, &env, None);
        assert_eq!(r.untrusted.len(), 2);
        assert_eq!(
            r.untrusted[0].as_string(),
            "[ ip=198.51.100.9 rdns= helo=pc17 by=localhost ident= envfrom=alice@example.org intl=0 id= auth= msa=0 ]"
        );
        assert_eq!(
            envelope_from(&msg, &r).as_deref(),
            Some("alice@example.org")
        );
        // A saved message (no connection): the Return-Path above the Received headers.
        let r = of_message(&msg, &Envelope::default(), None);
        assert_eq!(
            envelope_from(&msg, &r).as_deref(),
            Some("bounce@lists.example")
        );
        // Below a Received header, anyone could have written it.
        let late = Message::from_raw(
            b"Received: from a.example (a.example [192.0.2.7]) by mx.example (Postfix) with ESMTP id 1\r\nReturn-Path: <forged@example.com>\r\n\r\nx\r\n",
            1 << 20,
        );
        let r = of_message(&late, &Envelope::default(), None);
        assert_eq!(envelope_from(&late, &r), None);
    }
}
