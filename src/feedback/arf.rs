//! ARF reports (RFC 5965): what a mailbox provider or abuse desk sends about a message: a
//! `multipart/report; report-type=feedback-report` with a human part, a
//! `message/feedback-report` part of fields, and the original message (`message/rfc822`) or
//! its headers (`text/rfc822-headers`).

use std::net::IpAddr;

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::EventKind;
use crate::message::mime::{Limits, structure_cut};
use crate::message::opaque::{OPAQUE_SUBTYPE, make_nested_messages_opaque};

/// A parsed report: what it says and about what.
#[derive(Debug)]
pub struct Arf {
    /// The report's Feedback-Type, lower case.
    pub feedback_type: String,
    pub kind: EventKind,
    /// The Source-IP field: the host that sent the original message.
    pub source_ip: Option<IpAddr>,
    /// The original message, or only its headers.
    pub original: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArfError {
    #[error("not a MIME message")]
    Unparseable,
    #[error(
        "not an ARF report: the message is {0}, not multipart/report; report-type=feedback-report"
    )]
    NotAReport(String),
    #[error("the report has no message/feedback-report part")]
    NoFeedbackPart,
    #[error("the feedback report has no Feedback-Type field")]
    NoFeedbackType,
    #[error(
        "Feedback-Type {0:?} is not counted (abuse, fraud, virus and other count as spam, not-spam as ham)"
    )]
    UnsupportedType(String),
    #[error("Source-IP {0:?} is not an IP address")]
    BadSourceIp(String),
    #[error("the report has no original message (message/rfc822 or text/rfc822-headers part)")]
    NoOriginal,
}

/// What a report said, as an error quotes it: short, however long the field was.
fn clip(mut s: String) -> String {
    const MAX: usize = 64;
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Reads an ARF report.
pub fn parse(raw: &[u8]) -> Result<Arf, ArfError> {
    let raw = super::report::strip_mbox_line(raw);
    let cut = structure_cut(raw, Limits::DEFAULT.parts);
    // The original comes back as its text (decoded if base64, which some abuse desks send
    // though RFC 2046 forbids it), not parsed again past the cut.
    let mut raw = raw[..cut].to_vec();
    make_nested_messages_opaque(&mut raw);
    let parsed = MessageParser::default()
        .parse(&raw)
        .ok_or(ArfError::Unparseable)?;
    let root = parsed.parts.first().ok_or(ArfError::Unparseable)?;
    let ct = root.content_type();
    let is_report = ct.is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("feedback-report"))
    });
    if !is_report {
        let what = ct.map_or("text/plain".to_string(), |ct| {
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        });
        return Err(ArfError::NotAReport(clip(what)));
    }
    let PartType::Multipart(children) = &root.body else {
        return Err(ArfError::NotAReport(
            "multipart/report without parts".into(),
        ));
    };
    let mut fields: Option<Vec<u8>> = None;
    let mut original: Option<Vec<u8>> = None;
    for &id in children {
        let Some(part) = parsed.part(id) else {
            continue;
        };
        let Some(ct) = part.content_type() else {
            continue;
        };
        let (t, s) = (ct.ctype(), ct.subtype().unwrap_or(""));
        let body: Option<&[u8]> = match &part.body {
            PartType::Text(x) | PartType::Html(x) => Some(x.as_bytes()),
            PartType::Binary(x) | PartType::InlineBinary(x) => Some(x),
            // A nested message keeps the whole text it was parsed from; its root part says
            // where it lies.
            PartType::Message(m) => {
                let r = m.root_part();
                m.raw_message
                    .get(r.offset_header as usize..r.offset_end as usize)
            }
            PartType::Multipart(_) => None,
        };
        let Some(body) = body else { continue };
        if t.eq_ignore_ascii_case("message") && s.eq_ignore_ascii_case("feedback-report") {
            fields.get_or_insert_with(|| body.to_vec());
        } else if (t.eq_ignore_ascii_case("message")
            && (s.eq_ignore_ascii_case("rfc822") || s == OPAQUE_SUBTYPE))
            || (t.eq_ignore_ascii_case("text") && s.eq_ignore_ascii_case("rfc822-headers"))
        {
            original.get_or_insert_with(|| body.to_vec());
        }
    }
    let fields = fields.ok_or(ArfError::NoFeedbackPart)?;
    let field = |name: &str| -> Option<String> {
        let mut found = None;
        crate::message::each_header(&fields, |n, v| {
            if found.is_none() && n.eq_ignore_ascii_case(name) {
                found = Some(String::from_utf8_lossy(&v).trim().to_string());
            }
        });
        found
    };
    let feedback_type = field("Feedback-Type")
        .ok_or(ArfError::NoFeedbackType)?
        .to_ascii_lowercase();
    let kind = match feedback_type.as_str() {
        "abuse" | "fraud" | "virus" | "other" => EventKind::Spam,
        "not-spam" => EventKind::Ham,
        _ => return Err(ArfError::UnsupportedType(clip(feedback_type))),
    };
    let source_ip = match field("Source-IP") {
        None => None,
        Some(v) => {
            // Bracketed or IPv6-tagged forms are seen in the wild.
            let bare = v
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_start_matches("IPv6:");
            Some(
                bare.parse()
                    .map_err(|_| ArfError::BadSourceIp(clip(v.clone())))?,
            )
        }
    };
    let original = original.ok_or(ArfError::NoOriginal)?;
    Ok(Arf {
        feedback_type,
        kind,
        source_ip,
        original,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(fields: &str, third: &str) -> String {
        format!(
            "From: abuse@isp.example\r\nTo: fbl@example.net\r\nSubject: FW: spam\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report;\r\n \
             boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\
             --b1\r\nContent-Type: message/feedback-report\r\n\r\n{fields}\r\n\
             --b1\r\n{third}\r\n--b1--\r\n"
        )
    }

    const ORIGINAL: &str = "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n\
        From: Prize <win@prizes.example>\r\nSubject: you won\r\n\r\nhttp://prizes.example/claim\r\n";

    #[test]
    fn an_abuse_report_names_its_message_and_source() {
        let raw = report(
            "Feedback-Type: abuse\r\nUser-Agent: SomeISP/1.0\r\nVersion: 1\r\nSource-IP: 203.0.113.9\r\n",
            ORIGINAL,
        );
        let arf = parse(raw.as_bytes()).unwrap();
        assert_eq!(arf.kind, EventKind::Spam);
        assert_eq!(arf.feedback_type, "abuse");
        assert_eq!(arf.source_ip, Some("203.0.113.9".parse().unwrap()));
        let original = String::from_utf8(arf.original).unwrap();
        assert!(original.starts_with("From: Prize"), "{original}");
        assert!(original.contains("prizes.example/claim"));
    }

    #[test]
    fn a_base64_original_is_decoded() {
        use base64::Engine;
        let inner = "From: Prize <win@prizes.example>\r\nSubject: you won\r\n\r\nclaim\r\n";
        let third = format!(
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            base64::engine::general_purpose::STANDARD.encode(inner)
        );
        let raw = report("Feedback-Type: abuse\r\nVersion: 1\r\n", &third);
        let arf = parse(raw.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(arf.original).unwrap(), inner);
    }

    #[test]
    fn not_spam_is_ham_and_headers_alone_will_do() {
        let raw = report(
            "Feedback-Type: not-spam\r\nVersion: 1\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: news@shop.example\r\nSubject: offers\r\n",
        );
        let arf = parse(raw.as_bytes()).unwrap();
        assert_eq!(arf.kind, EventKind::Ham);
        assert_eq!(arf.source_ip, None);
        assert!(String::from_utf8_lossy(&arf.original).contains("news@shop.example"));
    }

    #[test]
    fn broken_reports_say_what_is_wrong() {
        let long = "é".repeat(10_000);
        let cases: [(String, ArfError); 7] = [
            (
                // A report's own text is quoted short, whatever its length.
                report(&format!("Feedback-Type: {long}\r\n"), ORIGINAL),
                ArfError::UnsupportedType(format!("{}…", "é".repeat(32))),
            ),
            (
                "Subject: hi\r\n\r\nplain mail\r\n".into(),
                ArfError::NotAReport("text/plain".into()),
            ),
            (report("Version: 1\r\n", ORIGINAL), ArfError::NoFeedbackType),
            (
                report("Feedback-Type: auth-failure\r\n", ORIGINAL),
                ArfError::UnsupportedType("auth-failure".into()),
            ),
            (
                report("Feedback-Type: abuse\r\nSource-IP: 999.1.1.1\r\n", ORIGINAL),
                ArfError::BadSourceIp("999.1.1.1".into()),
            ),
            (
                report(
                    "Feedback-Type: abuse\r\n",
                    "Content-Type: text/plain\r\n\r\nno original",
                ),
                ArfError::NoOriginal,
            ),
            (
                report("Feedback-Type: abuse\r\n", ORIGINAL)
                    .replace("message/feedback-report", "text/plain"),
                ArfError::NoFeedbackPart,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw.as_bytes()).err(), Some(want), "{raw}");
        }
        // Garbage of every kind is an error, never a panic.
        for junk in [
            &b""[..],
            b"\xff\xfe\x00",
            b"Content-Type: multipart/report\r\n\r\n",
        ] {
            assert!(parse(junk).is_err());
        }
    }
}
