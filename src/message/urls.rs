//! URLs found in text and HTML, each with its host and registered domain.

/// Most URLs kept per message: the domain lists query a bounded number anyway.
pub const MAX_URLS: usize = 2000;

/// A URL and what reputation lists look up for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Url {
    /// As found (for rules and reports), at most [`MAX_URL_LEN`] bytes.
    pub url: String,
    /// Lower-case host, IDNs in punycode, without a trailing dot; an IP address as written.
    pub host: String,
    /// The registered domain under the public suffix list (`example.co.uk`), or the host
    /// itself for IP addresses and names the list does not know.
    pub domain: String,
}

/// Longest URL kept; longer ones are cut (the host is what lists judge).
pub const MAX_URL_LEN: usize = 4096;

/// The links a message's list holds, by the hash of their text: a link found again (the
/// logo and the text link of a newsletter, the same offer in the HTML and the plain part:
/// about three links in ten in the corpus) is neither parsed again nor listed again, so the
/// `uri` rules see each once, as SpamAssassin's URI list holds each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen(rustc_hash::FxHashMap<u64, usize>);

/// Appends the URL `found` to `out` unless `out` has it already (the same text, trimmed),
/// or it is no URL [`parse`] keeps. A text longer than [`MAX_URL_LEN`] is kept cut, and
/// never matched again.
pub fn push_once(out: &mut Vec<Url>, seen: &mut Seen, found: &str) {
    use std::hash::BuildHasher;
    let text = found.trim();
    let key = rustc_hash::FxBuildHasher.hash_one(text);
    if let Some(&i) = seen.0.get(&key)
        && out[i].url == text
    {
        return;
    }
    if let Some(u) = parse(text) {
        seen.0.entry(key).or_insert(out.len());
        out.push(u);
    }
}

/// Parses one URL (a scheme, or `www.` for schemeless links) into its host and domain.
pub fn parse(found: &str) -> Option<Url> {
    parse_with(found, true)
}

/// [`parse`]; `plain` lets the plainest URLs skip the URL parser (see [`plain_host`]).
fn parse_with(found: &str, plain: bool) -> Option<Url> {
    let found = found.trim();
    let with_scheme;
    let candidate = if found
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("www."))
    {
        with_scheme = format!("http://{found}");
        &with_scheme
    } else {
        found
    };
    let host = match plain.then(|| plain_host(candidate)).flatten() {
        Some(host) => host.to_string(),
        None => {
            let parsed = url::Url::parse(candidate).ok()?;
            if !matches!(parsed.scheme(), "http" | "https" | "ftp") {
                return None;
            }
            parsed.host_str()?.to_string()
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return None;
    }
    let domain = registered_domain(&host);
    let mut url = found.to_string();
    if url.len() > MAX_URL_LEN {
        let mut cut = MAX_URL_LEN;
        while !url.is_char_boundary(cut) {
            cut -= 1;
        }
        url.truncate(cut);
    }
    Some(Url { url, host, domain })
}

/// The host of a URL in its plainest form, as the URL parser gives it, without the parser
/// (a fifth of a spam message's instructions went to parsing its links): `http`, `https` or
/// `ftp` in any case, `://`, a name of ASCII letters, digits and hyphens in non-empty labels
/// (a dot may end it), the last starting with a letter (not an IPv4 address) and none
/// `xn--` (punycode, which the parser checks), then the end or one of `/ ? # \`. No user, no
/// port, no percent sign, no tab or line end anywhere (the parser drops them), nothing at
/// either end that it strips. Anything else is None, for the parser.
fn plain_host(candidate: &str) -> Option<&str> {
    let bytes = candidate.as_bytes();
    if bytes.first().is_none_or(|&b| b <= b' ')
        || bytes.last().is_none_or(|&b| b <= b' ')
        || bytes.iter().any(|&b| matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return None;
    }
    let (scheme, rest) = candidate.split_once("://")?;
    if !["http", "https", "ftp"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return None;
    }
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .unwrap_or(rest.len());
    let host = &rest[..end];
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    };
    if !name.split('.').all(label_ok) {
        return None;
    }
    let last = name.rsplit('.').next()?;
    last.as_bytes()
        .first()?
        .is_ascii_alphabetic()
        .then_some(host)
}

/// The registered domain of a lower-case host under the public suffix list
/// (`mail.example.co.uk` -> `example.co.uk`); an IP address, or a name the list does not
/// know, is returned as it is.
pub fn registered_domain(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_string();
    }
    psl::domain_str(host).unwrap_or(host).to_string()
}

/// linkify as `find_in_text` runs it: links with and without a scheme, no e-mail addresses.
fn link_finder() -> linkify::LinkFinder {
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]);
    finder.url_must_have_scheme(false);
    finder
}

/// Finds http(s), ftp and www. links in plain text and appends them to `out`.
///
/// linkify looks at every `.` of the text for a link without a scheme, and most of them are
/// the ends of sentences: a tenth of a message's instructions with no rules. [`parse`] keeps
/// only links with a scheme or starting with `www.`, so a link it keeps lies in a run of
/// text that holds `://` or `www.` (any case), and linkify's links never hold a control
/// character or a space (its scans, forward and back, stop at them). So only those runs are
/// given to linkify, each on its own, with the same links found in them as in the whole text.
pub fn find_in_text(text: &str, out: &mut Vec<Url>, seen: &mut Seen) {
    let finder = link_finder();
    let bytes = text.as_bytes();
    let delimiter = |b: &u8| *b <= b' ';
    let mut from = 0;
    while let Some(at) = memchr::memchr2(b':', b'.', &bytes[from..]).map(|i| from + i) {
        let hint = if bytes[at] == b':' {
            bytes[at + 1..].starts_with(b"//")
        } else {
            at >= 3 && bytes[at - 3..at].eq_ignore_ascii_case(b"www")
        };
        if !hint {
            from = at + 1;
            continue;
        }
        let start = bytes[..at].iter().rposition(delimiter).map_or(0, |i| i + 1);
        let end = bytes[at..]
            .iter()
            .position(delimiter)
            .map_or(bytes.len(), |i| at + i);
        // (linkify finds no link in fewer than 4 bytes from where it looks on: at the end of
        // a run, where the whole text may have more, that is too short for a kept link.)
        for link in finder.links(&text[start..end]) {
            if out.len() >= MAX_URLS {
                return;
            }
            push_once(out, seen, link.as_str());
        }
        from = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_registered_domains() {
        let cases = [
            (
                "http://www.Example.co.UK/path?q=1",
                "www.example.co.uk",
                "example.co.uk",
            ),
            (
                "https://user:pw@login.bank.example.com.:8443/x",
                "login.bank.example.com",
                "example.com",
            ),
            (
                "www.shop.example.org",
                "www.shop.example.org",
                "example.org",
            ),
            ("http://192.0.2.7/owa", "192.0.2.7", "192.0.2.7"),
            ("http://[2001:db8::1]/", "2001:db8::1", "2001:db8::1"),
            (
                "http://bücher.example/",
                "xn--bcher-kva.example",
                "xn--bcher-kva.example",
            ),
            (
                "http://foo.blogspot.com/",
                "foo.blogspot.com",
                "foo.blogspot.com",
            ),
        ];
        for (input, host, domain) in cases {
            let u = parse(input).unwrap_or_else(|| panic!("{input} did not parse"));
            assert_eq!(
                (u.host.as_str(), u.domain.as_str()),
                (host, domain),
                "{input}"
            );
        }
        for bad in [
            "mailto:a@b.example",
            "javascript:alert(1)",
            "http://",
            "not a url",
            "cid:part1",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plain_urls_get_the_host_the_url_parser_gives() {
        // Plain pieces most often, so that both ways are taken thousands of times.
        let schemes = ["http", "https", "HTTPS", "Ftp", "http", "mailto", "htt", ""];
        let separators = [
            "://", "://", "://", "://", ":/", ":", ":///", "://user@", "//",
        ];
        let long = "a".repeat(70);
        let labels = [
            "example",
            "EXAMPLE",
            "a-b",
            "shop",
            "co",
            "uk",
            "com",
            "-x",
            "x-",
            "xn--bcher-kva",
            "xn--zz",
            "XN--ZZ",
            "123",
            "0x1f",
            "1e",
            "b\u{fc}cher",
            "a_b",
            "%41",
            "",
            "localhost",
            &long,
        ];
        let ports = ["", "", "", "", ":80", ":", ":99999", ":x"];
        let tails = [
            "",
            "",
            "/",
            "/path?q=1#f",
            "?q",
            "#f",
            "\\x",
            "/a b",
            " space",
            "\tx",
            "/\u{e9}",
            "/x\n",
            "\u{1}",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut pick = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut plain, mut checked) = (0, 0);
        for _ in 0..50_000 {
            let mut url = format!(
                "{}{}",
                schemes[pick(schemes.len())],
                separators[pick(separators.len())]
            );
            for i in 0..1 + pick(4) {
                if i > 0 {
                    url.push('.');
                }
                url.push_str(labels[pick(labels.len())]);
            }
            if pick(4) == 0 {
                url.push('.');
            }
            url.push_str(ports[pick(ports.len())]);
            url.push_str(tails[pick(tails.len())]);
            if pick(8) == 0 {
                url = format!("www.{}", &url[url.find("//").map_or(0, |i| i + 2)..]);
            }
            assert_eq!(parse(&url), parse_with(&url, false), "{url:?}");
            plain += usize::from(plain_host(url.trim()).is_some());
            checked += 1;
        }
        // Both ways were taken.
        assert!(
            plain > 1000 && checked - plain > 1000,
            "{plain} of {checked} plain"
        );
    }

    #[test]
    fn finds_links_in_text() {
        let mut v = Vec::new();
        find_in_text(
            "Visit https://promo.example.com/deal, or www.cheap.example.net. Mail me: a@b.example",
            &mut v,
            &mut Seen::default(),
        );
        let hosts: Vec<&str> = v.iter().map(|u| u.host.as_str()).collect();
        assert_eq!(hosts, ["promo.example.com", "www.cheap.example.net"]);
    }

    /// The links linkify finds in the whole text, as `find_in_text` found them before it
    /// gave linkify only the runs that can hold a kept link, each text once.
    fn whole_text(text: &str) -> Vec<Url> {
        let mut texts = std::collections::HashSet::new();
        link_finder()
            .links(text)
            .filter(|l| texts.insert(l.as_str().trim().to_string()))
            .filter_map(|l| parse(l.as_str()))
            .take(MAX_URLS)
            .collect()
    }

    fn found_in(text: &str) -> Vec<Url> {
        let mut found = Vec::new();
        find_in_text(text, &mut found, &mut Seen::default());
        found
    }

    #[test]
    fn a_link_found_again_is_listed_once() {
        let (mut out, mut seen) = (Vec::new(), Seen::default());
        for found in [
            "http://a.example/x",
            " http://a.example/x ",
            "http://a.example/y",
            "HTTP://a.example/x",
            "mailto:no@where.example",
            "http://a.example/x",
            "www.b.example",
            "www.b.example",
        ] {
            push_once(&mut out, &mut seen, found);
        }
        let urls: Vec<&str> = out.iter().map(|u| u.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://a.example/x",
                "http://a.example/y",
                "HTTP://a.example/x",
                "www.b.example"
            ]
        );
        // Past the length kept, a link is cut and never matched: both are listed.
        let long = format!("http://c.example/{}", "z".repeat(MAX_URL_LEN));
        push_once(&mut out, &mut seen, &long);
        push_once(&mut out, &mut seen, &long);
        assert_eq!(out.len(), 6);
        assert!(out[5].url.len() <= MAX_URL_LEN);
    }

    #[test]
    fn links_found_run_by_run_are_those_found_in_the_whole_text() {
        let pieces = [
            "www.", "WwW.", "ww.", "http://", "HTTPS://", "ftp://", "hTTp:", "mailto:", "://", ".",
            "..", ":", "/", "//", "@", "-", "_", "(", ")", "[", "]", "{", "}", "'", "\"", "<", ">",
            "?", "#", ",", ";", "=", "%", "example", "com", "co.uk", "a", "1", "10", "xn--",
            "\u{e9}", "\u{a0}", "\u{2026}", " ", "  ", "\n", "\r\n", "\t", "\x0c", "\x0b", "\x01",
            "\x7f",
        ];
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut found = 0;
        for _ in 0..30_000 {
            let n = (next() % 40) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let got = found_in(&text);
            assert_eq!(got, whole_text(&text), "{text:?}");
            found += got.len();
        }
        // The generated texts hold links, not only near misses.
        assert!(found > 1_000, "{found}");
        // Past the cap, and with links in runs of every length at the text's end.
        let many = (0..MAX_URLS + 5)
            .map(|i| format!("see www.a{i}.example.com/x. "))
            .collect::<String>()
            + "http://b.co";
        let got = found_in(&many);
        assert_eq!(got.len(), MAX_URLS);
        assert_eq!(got, whole_text(&many));
        for cut in 0..12 {
            let text = &"x http://a.io"[..13 - cut];
            assert_eq!(found_in(text), whole_text(text), "{text:?}");
        }
    }
}
