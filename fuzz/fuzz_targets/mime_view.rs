//! Any bytes as a message: splitting, the MIME view (decoding, HTML, URLs, attachments) and
//! the GTUBE check must neither panic nor exceed their limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repmilter::message::mime::{MAX_PARTS, MimeView};
use repmilter::message::{Envelope, Message};
use repmilter::scan::ScanInput;
use repmilter::signatures::gtube::Gtube;

fuzz_target!(|data: &[u8]| {
    let message = Message::from_raw(data, 1 << 20);
    let view = MimeView::build(&message);
    assert!(view.attachments.len() + view.texts.len() <= MAX_PARTS + 8);
    let input = ScanInput::new(Envelope::default(), message);
    let _ = Gtube::found(&input);
});
