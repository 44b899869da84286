//! The texts rules read, built from a message and its MIME view: `body` (the Subject, then
//! each text part rendered), `rawbody` (text parts before HTML rendering), `full` (the message
//! as received) and header selections.

use super::Message;
use super::mime::{MimeView, PartHeader};

/// Which part of a header a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderPart {
    /// RFC 2047 decoded and unfolded.
    Decoded,
    /// As sent.
    Raw,
    /// Only the addresses (`From:addr`).
    Addr,
    /// Only the display names (`From:name`).
    Name,
}

/// What a header rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderSel {
    /// One header by name (all its occurrences, one per line).
    Named(String, HeaderPart),
    /// Every header as `Name: value` lines.
    All,
    /// To and Cc.
    ToCc(HeaderPart),
    /// SpamAssassin's `MESSAGEID`: every Message-Id, Resent-Message-Id and X-Message-Id
    /// (list software moves the real one).
    MessageId(HeaderPart),
}

/// The headers a SpamAssassin pseudo-header stands for (`ToCc`, `MESSAGEID`), for rules
/// that test it as one header.
pub fn pseudo_header(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "ToCc" => Some(&["To", "Cc"]),
        "MESSAGEID" => Some(&["Message-Id", "Resent-Message-Id", "X-Message-Id"]),
        _ => None,
    }
}

/// Whether a header (or SpamAssassin pseudo-header: `ALL`, `ToCc`, `MESSAGEID`) is present.
pub fn header_exists(message: &Message, name: &str) -> bool {
    match (name, pseudo_header(name)) {
        ("ALL", _) => !message.headers.is_empty(),
        (_, Some(names)) => names.iter().any(|n| message.header(n).is_some()),
        _ => message.header(name).is_some(),
    }
}

/// The Subject, then the decoded text of every text part, one per line.
pub fn body(view: &MimeView) -> String {
    let size: usize = view.texts.iter().map(|t| t.text.len() + 1).sum();
    let mut body = String::with_capacity(size + 256);
    for subject in view.header_values("Subject") {
        body.push_str(subject);
        body.push('\n');
    }
    for t in &view.texts {
        body.push_str(&t.text);
        body.push('\n');
    }
    body
}

/// Every text part decoded, HTML before rendering.
pub fn rawbody(view: &MimeView) -> String {
    let mut raw = String::new();
    for t in &view.texts {
        raw.push_str(t.source.as_deref().unwrap_or(&t.text));
        raw.push('\n');
    }
    raw
}

/// The message as received (invalid UTF-8 replaced).
pub fn full(message: &Message) -> String {
    // Valid UTF-8 (most mail) is taken as it is, without a second copy.
    String::from_utf8(message.to_raw())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The text a header rule reads, or None when the message has no such header.
pub fn header_text(message: &Message, view: &MimeView, sel: &HeaderSel) -> Option<String> {
    let join = |vals: Vec<String>| {
        if vals.is_empty() {
            None
        } else {
            Some(vals.join("\n"))
        }
    };
    match sel {
        HeaderSel::All => join(
            view.headers
                .iter()
                .map(|h| format!("{}: {}", h.name, h.value))
                .collect(),
        ),
        HeaderSel::ToCc(part) | HeaderSel::MessageId(part) => {
            let names = match sel {
                HeaderSel::ToCc(_) => pseudo_header("ToCc"),
                _ => pseudo_header("MESSAGEID"),
            }
            .expect("a pseudo-header");
            let mut v = Vec::new();
            for name in names {
                v.extend(values(message, view, name, *part));
            }
            join(v)
        }
        HeaderSel::Named(name, part) => join(values(message, view, name, *part)),
    }
}

/// The text a `mimeheader` rule reads in one MIME part, or None when the part has no such
/// header.
pub fn part_header_text(part: &[PartHeader], sel: &HeaderSel) -> Option<String> {
    let lines: Vec<String> = match sel {
        HeaderSel::All => part
            .iter()
            .map(|h| format!("{}: {}", h.name, h.raw))
            .collect(),
        HeaderSel::Named(name, how) => part
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| match how {
                HeaderPart::Raw => h.raw.clone(),
                _ => h.value.clone(),
            })
            .collect(),
        HeaderSel::ToCc(_) | HeaderSel::MessageId(_) => Vec::new(),
    };
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn values(message: &Message, view: &MimeView, name: &str, part: HeaderPart) -> Vec<String> {
    match part {
        HeaderPart::Raw => message
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect(),
        HeaderPart::Decoded => view.header_values(name).map(str::to_string).collect(),
        HeaderPart::Addr | HeaderPart::Name => {
            let mut out = Vec::new();
            for (n, raw) in &message.headers {
                if !n.eq_ignore_ascii_case(name) {
                    continue;
                }
                for (display, addr) in super::mime::addresses(raw) {
                    match part {
                        HeaderPart::Addr => out.extend(addr),
                        _ => out.extend(display),
                    }
                }
            }
            out
        }
    }
}
