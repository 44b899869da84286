//! GTUBE, the Generic Test for Unsolicited Bulk Email: a fixed string that every spam filter
//! treats as spam, so operators can test their whole path without real spam.

use crate::scan::{Compute, ScanInput, Symbol};

pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Default score: far above any reject threshold, as in SpamAssassin.
pub const GTUBE_SCORE: f64 = 1000.0;

pub struct Gtube;

impl Gtube {
    /// Looks in the raw body first (the common case costs one memmem), then in the decoded
    /// text parts, so a base64 or quoted-printable GTUBE is found too.
    pub fn found(input: &ScanInput) -> bool {
        // Built once: building the searcher cost as much as the search of a typical body.
        static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
            std::sync::OnceLock::new();
        let finder = FINDER.get_or_init(|| memchr::memmem::Finder::new(GTUBE.as_bytes()));
        if finder.find(&input.message.body).is_some() {
            return true;
        }
        input
            .view()
            .texts
            .iter()
            .any(|t| finder.find(t.text.as_bytes()).is_some())
    }
}

impl Compute for Gtube {
    fn name(&self) -> &'static str {
        "gtube"
    }

    fn scan(&self, input: &ScanInput, _: std::time::Instant) -> Vec<Symbol> {
        let hit = Gtube::found(input).then(|| {
            Symbol::new(
                "GTUBE",
                GTUBE_SCORE,
                "Generic Test for Unsolicited Bulk Email",
            )
        });
        hit.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message};

    fn input(raw: &str) -> ScanInput {
        ScanInput::new(
            Envelope::default(),
            Message::from_raw(raw.as_bytes(), 1 << 20),
        )
    }

    #[test]
    fn finds_gtube_plain_and_encoded() {
        assert!(Gtube::found(&input(&format!(
            "Subject: t\r\n\r\nhello\r\n{GTUBE}\r\n"
        ))));
        // The same string in base64, inside a multipart message.
        let b64 = "WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1QtRU1BSUwqQy4zNFg=";
        let mime = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        );
        assert!(Gtube::found(&input(&mime)));
    }

    #[test]
    fn near_misses_do_not_fire() {
        assert!(!Gtube::found(&input("Subject: t\r\n\r\nhello\r\n")));
        let cut = &GTUBE[..GTUBE.len() - 1];
        assert!(!Gtube::found(&input(&format!(
            "Subject: t\r\n\r\n{cut}\r\n"
        ))));
    }
}
