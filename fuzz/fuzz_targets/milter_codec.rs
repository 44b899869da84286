//! Any bytes from a peer: framing and command parsing return a value or an error; a parsed
//! command encodes and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repmilter::milter::codec::{Command, parse_frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = parse_frame(rest) {
        if let Ok(cmd) = Command::parse(frame) {
            let mut buf = Vec::new();
            cmd.encode(&mut buf);
            let (again, _) = parse_frame(&buf).unwrap().unwrap();
            assert_eq!(Command::parse(again).unwrap(), cmd);
        }
        rest = &rest[used..];
    }
});
