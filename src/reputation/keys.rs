//! The keys of a message: what has a reputation at the hub, the same on every gateway.
//!
//! A message yields its client address and network (/24 for IPv4, /64 for IPv6), its HELO
//! name, the envelope sender's and the From header's domains, each link's registered domain
//! and normalised URL, each attachment's SHA-256, and a content fingerprint for
//! near-duplicates. Keys are metadata and hashes: a URL travels as a hash of its normalised
//! form (paths carry per-recipient tokens), the text only as its fingerprint.
//!
//! **The fingerprint** is a MinHash sketch of the text's word 3-shingles, banded for lookup
//! (locality-sensitive hashing). Words are lower-cased; a word with a digit becomes `#` and a
//! word over 20 characters `~`, so changed names, numbers, amounts and tracking tokens change
//! only the few shingles around them. The sketch keeps, for each of 32 hash functions, the
//! smallest hash over the shingles; two texts agree on each with probability their Jaccard
//! similarity `s`. The 32 minima are cut into 8 bands of 4, and each band hashed into a key:
//! two texts share at least one band key with probability `1 - (1 - s^4)^8`: 0.98 at s = 0.8,
//! 0.40 at 0.5, 0.06 at 0.3. So near-duplicates meet at the hub under a common key, and
//! unrelated texts almost never do. Texts under 8 words get no fingerprint (too few shingles
//! to say anything). The hashes are fixed (FNV-1a and a SplitMix64 finaliser with fixed
//! seeds), never per-process, so every gateway computes the same keys.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::message::urls::{Url, registered_domain};
use crate::scan::ScanInput;

/// Hash functions of the MinHash sketch.
pub const SKETCH: usize = 32;

/// Rows per band: 8 bands of 4.
pub const ROWS: usize = 4;

/// Words per shingle.
const SHINGLE: usize = 3;

/// Fewest words for a fingerprint.
const MIN_WORDS: usize = 8;

/// Text read for the fingerprint: the start of a long message says what it is.
const MAX_FINGERPRINT_TEXT: usize = 64 * 1024;

/// Most keys of one message (links and attachments beyond are left out; they would be looked
/// up and reported without end otherwise).
pub const MAX_KEYS: usize = 64;

/// Something that has a reputation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Ip(IpAddr),
    Net(IpNetwork),
    Helo(String),
    MailFrom(String),
    From(String),
    /// A link's registered domain.
    Domain(String),
    /// A hash of a link's normalised form (see [`normalise_url`]), 32 hex digits.
    Url(String),
    /// An attachment's SHA-256, 64 hex digits.
    File(String),
    /// One band of the content fingerprint: band number and hash.
    Fuzzy(u8, u64),
}

/// Every kind of key, as [`Key::kind`] writes them.
pub const KINDS: [&str; 9] = [
    "ip", "net", "helo", "mailfrom", "from", "domain", "url", "file", "fuzzy",
];

impl Key {
    /// The kind, as written before the colon.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Ip(_) => "ip",
            Key::Net(_) => "net",
            Key::Helo(_) => "helo",
            Key::MailFrom(_) => "mailfrom",
            Key::From(_) => "from",
            Key::Domain(_) => "domain",
            Key::Url(_) => "url",
            Key::File(_) => "file",
            Key::Fuzzy(..) => "fuzzy",
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.kind();
        match self {
            Key::Ip(ip) => write!(f, "{kind}:{ip}"),
            Key::Net(n) => write!(f, "{kind}:{n}"),
            Key::Helo(s)
            | Key::MailFrom(s)
            | Key::From(s)
            | Key::Domain(s)
            | Key::Url(s)
            | Key::File(s) => write!(f, "{kind}:{s}"),
            Key::Fuzzy(band, h) => write!(f, "{kind}:{band}:{h:016x}"),
        }
    }
}

/// Why a text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a key such as ip:192.0.2.1, domain:example.org or fuzzy:3:0123456789abcdef")]
pub struct BadKey(pub String);

impl std::str::FromStr for Key {
    type Err = BadKey;

    fn from_str(s: &str) -> Result<Key, BadKey> {
        let bad = || BadKey(s.chars().take(100).collect());
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        let hex = |v: &str, len: usize| {
            (v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| v.to_ascii_lowercase())
        };
        let name = |v: &str| {
            let v = v.trim_end_matches('.').to_ascii_lowercase();
            crate::config::names::is_dns_name(&v).then_some(v)
        };
        let key = match kind {
            "ip" => value
                .parse()
                .ok()
                .map(|ip: IpAddr| Key::Ip(ip.to_canonical())),
            // Only the networks keys are made of (a client's /24 or /64), written as
            // `network_of` writes them: anything else would be another key for the same
            // network, or a network covering many clients.
            "net" => value
                .parse::<IpNetwork>()
                .ok()
                .map(|n| network_of(n.ip()))
                .filter(|n| value == n.to_string())
                .map(Key::Net),
            "helo" => name(value).map(Key::Helo),
            "mailfrom" => name(value).map(Key::MailFrom),
            "from" => name(value).map(Key::From),
            "domain" => name(value).map(Key::Domain),
            "url" => hex(value, 32).map(Key::Url),
            "file" => hex(value, 64).map(Key::File),
            "fuzzy" => value.split_once(':').and_then(|(b, h)| {
                let band: u8 = b.parse().ok().filter(|b| usize::from(*b) < SKETCH / ROWS)?;
                Some(Key::Fuzzy(
                    band,
                    u64::from_str_radix(&hex(h, 16)?, 16).ok()?,
                ))
            }),
            _ => None,
        };
        key.ok_or_else(bad)
    }
}

/// The network a client address belongs to for reputation: /24 for IPv4, /64 for IPv6 (what
/// one customer of a provider usually holds).
pub fn network_of(ip: IpAddr) -> IpNetwork {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    let net = IpNetwork::new(ip, prefix).expect("24 and 64 are valid prefixes");
    IpNetwork::new(net.network(), prefix).expect("a network address with its prefix")
}

/// A link as every gateway writes it: host in lower case, no scheme, port, query or
/// fragment; path segments that look like identifiers (with a digit, or over 20 characters)
/// replaced by `*`, so that per-recipient links of one campaign are one key.
pub fn normalise_url(url: &Url) -> String {
    let rest = url
        .url
        .split_once("://")
        .map_or(url.url.as_str(), |(_, r)| r);
    let path = rest
        .find('/')
        .map_or("", |i| &rest[i..])
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let mut out = url.host.clone();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if seg.len() > 20 || seg.bytes().any(|b| b.is_ascii_digit()) {
            out.push('*');
        } else {
            out.push_str(&seg.to_ascii_lowercase());
        }
    }
    out
}

/// Every key of a message, each once, at most [`MAX_KEYS`], in a fixed order (client,
/// network, HELO, senders, links, attachments, fingerprint).
pub fn keys_of(input: &ScanInput) -> Vec<Key> {
    let env = &input.envelope;
    let view = input.view();
    let mut out: Vec<Key> = Vec::new();
    let mut push = |k: Key| {
        if out.len() < MAX_KEYS && !out.contains(&k) {
            out.push(k);
        }
    };
    if let Some(ip) = env.client_ip {
        push(Key::Ip(ip.to_canonical()));
        push(Key::Net(network_of(ip)));
    }
    let domain_of = |s: &str| {
        let d = s.rsplit_once('@').map_or(s, |(_, d)| d);
        let d = d.trim().trim_end_matches(['.', '>']).to_ascii_lowercase();
        crate::config::names::is_dns_name(&d).then(|| registered_domain(&d))
    };
    if let Some(h) = domain_of(&env.helo).filter(|_| env.helo.contains('.')) {
        push(Key::Helo(h));
    }
    if let Some(d) = domain_of(&env.from) {
        push(Key::MailFrom(d));
    }
    if let Some(from) = input.message.header("From") {
        for (_, addr) in crate::message::mime::addresses(from) {
            if let Some(d) = addr.as_deref().and_then(domain_of) {
                push(Key::From(d));
            }
        }
    }
    for url in &view.urls {
        if url.host.parse::<IpAddr>().is_err() {
            push(Key::Domain(url.domain.clone()));
        }
        push(Key::Url(hex16(&normalise_url(url))));
    }
    for a in &view.attachments {
        push(Key::File(a.sha256.clone()));
    }
    let text: String = view
        .texts
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(sketch) = fingerprint(&text) {
        for k in fuzzy_keys(&sketch) {
            push(k);
        }
    }
    out
}

/// [`keys_of`] as text, computed once per message and shared by every user of it.
pub fn key_strings(input: &ScanInput) -> &[String] {
    input
        .keys
        .get_or_init(|| keys_of(input).iter().map(Key::to_string).collect())
}

/// The first 16 bytes of a SHA-256, in hex.
fn hex16(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The MinHash sketch of a text, or None under [`MIN_WORDS`] words.
pub fn fingerprint(text: &str) -> Option<[u64; SKETCH]> {
    let text = &text[..text.floor_char_boundary(text.len().min(MAX_FINGERPRINT_TEXT))];
    let words: Vec<u64> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                fnv(b"#")
            } else if w.chars().count() > 20 {
                fnv(b"~")
            } else {
                fnv(w.to_lowercase().as_bytes())
            }
        })
        .collect();
    if words.len() < MIN_WORDS {
        return None;
    }
    let mut sketch = [u64::MAX; SKETCH];
    for w in words.windows(SHINGLE) {
        let shingle = w.iter().fold(0u64, |h, &x| mix(h ^ x));
        for (i, min) in sketch.iter_mut().enumerate() {
            let h = mix(shingle ^ SEEDS[i]);
            if h < *min {
                *min = h;
            }
        }
    }
    Some(sketch)
}

/// The band keys of a sketch.
pub fn fuzzy_keys(sketch: &[u64; SKETCH]) -> Vec<Key> {
    sketch
        .chunks(ROWS)
        .enumerate()
        .map(|(band, rows)| {
            let h = rows.iter().fold(fnv(&[band as u8]), |h, &r| mix(h ^ r));
            Key::Fuzzy(band as u8, h)
        })
        .collect()
}

/// Seeds of the sketch's hash functions: fixed, so every gateway agrees.
const SEEDS: [u64; SKETCH] = seeds();

const fn seeds() -> [u64; SKETCH] {
    let mut out = [0u64; SKETCH];
    let mut x: u64 = 0x005e_ed0f_4e70_f00d;
    let mut i = 0;
    while i < SKETCH {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out[i] = mix(x);
        i += 1;
    }
    out
}

/// SplitMix64's finaliser: a fixed, well-mixing 64-bit permutation.
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bits.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};

    const CAMPAIGN: &str = "Dear John, your account at Example Bank was suspended on 12 March. \
        To restore access within 48 hours, confirm your details at the secure portal below. \
        Failure to act will close the account permanently. Regards, the security team.";

    #[test]
    fn a_message_gives_each_key_once() {
        let raw = format!(
            "From: Bank <alerts@mail.example-bank.com>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n{CAMPAIGN}\r\nhttps://Login.Example-Bank.evil.example/u/8f3a9c/verify?id=77 https://login.example-bank.evil.example/u/1b2c3d/verify\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\nBINARY\r\n--b--\r\n"
        );
        let input = ScanInput::new(
            Envelope {
                client_ip: Some("192.0.2.77".parse().unwrap()),
                helo: "mx1.sender.example".into(),
                from: "bounce@sender.example".into(),
                ..Envelope::default()
            },
            Message::from_raw(raw.as_bytes(), 1 << 20),
        );
        let keys: Vec<String> = keys_of(&input).iter().map(Key::to_string).collect();
        let kinds: Vec<&str> = keys.iter().map(|k| k.split(':').next().unwrap()).collect();
        assert_eq!(
            &kinds[..8],
            [
                "ip", "net", "helo", "mailfrom", "from", "domain", "url", "file"
            ],
            "{keys:?}"
        );
        assert_eq!(keys[0], "ip:192.0.2.77");
        assert_eq!(keys[1], "net:192.0.2.0/24");
        assert_eq!(keys[2], "helo:sender.example");
        assert_eq!(keys[4], "from:example-bank.com");
        assert_eq!(keys[5], "domain:evil.example");
        // Both links are one URL key: their per-recipient path segments are `*`.
        assert_eq!(kinds.iter().filter(|k| **k == "url").count(), 1);
        assert_eq!(
            kinds.iter().filter(|k| **k == "fuzzy").count(),
            SKETCH / ROWS
        );
        // Every key reads back as itself.
        for k in keys_of(&input) {
            assert_eq!(k.to_string().parse::<Key>(), Ok(k.clone()));
        }
    }

    #[test]
    fn networks_and_normalised_links() {
        assert_eq!(
            network_of("2001:db8:1:2:3::9".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network_of("::ffff:198.51.100.7".parse().unwrap()).to_string(),
            "198.51.100.0/24"
        );
        let u = crate::message::urls::parse(
            "HTTPS://Shop.Example.com:8443/Deals/2024/abcdefghijklmnopqrstuvwxyz?x=1#top",
        )
        .unwrap();
        assert_eq!(normalise_url(&u), "shop.example.com/deals/*/*");
    }

    #[test]
    fn near_duplicates_share_a_fuzzy_key_and_others_do_not() {
        let a = fuzzy_keys(&fingerprint(CAMPAIGN).unwrap());
        let changed = CAMPAIGN
            .replace("John", "Maria")
            .replace("12 March", "3 April")
            .replace("48", "24");
        let b = fuzzy_keys(&fingerprint(&changed).unwrap());
        assert!(a.iter().any(|k| b.contains(k)), "no band in common");
        let other = "Hi team, the quarterly figures are attached; please check the totals \
            before Thursday's meeting and send me your comments by noon.";
        let c = fuzzy_keys(&fingerprint(other).unwrap());
        assert!(!a.iter().any(|k| c.contains(k)));
        assert_eq!(fingerprint("too short to judge"), None);
    }

    #[test]
    fn the_fingerprint_is_the_same_on_every_gateway() {
        // Fixed hashes and seeds: a change here splits the network into gateways that no
        // longer agree on fuzzy keys.
        let keys = fuzzy_keys(&fingerprint(CAMPAIGN).unwrap());
        let again = fuzzy_keys(&fingerprint(CAMPAIGN).unwrap());
        assert_eq!(keys, again);
        assert_eq!(mix(0), 0);
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn keys_from_outside_are_checked() {
        for bad in [
            "",
            "ip:999.1.1.1",
            "domain:not a name",
            "url:xyz",
            "file:00",
            "fuzzy:9:0123456789abcdef",
            "fuzzy:1:xyz",
            "what:ever",
            // Networks other than a client's /24 or /64, or not in canonical form.
            "net:0.0.0.0/0",
            "net:10.1.2.3/8",
            "net:192.0.2.7/24",
            "net:::ffff:1.2.3.0/120",
            "net:2001:db8::/48",
        ] {
            assert!(bad.parse::<Key>().is_err(), "{bad}");
        }
        assert_eq!(
            "domain:Example.ORG.".parse::<Key>(),
            Ok(Key::Domain("example.org".into()))
        );
        for good in ["net:192.0.2.0/24", "net:2001:db8:1:2::/64"] {
            assert_eq!(good.parse::<Key>().unwrap().to_string(), good);
        }
    }
}
