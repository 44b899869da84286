//! HTML rendered to text for body rules, with the links kept.
//!
//! A single linear pass that never backtracks, so hostile HTML (unclosed tags, unclosed
//! quotes, megabytes without a `>`) costs time proportional to its length. It is not a
//! browser: it drops markup, `<script>`, `<style>` and comments, turns block elements into
//! line breaks, decodes entities, and collects `href`/`src`/`action` targets.

/// Most links kept from one HTML part; spam with more is already obvious.
pub const MAX_LINKS: usize = 1000;

/// Longest attribute value kept as a link: longer ones are not URLs a DNS list can judge.
const MAX_LINK_LEN: usize = 8192;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub links: Vec<String>,
}

/// Elements whose content is never shown.
const HIDDEN: [&str; 4] = ["script", "style", "template", "title"];

/// Elements that start a new line when rendered.
const BLOCK: [&str; 24] = [
    "br",
    "p",
    "div",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "blockquote",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "dt",
    "dd",
    "center",
];

/// Attributes whose values are link targets.
const LINK_ATTRS: [&str; 4] = ["href", "src", "action", "background"];

pub fn render(html: &str) -> Rendered {
    let bytes = html.as_bytes();
    let mut out = Rendered::default();
    let mut text = String::with_capacity(html.len() / 2);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = memchr::memchr(b'<', &bytes[i..]).map_or(bytes.len(), |n| i + n);
            push_text(&mut text, &html[i..end]);
            i = end;
            continue;
        }
        if bytes[i..].starts_with(b"<!--") {
            i = find(bytes, i + 4, b"-->").map_or(bytes.len(), |n| n + 3);
            continue;
        }
        let Some(tag_end) = tag_end(bytes, i + 1) else {
            // An unclosed tag at the end: a browser shows nothing of it either.
            break;
        };
        let inner = &html[i + 1..tag_end];
        i = tag_end + 1;
        let (closing, name, attrs) = split_tag(inner);
        if name.is_empty() {
            // "<" not followed by a tag name ("a < b") is text.
            push_text(&mut text, "<");
            push_text(&mut text, inner);
            push_text(&mut text, ">");
            continue;
        }
        if !closing && HIDDEN.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            i = skip_element_content(bytes, i, name);
            continue;
        }
        if BLOCK.iter().any(|b| name.eq_ignore_ascii_case(b)) {
            text.push('\n');
        } else if name.eq_ignore_ascii_case("td") || name.eq_ignore_ascii_case("th") {
            text.push(' ');
        }
        if !closing {
            collect_links(attrs, &mut out.links);
        }
    }
    out.text = tidy(&text);
    out
}

/// Appends a text run with its entities decoded and its whitespace folded to single spaces.
fn push_text(text: &mut String, run: &str) {
    let decoded = html_escape::decode_html_entities(run);
    let mut last_space = text.ends_with([' ', '\n']) || text.is_empty();
    for c in decoded.chars() {
        if c.is_whitespace() || c == '\u{a0}' {
            if !last_space {
                text.push(' ');
                last_space = true;
            }
        } else {
            text.push(c);
            last_space = false;
        }
    }
}

/// Folds runs of blank lines and trims each line.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|n| from + n)
}

/// The `>` that ends a tag starting at `from`, skipping quoted attribute values.
fn tag_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (k, &b) in bytes.iter().enumerate().skip(from) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return Some(k),
            None => {}
        }
    }
    // An unclosed quote: browsers end the tag at the next '>' anyway.
    if quote.is_some() {
        return memchr::memchr(b'>', &bytes[from..]).map(|n| from + n);
    }
    None
}

/// Splits `/name attrs` into (closing, name, attrs).
fn split_tag(inner: &str) -> (bool, &str, &str) {
    let (closing, rest) = match inner.strip_prefix('/') {
        Some(r) => (true, r),
        None => (false, inner),
    };
    let name_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b':')
        .count();
    let name = &rest[..name_len];
    if !name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) {
        return (closing, "", rest);
    }
    (closing, name, &rest[name_len..])
}

/// Skips to just after `</name ...>`, or to the end when it never closes.
fn skip_element_content(bytes: &[u8], from: usize, name: &str) -> usize {
    let mut at = from;
    while let Some(lt) = find(bytes, at, b"</") {
        let after = lt + 2;
        let candidate = bytes.get(after..after + name.len());
        if candidate.is_some_and(|c| c.eq_ignore_ascii_case(name.as_bytes())) {
            return memchr::memchr(b'>', &bytes[after..]).map_or(bytes.len(), |n| after + n + 1);
        }
        at = after;
    }
    bytes.len()
}

fn collect_links(attrs: &str, links: &mut Vec<String>) {
    let b = attrs.as_bytes();
    let mut i = 0;
    while i < b.len() && links.len() < MAX_LINKS {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'/' | b'>') {
            i += 1;
        }
        let name = &attrs[name_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            if i == name_start {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
            let q = b[i];
            let start = i + 1;
            let end = memchr::memchr(q, &b[start..]).map_or(b.len(), |n| start + n);
            i = (end + 1).min(b.len());
            &attrs[start..end]
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            &attrs[start..i]
        };
        if LINK_ATTRS.iter().any(|a| name.eq_ignore_ascii_case(a)) && value.len() <= MAX_LINK_LEN {
            // Spammers break URLs across lines inside the attribute to dodge filters.
            let cleaned: String = html_escape::decode_html_entities(value)
                .chars()
                .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
                .collect();
            let cleaned = cleaned.trim();
            if !cleaned.is_empty() {
                links.push(cleaned.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_and_collects_links() {
        let r = render(
            "<html><head><title>t</title><style>p{color:red}</style></head><body>\
             <p>Hello&nbsp;<b>world</b> &amp; friends</p><!-- hidden -->\
             <a href=\"http://example.com/a\">click</a><br>next line\
             <img src='http://img.example.net/x.png'><script>var x = '<p>no</p>';</script>\
             <form action=https://phish.example.org/login></form></body></html>",
        );
        assert_eq!(r.text, "Hello world & friends\nclick\nnext line");
        assert_eq!(
            r.links,
            vec![
                "http://example.com/a",
                "http://img.example.net/x.png",
                "https://phish.example.org/login"
            ]
        );
    }

    #[test]
    fn newlines_inside_href_are_removed() {
        let r = render("<a href=\"http://exa\nmple.com/pa\r\nth\">x</a>");
        assert_eq!(r.links, vec!["http://example.com/path"]);
    }

    #[test]
    fn hostile_html_is_linear_and_does_not_panic() {
        let cases = [
            "<".repeat(100_000),
            format!("<a href=\"{}", "x".repeat(100_000)),
            format!("<script>{}", "<p>".repeat(50_000)),
            "<!--".repeat(10_000),
            format!("<div {}>", "a=b ".repeat(50_000)),
            "a < b and c > d".to_string(),
            "<p>unclosed <b>bold <i>italic".to_string(),
            "\u{1F600}<\u{e9}>text</\u{e9}>".to_string(),
        ];
        for html in &cases {
            let r = render(html);
            assert!(r.links.len() <= MAX_LINKS);
            assert!(r.text.len() <= html.len() * 4);
        }
        assert_eq!(render("a < b and c > d").text, "a < b and c > d");
        assert_eq!(
            render("<p>unclosed <b>bold <i>italic").text,
            "unclosed bold italic"
        );
    }

    #[test]
    fn link_count_is_capped() {
        let html = "<a href=http://x.example/>x</a>".repeat(MAX_LINKS + 50);
        assert_eq!(render(&html).links.len(), MAX_LINKS);
    }
}
