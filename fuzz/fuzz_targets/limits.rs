//! Any message under any limits: the first bytes choose the body size kept and the MIME
//! view's bounds (parts, nesting, decoded text), the rest is the message. Whatever they are,
//! the kept message and the view stay within them and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repmilter::message::mime::{Limits, MimeView};
use repmilter::message::{MAX_HEADERS, Message};

fuzz_target!(|data: &[u8]| {
    let Some((head, raw)) = data.split_first_chunk::<6>() else {
        return;
    };
    let max_body = usize::from(u16::from_le_bytes([head[0], head[1]])) * 16;
    let limits = Limits {
        parts: usize::from(head[2]) * 8,
        depth: usize::from(head[3] % 64),
        decoded_text: usize::from(u16::from_le_bytes([head[4], head[5]])) * 16,
    };
    let message = Message::from_raw(raw, max_body);
    assert!(message.body.len() <= max_body);
    assert!(message.headers.len() <= MAX_HEADERS);
    let view = MimeView::build_with(&message, &limits);
    let text: usize = view.texts.iter().map(|t| t.text.len()).sum();
    assert!(text <= limits.decoded_text, "{text} > {}", limits.decoded_text);
    // Each part visited yields at most one text or attachment (an attached message its
    // texts too, within the text budget).
    assert!(view.attachments.len() <= limits.parts.max(1));
});
