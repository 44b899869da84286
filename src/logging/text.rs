//! The text log line (`[log] format = "text"`), laid out and escaped as tracing-subscriber's
//! default format writes it with colours off:
//!
//! `2026-12-02T11:20:00.123456Z  INFO repmilter::session: message scored queue_id="Q" ...`
//!
//! The daemon writes one such line per message. tracing-subscriber's own formatter spent
//! 17.5K instructions on it (5% of a message with no rules): most in the styles it paints
//! around every field name and `=` through nested `write!`s even with colours off, and in the
//! calendar arithmetic of every timestamp. This one writes the same bytes without either (the
//! date and time to the second are worked out once a second); a test holds the two formatters
//! to the same lines, so log readers and the tests that read logs see no change.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats an event as one text line: timestamp, level, spans, target, fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextLine {
    /// No timestamp (as tracing-subscriber's `without_time()`): for tests.
    pub without_time: bool,
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A record from the `log` crate carries its real target and level in fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if !self.without_time {
            write_timestamp(&mut w, SystemTime::now())?;
            w.write_char(' ')?;
        }
        w.write_str(level_name(meta.level()))?;
        w.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            let mut any = false;
            for span in scope.from_root() {
                any = true;
                w.write_str(span.metadata().name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(w, "{{{fields}}}")?;
                }
                w.write_char(':')?;
            }
            if any {
                w.write_char(' ')?;
            }
        }
        w.write_str(meta.target())?;
        w.write_str(": ")?;
        ctx.format_fields(w.by_ref(), event)?;
        w.write_char('\n')
    }
}

/// Levels as tracing-subscriber writes them: five columns, right-aligned.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        _ => "ERROR",
    }
}

thread_local! {
    /// The second last written, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
}

/// RFC 3339 in UTC with microseconds: `2026-12-02T11:20:00.123456Z`.
pub fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let (secs, micros) = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => (-(d.as_secs() as i64), 0),
                n => (-(d.as_secs() as i64) - 1, (1_000_000_000 - n) / 1_000),
            }
        }
    };
    let (last, text) = SECOND.get();
    let text = if last == secs {
        text
    } else {
        match civil(secs) {
            Some(text) => {
                SECOND.set((secs, text));
                text
            }
            None => return write_far_timestamp(w, secs, micros),
        }
    };
    // Nothing but ASCII digits and separators was written into it.
    w.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)?;
    let mut digits = *b".000000Z";
    let mut n = micros;
    for d in digits[1..7].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// The date and time of `secs` since the epoch, for years 0 to 9999.
fn civil(secs: i64) -> Option<[u8; 19]> {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_date(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00";
    let put = |out: &mut [u8; 19], at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(&mut out, 0, 4, year);
    put(&mut out, 5, 2, month);
    put(&mut out, 8, 2, day);
    put(&mut out, 11, 2, rem / 3600);
    put(&mut out, 14, 2, rem / 60 % 60);
    put(&mut out, 17, 2, rem % 60);
    Some(out)
}

/// A year outside 0-9999, as tracing-subscriber writes it (`+10000-...`, `-0001-...`).
fn write_far_timestamp(w: &mut impl fmt::Write, secs: i64, micros: u32) -> fmt::Result {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_date(days);
    if year > 9999 {
        write!(w, "+{year}")?;
    } else {
        write!(w, "{year:05}")?;
    }
    write!(
        w,
        "-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats an event's or a span's fields: `message` as written, the others as `name=value`
/// with the value's `Debug` form (strings quoted and escaped), separated by spaces.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Fields {
            w: writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Fields<'w> {
    w: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    fn write(&mut self, name: &str, value: &dyn fmt::Debug) -> fmt::Result {
        if !self.first {
            self.w.write_char(' ')?;
        }
        self.first = false;
        if name == "message" {
            // A message can hold a peer's words (an error's text): terminal escapes in it
            // are written out as text, as tracing-subscriber does.
            return write!(Sanitizing(&mut self.w), "{value:?}");
        }
        self.w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.w.write_char('=')?;
        write!(self.w, "{value:?}")
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match value.source() {
            Some(source) => self.record_debug(
                field,
                &format_args!(
                    "{} {}.sources={}",
                    Sanitized(value),
                    field.name(),
                    SourceList(source)
                ),
            ),
            None => self.record_debug(field, &format_args!("{}", Sanitized(value))),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `log.*` fields are a `log` record's metadata, written as the target already.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self.write(field.name(), value);
    }
}

/// An error's sources, `[first, second]`.
struct SourceList<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(e) = next {
            list.entry(&format_args!("{}", Sanitized(e)));
            next = e.source();
        }
        list.finish()
    }
}

/// A value's `Display` with terminal escapes written out as text.
struct Sanitized<T>(T);

impl<T: fmt::Display> fmt::Display for Sanitized<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Sanitizing(f), "{}", self.0)
    }
}

/// Writes ESC, BEL, BS, FF, DEL and the C1 controls (U+0080-U+009F) as `\x1b` or `\u{9b}`:
/// what tracing-subscriber escapes in messages. Other control characters are left to the
/// `Escaping` writer behind the formatter.
struct Sanitizing<W: fmt::Write>(W);

impl<W: fmt::Write> fmt::Write for Sanitizing<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let plain = !s
            .bytes()
            .any(|b| matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2));
        if plain {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                    write!(self.0, "\\x{:02x}", c as u32)?
                }
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A string written as its `Debug` form (quoted, escaped), without the character-by-character
/// escape when it is printable ASCII with no quote or backslash, as a log line's envelope
/// fields nearly always are.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = self
            .0
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if plain {
            f.write_char('"')?;
            f.write_str(self.0)?;
            f.write_char('"')
        } else {
            fmt::Debug::fmt(self.0, f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A writer the tests read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading frame: \x1b[31mbad")
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("length 9\u{9b}")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl std::error::Error for Inner {}

    /// Every kind of event the daemon and its crates log.
    fn events() {
        let from = "spam@example.com".to_string();
        let queue_id = "4Zq\"x\\y\u{e9}";
        tracing::info!(
            queue_id = ?Quoted(queue_id),
            client = %"192.0.2.1",
            from = ?Quoted(&from),
            plain = ?"a\tb",
            rcpts = 3usize,
            size = 10_240u64,
            delta = -4i64,
            spam = true,
            ratio = 0.25f64,
            score = format_args!("{:.1}", 5.04),
            symbols = %"A(1.0),B(-0.5)",
            "message scored"
        );
        tracing::warn!("closing connection: {}", "bad\x07frame \u{85}\x1b[2J");
        tracing::error!(
            error = &Outer(Inner) as &(dyn std::error::Error + 'static),
            "hub"
        );
        tracing::error!(
            error = &Inner as &(dyn std::error::Error + 'static),
            "alone"
        );
        tracing::info!(r#type = "ham", "raw name");
        tracing::info!(target: "hub::feedback", count = 2, "no message field first");
        tracing::info!(count = 2);
        let span = tracing::info_span!("session", peer = %"unix", n = 7);
        let _in = span.enter();
        let inner = tracing::info_span!("eom");
        let _in2 = inner.enter();
        tracing::info!(bytes = 5, "inside spans");
        tracing::info!(ids = ?[1, 2], "debug of a slice");
        // A record of the `log` crate, as rustls or redis write them.
        tracing_log::format_trace(
            &tracing_log::log::Record::builder()
                .args(format_args!("handshake {}", "done"))
                .level(tracing_log::log::Level::Warn)
                .target("rustls::client")
                .module_path_static(Some("rustls::client::hs"))
                .file_static(Some("hs.rs"))
                .line(Some(12))
                .build(),
        )
        .unwrap();
    }

    fn lines_of(dispatch: tracing::Dispatch, buffer: &Buffer) -> String {
        tracing::dispatcher::with_default(&dispatch, events);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_are_those_tracing_subscriber_writes() {
        let theirs = Buffer::default();
        let reference = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(theirs.clone())
            .finish();
        let ours = Buffer::default();
        let line = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .event_format(TextLine { without_time: true })
            .fmt_fields(TextFields)
            .with_writer(ours.clone())
            .finish();
        let want = lines_of(tracing::Dispatch::new(reference), &theirs);
        let got = lines_of(tracing::Dispatch::new(line), &ours);
        assert_eq!(got.lines().count(), 10, "{got}");
        // What each case is there for reached the reference output.
        for seen in [
            "queue_id=\"4Zq\\\"x\\\\y\u{e9}\"",
            "from=\"spam@example.com\"",
            "bad\\x07frame \\u{85}\\x1b[2J",
            "error.sources=[length 9\\u{9b}]",
            "session{peer=unix n=7}:eom: repmilter",
            ": rustls::client: handshake done",
            "type=\"ham\"",
        ] {
            assert!(want.contains(seen), "{seen} not in {want}");
        }
        assert_eq!(got, want);
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc_with_microseconds() {
        let at = |secs: i64, micros: u32| {
            let t = if secs >= 0 {
                UNIX_EPOCH + Duration::new(secs as u64, micros * 1000)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                    + Duration::from_micros(micros.into())
            };
            let mut s = String::new();
            write_timestamp(&mut s, t).unwrap();
            s
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
        // Twice in one second: the cached date and time, new microseconds.
        assert_eq!(at(951_868_799, 123_456), "2000-02-29T23:59:59.123456Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(68_256_000, 0), "1972-03-01T00:00:00.000000Z");
        assert_eq!(at(1_796_169_599, 500_000), "2026-12-01T23:59:59.500000Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
        assert_eq!(at(253_402_300_800, 1), "+10000-01-01T00:00:00.000001Z");
        assert_eq!(at(-1, 0), "1969-12-31T23:59:59.000000Z");
        assert_eq!(at(-1, 250_000), "1969-12-31T23:59:59.250000Z");
    }

    #[test]
    fn the_timestamp_now_is_the_one_tracing_subscriber_writes() {
        use tracing_subscriber::fmt::time::FormatTime;
        // Taken in the same second (tried again across a second's turn).
        for _ in 0..10 {
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            let mut ours = String::new();
            write_timestamp(&mut ours, SystemTime::now()).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
            if ours[..19] == theirs[..19] {
                assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.');
                return;
            }
        }
        panic!("ten seconds turned over between two clock reads");
    }

    #[test]
    fn quoted_strings_are_their_debug_form() {
        for s in [
            "",
            "a@b",
            "a\"b",
            "back\\slash",
            "tab\t",
            "\u{e9}t\u{e9}",
            "\u{301}x",
            "~ !",
        ] {
            assert_eq!(format!("{:?}", Quoted(s)), format!("{s:?}"));
        }
    }
}
