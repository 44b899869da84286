//! Log output: one line per event, with no control character from anywhere.
//!
//! Log lines carry what peers sent (envelope senders, queue ids, rule text): a sender of
//! `a@b\nFAKE LINE` or one with terminal escapes must not forge lines or repaint a terminal.
//! Fields that carry peer text are formatted with `?` (quoted, escaped) at their source; this
//! writer is the guard behind that, for everything else: control characters other than the
//! newline that ends an event are written as `\n`, `\r`, `\t`, `\x1b` and so on. Colours are off
//! for the same reason (their escapes would be indistinguishable from a peer's).

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

mod text;

pub use text::{Quoted, TextFields, TextLine, write_timestamp};

/// How log events are written (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Where the local syslog daemon takes messages.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Starts logging to standard error at `level` (a tracing filter), or at `RUST_LOG` if set,
/// as text lines or JSON objects, and to the local syslog (facility mail) when `syslog`.
pub fn init(level: &str, format: LogFormat, syslog: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // hickory logs query names at debug level, and a DNS list's query name holds its key
    // (Spamhaus DQS): its logs stay at warn whatever the filter says.
    for quiet in ["hickory_proto=warn", "hickory_resolver=warn"] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let stderr = || Escaping(std::io::stderr());
    let syslog = if syslog {
        match Syslog::connect(Path::new(SYSLOG_SOCKET)) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "repmilter: log.syslog: cannot reach {SYSLOG_SOCKET} ({e}); logging to stderr only"
                );
                None
            }
        }
    } else {
        None
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match (format, syslog) {
        (LogFormat::Text, None) => builder
            .event_format(TextLine::default())
            .fmt_fields(TextFields)
            .with_writer(stderr)
            .init(),
        (LogFormat::Text, Some(s)) => builder
            .event_format(TextLine::default())
            .fmt_fields(TextFields)
            .with_writer(stderr.and(s))
            .init(),
        // One object per event: fields as keys, the message under "fields.message".
        (LogFormat::Json, None) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(stderr)
            .init(),
        (LogFormat::Json, Some(s)) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(stderr.and(s))
            .init(),
    }
}

/// The local syslog, as datagrams in the traditional format (`<PRI>repmilter[PID]: text`,
/// facility mail) that rsyslog and journald take on `/dev/log`; each event's severity follows
/// its level. A datagram the daemon cannot send (syslog restarting) is dropped: logging never
/// blocks mail.
#[derive(Clone)]
pub struct Syslog {
    socket: Arc<UnixDatagram>,
    tag: String,
}

/// Facility mail (2), shifted as RFC 3164 wants it.
const FACILITY_MAIL: u8 = 2 << 3;

impl Syslog {
    pub fn connect(path: &Path) -> std::io::Result<Syslog> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_nonblocking(true)?;
        Ok(Syslog {
            socket: Arc::new(socket),
            tag: format!("repmilter[{}]: ", std::process::id()),
        })
    }
}

/// One event on its way to syslog, at one severity.
pub struct SyslogEvent {
    syslog: Syslog,
    severity: u8,
}

impl Write for SyslogEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut out = Vec::with_capacity(text.len() + 32);
        out.extend_from_slice(format!("<{}>", FACILITY_MAIL | self.severity).as_bytes());
        out.extend_from_slice(self.syslog.tag.as_bytes());
        Escaping(&mut out).write_all(text)?;
        let _ = self.syslog.socket.send(&out);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogEvent;

    fn make_writer(&'a self) -> SyslogEvent {
        self.event(6)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogEvent {
        let severity = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        self.event(severity)
    }
}

impl Syslog {
    fn event(&self, severity: u8) -> SyslogEvent {
        SyslogEvent {
            syslog: self.clone(),
            severity,
        }
    }
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
    fn syslog_gets_one_datagram_per_event_with_facility_mail_and_its_severity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::connect(&path).unwrap();
        let mut warn = syslog.event(4);
        warn.write_all(b"WARN closing connection: bad\nframe\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        let want = format!(
            "<20>repmilter[{}]: WARN closing connection: bad\\nframe",
            std::process::id()
        );
        assert_eq!(got, want);
    }

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
