//! Log output: one line per event, with no control character from anywhere.
//!
//! Log lines carry what peers sent (envelope senders, queue ids, rule text): a sender of
//! `a@b\nFAKE LINE` or one with terminal escapes must not forge lines or repaint a terminal.
//! Fields that carry peer text are formatted with `?` (quoted, escaped) at their source; this
//! writer is the guard behind that, for everything else: control characters other than the
//! newline that ends an event are written as `\n`, `\r`, `\t`, `\x1b` and so on. Colours are off
//! for the same reason (their escapes would be indistinguishable from a peer's).

use std::io::Write;

/// Starts logging to standard error at `level` (a tracing filter), or at `RUST_LOG` if set.
pub fn init(level: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // hickory logs query names at debug level, and a DNS list's query name holds its key
    // (Spamhaus DQS): its logs stay at warn whatever the filter says.
    for quiet in ["hickory_proto=warn", "hickory_resolver=warn"] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Escaping(std::io::stderr()))
        .with_ansi(false)
        .init();
}

/// Writes each event with its control characters escaped; the formatter hands over one whole
/// event per `write` call, ending in the newline that is kept.
pub struct Escaping<W: Write>(pub W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !body.iter().any(|&b| is_control(b)) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if is_control(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_log() {
        let mut w = Escaping(Vec::new());
        w.write_all(b"from=a@b\nINFO forged\x1b[31m red\r\n")
            .unwrap();
        w.write_all(b"plain line\n").unwrap();
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "from=a@b\\nINFO forged\\x1b[31m red\\r\nplain line\n"
        );
    }
}
