//! Reported messages (spam that got through, ham that was filtered) as events: the keys a
//! gateway would have seen, derived from the message alone.

use std::net::IpAddr;

use super::{Event, EventKind, new_id, now};
use crate::message::{Envelope, Message};
use crate::reputation::hops::{is_public, received_from};
use crate::reputation::keys::key_strings;
use crate::scan::ScanInput;

/// Largest reported message kept whole (as the daemon's default `max_message_size`); the rest
/// of a larger one is not read.
pub const MAX_REPORTED: usize = 10 * 1024 * 1024;

/// The event for a reported message: its keys (the envelope is unknown, so the message's
/// own: From, links, attachments, fingerprint, and `client`, or else the sending host of the
/// topmost Received header that names a public address).
pub fn event_of(raw: &[u8], kind: EventKind, client: Option<IpAddr>) -> Event {
    let raw = strip_mbox_line(raw);
    let message = Message::from_raw(raw, MAX_REPORTED);
    let client = client.filter(|ip| is_public(*ip)).or_else(|| {
        message
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Received"))
            .find_map(|(_, v)| received_from(&String::from_utf8_lossy(v)))
            .filter(|ip| is_public(*ip))
    });
    let input = ScanInput::new(
        Envelope {
            client_ip: client,
            ..Envelope::default()
        },
        message,
    );
    Event {
        id: new_id(),
        gateway: String::new(),
        time: now(),
        kind,
        keys: key_strings(&input).to_vec(),
        score: 0.0,
        action: String::new(),
        symbols: Vec::new(),
        sample: None,
        features: Vec::new(),
    }
}

/// The message without the mbox `From ` line a mailbox file starts with (an MTA never
/// passes it on, and it is no header).
pub fn strip_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match memchr::memchr(b'\n', raw) {
            Some(i) => &raw[i + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

/// Whether the bytes look like a mail message: a first line that is a header field.
pub fn looks_like_mail(raw: &[u8]) -> bool {
    let raw = strip_mbox_line(raw);
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    match memchr::memchr(b':', line) {
        Some(i) => i > 0 && line[..i].iter().all(|&b| b.is_ascii_graphic() && b != b':'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAM: &str = "From spammer@x Mon Jan  1 00:00:00 2024\n\
        Received: from mx.bad.example (mx.bad.example [203.0.113.9]) by mx.example.net\n\
        From: Prize <win@prizes.example>\n\
        Subject: you won\n\n\
        Claim your prize at http://prizes.example/claim now\n";

    #[test]
    fn a_reported_message_keys_its_sender_links_and_text() {
        let e = event_of(SPAM.as_bytes(), EventKind::Spam, None);
        assert_eq!(e.kind, EventKind::Spam);
        for k in [
            "ip:203.0.113.9",
            "net:203.0.113.0/24",
            "from:prizes.example",
            "domain:prizes.example",
        ] {
            assert!(e.keys.iter().any(|x| x == k), "{k} in {:?}", e.keys);
        }
        assert!(e.keys.iter().any(|k| k.starts_with("url:")));
        // An ARF's Source-IP names the client instead; a private one is no key.
        let e = event_of(
            SPAM.as_bytes(),
            EventKind::Spam,
            Some("198.51.100.4".parse().unwrap()),
        );
        assert!(
            e.keys.iter().any(|x| x == "ip:198.51.100.4"),
            "{:?}",
            e.keys
        );
        let e = event_of(
            SPAM.as_bytes(),
            EventKind::Spam,
            Some("10.0.0.1".parse().unwrap()),
        );
        assert!(e.keys.iter().any(|x| x == "ip:203.0.113.9"), "{:?}", e.keys);
    }

    #[test]
    fn mail_is_told_from_other_files() {
        assert!(looks_like_mail(SPAM.as_bytes()));
        assert!(looks_like_mail(b"Subject: x\r\n\r\nbody"));
        assert!(!looks_like_mail(b"\x7fELF\x02\x01"));
        assert!(!looks_like_mail(b"just some text\nwith: a colon later"));
        assert!(!looks_like_mail(b""));
        assert_eq!(strip_mbox_line(b"From x\n"), b"");
    }
}
