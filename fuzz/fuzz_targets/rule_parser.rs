//! Any text as a rule file: parsing and compiling must report problems, never panic, and
//! the compiled set must scan a message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use repmilter::message::{Envelope, Message};
use repmilter::scan::ScanInput;
use repmilter::signatures::ruleset::RuleSet;
use repmilter::signatures::parse::Parsed;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parsed = Parsed::default();
    parsed.parse_text(Path::new("fuzz.cf"), &text);
    let rules = RuleSet::compile(parsed);
    let input = ScanInput::new(
        Envelope::default(),
        Message::from_raw(
            b"Subject: hello\r\nFrom: a@b.example\r\n\r\nbody text http://x.example/ here\r\n",
            1 << 20,
        ),
    );
    let _ = rules.scan(&input);
});
