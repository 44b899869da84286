//! Any text as a Received header value: the parser that picks the sending host's address
//! must never panic, and what it returns must be an address written in the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repmilter::config::ReceivedHops;
use repmilter::reputation::hops::{MAX_HOPS, received_from, select};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let found = received_from(&text);
    if let Some(ip) = found {
        // The address came from between brackets in the from clause.
        assert!(text.contains('[') && text.contains(']'), "{ip} from {text:?}");
    }
    // The same text as a chain of headers, one per line, behind a trusted relay.
    let chain: Vec<String> = text.lines().map(str::to_string).collect();
    let trusted = ["127.0.0.0/8".parse().unwrap()];
    for mode in [ReceivedHops::Last, ReceivedHops::All] {
        let hops = select(Some("127.0.0.1".parse().unwrap()), &chain, &trusted, false, mode);
        assert!(hops.len() <= MAX_HOPS);
    }
});
