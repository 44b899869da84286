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

/// Parses one URL (a scheme, or `www.` for schemeless links) into its host and domain.
pub fn parse(found: &str) -> Option<Url> {
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
    let parsed = url::Url::parse(candidate).ok()?;
    if !matches!(parsed.scheme(), "http" | "https" | "ftp") {
        return None;
    }
    let host = parsed
        .host_str()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
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

/// The registered domain of a lower-case host under the public suffix list
/// (`mail.example.co.uk` -> `example.co.uk`); an IP address, or a name the list does not
/// know, is returned as it is.
pub fn registered_domain(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_string();
    }
    psl::domain_str(host).unwrap_or(host).to_string()
}

/// Finds http(s), ftp and www. links in plain text and appends them to `out`.
pub fn find_in_text(text: &str, out: &mut Vec<Url>) {
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]);
    finder.url_must_have_scheme(false);
    for link in finder.links(text) {
        if out.len() >= MAX_URLS {
            return;
        }
        if let Some(u) = parse(link.as_str()) {
            out.push(u);
        }
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
    fn finds_links_in_text() {
        let mut v = Vec::new();
        find_in_text(
            "Visit https://promo.example.com/deal, or www.cheap.example.net. Mail me: a@b.example",
            &mut v,
        );
        let hosts: Vec<&str> = v.iter().map(|u| u.host.as_str()).collect();
        assert_eq!(hosts, ["promo.example.com", "www.cheap.example.net"]);
    }
}
