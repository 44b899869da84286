//! The milter wire format: length-prefixed frames to and from typed commands and replies.
//!
//! Pure: bytes in, values out, no I/O. Framing ([`parse_frame`]) is kept apart from meaning
//! ([`Command::parse`], [`Reply::parse`]) so that "wait for more bytes" and "this peer is
//! talking nonsense" are different outcomes. Both directions are implemented, the filter side
//! (parse commands, encode replies) for the daemon and the MTA side (encode commands, parse
//! replies) for the in-crate client used by tests and benches.

use std::net::IpAddr;

mod command;
mod reply;

pub use command::Command;
pub use reply::{Reply, smtp_reply};

/// Largest frame accepted from a peer, checked before anything is allocated.
///
/// 1 MiB, as libmilter-style libraries use: a body chunk is at most 64 KiB and Postfix cuts a
/// header at `header_size_limit` (100 KiB), so real traffic stays far below it, while a probe or
/// an HTTP client connecting to the port produces "lengths" of hundreds of megabytes.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Largest body chunk an MTA sends (MILTER_CHUNK_SIZE in libmilter and Postfix).
pub const MAX_BODY_CHUNK: usize = 65535;

/// The four-byte big-endian length that starts every frame.
pub const LEN_PREFIX: usize = 4;

/// Most macros one MACRO frame may carry. Postfix and Sendmail send a handful per stage;
/// a frame of a quarter of a million tiny pairs would cost ~18 MB to hold as strings.
pub const MAX_MACROS_PER_FRAME: usize = 128;

/// Most ESMTP parameters after MAIL FROM or RCPT TO. An SMTP command line is at most 512
/// bytes (Postfix accepts 2048), which leaves room for a few dozen at most.
pub const MAX_ESMTP_ARGS: usize = 64;

/// Command codes a MACRO frame may name as its stage: the commands that carry macros in
/// libmilter and Postfix (connect, helo, mail, rcpt, data, header, end of headers, body, end
/// of message, unknown command). libmilter refuses the others, and so do we.
pub const MACRO_STAGES: [u8; 10] = [
    cmd::CONNECT,
    cmd::HELO,
    cmd::MAIL,
    cmd::RCPT,
    cmd::DATA,
    cmd::HEADER,
    cmd::EOH,
    cmd::BODY,
    cmd::BODYEOB,
    cmd::UNKNOWN,
];

/// Protocol versions the daemon speaks. 2 is the oldest Postfix and Sendmail 8.13 still use;
/// 6 is what both use today.
pub const SUPPORTED_VERSIONS: [u32; 2] = [2, 6];

/// Command codes, MTA to filter (libmilter's mfdef.h `SMFIC_*`).
pub mod cmd {
    pub const OPTNEG: u8 = b'O';
    pub const MACRO: u8 = b'D';
    pub const CONNECT: u8 = b'C';
    pub const HELO: u8 = b'H';
    pub const MAIL: u8 = b'M';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
    pub const HEADER: u8 = b'L';
    pub const EOH: u8 = b'N';
    pub const BODY: u8 = b'B';
    pub const BODYEOB: u8 = b'E';
    pub const ABORT: u8 = b'A';
    pub const QUIT: u8 = b'Q';
    pub const QUIT_NC: u8 = b'K';
    pub const UNKNOWN: u8 = b'U';
}

/// Reply codes, filter to MTA (`SMFIR_*`).
pub mod rep {
    pub const OPTNEG: u8 = b'O';
    pub const CONTINUE: u8 = b'c';
    pub const ACCEPT: u8 = b'a';
    pub const REJECT: u8 = b'r';
    pub const TEMPFAIL: u8 = b't';
    pub const DISCARD: u8 = b'd';
    pub const REPLYCODE: u8 = b'y';
    pub const QUARANTINE: u8 = b'q';
    pub const PROGRESS: u8 = b'p';
    pub const SKIP: u8 = b's';
    pub const ADDHEADER: u8 = b'h';
    pub const INSHEADER: u8 = b'i';
    pub const CHGHEADER: u8 = b'm';
    pub const CHGFROM: u8 = b'e';
    pub const ADDRCPT: u8 = b'+';
    pub const ADDRCPT_PAR: u8 = b'2';
    pub const DELRCPT: u8 = b'-';
    pub const REPLBODY: u8 = b'b';
    pub const CONN_FAIL: u8 = b'f';
    pub const SHUTDOWN: u8 = b'4';
}

/// Action flags (`SMFIF_*`): the modifications a filter may make.
pub mod action {
    pub const ADDHDRS: u32 = 0x01;
    pub const CHGBODY: u32 = 0x02;
    pub const ADDRCPT: u32 = 0x04;
    pub const DELRCPT: u32 = 0x08;
    pub const CHGHDRS: u32 = 0x10;
    pub const QUARANTINE: u32 = 0x20;
    pub const CHGFROM: u32 = 0x40;
    pub const ADDRCPT_PAR: u32 = 0x80;
    pub const SETSYMLIST: u32 = 0x100;
}

/// Protocol flags (`SMFIP_*`): steps the MTA should not send, or not wait for a reply to.
pub mod proto {
    pub const NOCONNECT: u32 = 0x01;
    pub const NOHELO: u32 = 0x02;
    pub const NOMAIL: u32 = 0x04;
    pub const NORCPT: u32 = 0x08;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NODATA: u32 = 0x200;
    pub const SKIP: u32 = 0x400;
    pub const RCPT_REJ: u32 = 0x800;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_UNKN: u32 = 0x20000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
    pub const HDR_LEADSPC: u32 = 0x100000;
}

/// The stages a filter can ask macros for in its negotiation reply (`SMFIM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MacroStage {
    Connect = 0,
    Helo = 1,
    Mail = 2,
    Rcpt = 3,
    Data = 4,
    Eom = 5,
    Eoh = 6,
}

impl MacroStage {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Connect,
            1 => Self::Helo,
            2 => Self::Mail,
            3 => Self::Rcpt,
            4 => Self::Data,
            5 => Self::Eom,
            6 => Self::Eoh,
            _ => return None,
        })
    }
}

/// A frame whose length prefix has been checked: one command byte and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub code: u8,
    pub data: &'a [u8],
}

/// Why a byte stream is not a sequence of frames. Any of these ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} exceeds the limit of {max} bytes", max = MAX_FRAME_LEN)]
    TooLong { len: u32 },
    #[error("frame length 0: a frame needs at least a command byte")]
    Empty,
}

/// The whole length (prefix included) of the frame that starts `buf`, once its prefix is in
/// and within the limit; for sizing a read buffer before the frame is complete.
pub fn pending_frame_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; LEN_PREFIX] = buf.get(..LEN_PREFIX)?.try_into().ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    (len <= MAX_FRAME_LEN).then_some(LEN_PREFIX + len)
}

/// Splits the first frame off `buf`.
///
/// `Ok(None)` means the frame is not complete yet: read more and call again. On success the
/// second value is how many bytes of `buf` the frame used.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len as usize > MAX_FRAME_LEN {
        return Err(FrameError::TooLong { len });
    }
    let end = LEN_PREFIX + len as usize;
    let Some(body) = buf.get(LEN_PREFIX..end) else {
        return Ok(None);
    };
    Ok(Some((
        Frame {
            code: body[0],
            data: &body[1..],
        },
        end,
    )))
}

/// Appends one frame to `out`.
///
/// Callers build payloads from bounded values (body chunks are split at [`MAX_BODY_CHUNK`]),
/// so a payload that does not fit the 32-bit length is a bug, not input.
pub fn write_frame(code: u8, data: &[u8], out: &mut Vec<u8>) {
    out.reserve(LEN_PREFIX + 1 + data.len());
    let start = open_frame(code, out);
    out.extend_from_slice(data);
    close_frame(start, out);
}

/// Starts a frame in `out`, its length left to [`close_frame`], and returns where it starts:
/// the encoders write a payload straight into the output, not into a buffer of its own first.
fn open_frame(code: u8, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.push(code);
    start
}

/// Writes the length of the frame begun at `start`, which runs to the end of `out`.
fn close_frame(start: usize, out: &mut [u8]) {
    let len =
        u32::try_from(out.len() - start - LEN_PREFIX).expect("milter frame payload fits in u32");
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// Why a frame's payload does not make a valid command or reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("unknown command code {0:#04x}")]
    UnknownCommand(u8),
    #[error("unknown reply code {0:#04x}")]
    UnknownReply(u8),
    #[error("{what} frame: {problem}")]
    Malformed {
        what: &'static str,
        problem: &'static str,
    },
    #[error("MACRO frame for unknown stage {0:#04x}")]
    MacroStage(u8),
    #[error("{what} frame: more than {max} {items}")]
    TooMany {
        what: &'static str,
        items: &'static str,
        max: usize,
    },
}

fn malformed(what: &'static str, problem: &'static str) -> PayloadError {
    PayloadError::Malformed { what, problem }
}

/// Address family of a CONNECT command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectAddr {
    /// The MTA does not know (`U`), as for mail submitted with sendmail(1) in some setups.
    Unknown,
    /// A Unix-domain socket (`L`) and its path.
    Unix(String),
    /// An IPv4 or IPv6 client (`4` or `6`) with its port.
    Inet { ip: IpAddr, port: u16 },
}

/// The negotiation values: what the MTA offers, or what the filter takes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Optneg {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
}

/// Reads NUL-terminated strings and big-endian integers off a payload.
struct Fields<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, what }
    }

    fn bytes(&mut self) -> Result<&'a [u8], PayloadError> {
        let Some(nul) = memchr::memchr(0, self.data) else {
            return Err(malformed(self.what, "string is not NUL-terminated"));
        };
        let s = &self.data[..nul];
        self.data = &self.data[nul + 1..];
        Ok(s)
    }

    /// Protocol strings are bytes; non-UTF-8 is replaced rather than refused, since a sender's
    /// HELO or address in 8-bit garbage is the sender's problem, not a reason to drop the session.
    fn string(&mut self) -> Result<String, PayloadError> {
        // Valid text checked a word at a time first; the lossy conversion reads byte by byte.
        self.bytes().map(|b| match std::str::from_utf8(b) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        })
    }

    fn u32(&mut self) -> Result<u32, PayloadError> {
        let Some((head, rest)) = self.data.split_first_chunk::<4>() else {
            return Err(malformed(self.what, "truncated 32-bit field"));
        };
        self.data = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn u16(&mut self) -> Result<u16, PayloadError> {
        let Some((head, rest)) = self.data.split_first_chunk::<2>() else {
            return Err(malformed(self.what, "truncated 16-bit field"));
        };
        self.data = rest;
        Ok(u16::from_be_bytes(*head))
    }

    fn byte(&mut self) -> Result<u8, PayloadError> {
        let Some((&b, rest)) = self.data.split_first() else {
            return Err(malformed(self.what, "missing byte"));
        };
        self.data = rest;
        Ok(b)
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn end(&self) -> Result<(), PayloadError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(malformed(self.what, "trailing bytes after the last field"))
        }
    }

    /// The remaining NUL-terminated strings, as the ESMTP parameters of MAIL and RCPT.
    fn strings(&mut self) -> Result<Vec<String>, PayloadError> {
        let mut v = Vec::new();
        while !self.is_empty() {
            if v.len() == MAX_ESMTP_ARGS {
                return Err(PayloadError::TooMany {
                    what: self.what,
                    items: "ESMTP parameters",
                    max: MAX_ESMTP_ARGS,
                });
            }
            v.push(self.string()?);
        }
        Ok(v)
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

fn parse_ip(family: u8, s: &str) -> Option<IpAddr> {
    let s = if family == b'6' {
        // Sendmail writes "IPv6:2001:db8::1"; Postfix writes the bare address.
        s.strip_prefix("IPv6:").unwrap_or(s)
    } else {
        s
    };
    // Sendmail on a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(code: u8, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_frame(code, data, &mut v);
        v
    }

    fn all_commands() -> Vec<Command> {
        vec![
            Command::Optneg(Optneg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff,
            }),
            Command::Macro {
                stage: cmd::CONNECT,
                pairs: vec![
                    ("j".into(), "mx.example.org".into()),
                    ("{daemon_name}".into(), "smtpd".into()),
                ],
            },
            Command::Connect {
                hostname: "client.example".into(),
                addr: ConnectAddr::Inet {
                    ip: "192.0.2.7".parse().unwrap(),
                    port: 25000,
                },
            },
            Command::Connect {
                hostname: "[2001:db8::1]".into(),
                addr: ConnectAddr::Inet {
                    ip: "2001:db8::1".parse().unwrap(),
                    port: 2525,
                },
            },
            Command::Connect {
                hostname: "localhost".into(),
                addr: ConnectAddr::Unix("/run/client.sock".into()),
            },
            Command::Connect {
                hostname: "unknown".into(),
                addr: ConnectAddr::Unknown,
            },
            Command::Helo("client.example".into()),
            Command::Mail {
                sender: "<a@example.org>".into(),
                args: vec!["SIZE=1000".into(), "BODY=8BITMIME".into()],
            },
            Command::Mail {
                sender: "<>".into(),
                args: vec![],
            },
            Command::Rcpt {
                recipient: "<b@example.net>".into(),
                args: vec!["NOTIFY=NEVER".into()],
            },
            Command::Data,
            Command::Header {
                name: "Subject".into(),
                value: b"hello\n\tworld \xff".to_vec(),
            },
            Command::Eoh,
            Command::Body(b"line one\r\nline two\r\n".to_vec()),
            Command::EndOfBody(vec![]),
            Command::EndOfBody(b"tail".to_vec()),
            Command::Abort,
            Command::Quit,
            Command::QuitNc,
            Command::Unknown("XFOO bar".into()),
        ]
    }

    fn all_replies() -> Vec<Reply> {
        vec![
            Reply::Optneg {
                negotiated: Optneg {
                    version: 6,
                    actions: action::ADDHDRS | action::CHGHDRS,
                    protocol: proto::NODATA | proto::NR_HDR,
                },
                macros: vec![
                    (MacroStage::Connect, "j {daemon_name}".into()),
                    (MacroStage::Eom, "i".into()),
                ],
            },
            Reply::Continue,
            Reply::Accept,
            Reply::Reject,
            Reply::Tempfail,
            Reply::Discard,
            Reply::ReplyCode("550 5.7.1 go away".into()),
            Reply::Quarantine("spam score 20".into()),
            Reply::Progress,
            Reply::Skip,
            Reply::AddHeader {
                name: "X-Spam-Flag".into(),
                value: b"YES".to_vec(),
            },
            Reply::InsHeader {
                index: 0,
                name: "X-Spam-Status".into(),
                value: b"No, score=0.0".to_vec(),
            },
            Reply::ChgHeader {
                index: 2,
                name: "X-Spam-Flag".into(),
                value: vec![],
            },
            Reply::ChgFrom {
                sender: "<new@example.org>".into(),
                args: Some("RET=HDRS".into()),
            },
            Reply::ChgFrom {
                sender: "<new@example.org>".into(),
                args: None,
            },
            Reply::AddRcpt("<c@example.net>".into()),
            Reply::AddRcptPar {
                recipient: "<d@example.net>".into(),
                args: "NOTIFY=NEVER".into(),
            },
            Reply::DelRcpt("<b@example.net>".into()),
            Reply::ReplBody(b"new body\r\n".to_vec()),
            Reply::ConnFail,
            Reply::Shutdown,
        ]
    }

    #[test]
    fn every_command_round_trips() {
        for c in all_commands() {
            let mut buf = Vec::new();
            c.encode(&mut buf);
            let (frame, used) = parse_frame(&buf).unwrap().unwrap();
            assert_eq!(used, buf.len(), "{c:?}");
            assert_eq!(Command::parse(frame).unwrap(), c);
        }
    }

    #[test]
    fn every_reply_round_trips() {
        for r in all_replies() {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            let (frame, used) = parse_frame(&buf).unwrap().unwrap();
            assert_eq!(used, buf.len(), "{r:?}");
            assert_eq!(Reply::parse(frame).unwrap(), r);
        }
    }

    #[test]
    fn replies_encoded_one_after_another_read_back_in_order() {
        // Each frame is begun and closed in place after the ones already in the buffer.
        let replies = all_replies();
        let mut buf = b"earlier".to_vec();
        for r in replies.iter().chain(replies.iter().rev()) {
            r.encode(&mut buf);
        }
        assert!(buf.starts_with(b"earlier"));
        let mut rest = &buf[b"earlier".len()..];
        let mut read = Vec::new();
        while let Some((frame, used)) = parse_frame(rest).unwrap() {
            read.push(Reply::parse(frame).unwrap());
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        let want: Vec<Reply> = replies
            .iter()
            .chain(replies.iter().rev())
            .cloned()
            .collect();
        assert_eq!(read, want);
    }

    #[test]
    fn frames_split_anywhere_wait_for_more() {
        let mut buf = Vec::new();
        for c in all_commands() {
            c.encode(&mut buf);
        }
        // Every strict prefix of the first frame is incomplete, never an error.
        let (_, first_len) = parse_frame(&buf).unwrap().unwrap();
        for cut in 0..first_len {
            assert_eq!(parse_frame(&buf[..cut]), Ok(None), "cut at {cut}");
        }
        // Walking the stream yields every command in order.
        let mut rest = &buf[..];
        let mut n = 0;
        while let Some((frame, used)) = parse_frame(rest).unwrap() {
            Command::parse(frame).unwrap();
            rest = &rest[used..];
            n += 1;
        }
        assert_eq!(n, all_commands().len());
        assert!(rest.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_payload() {
        let huge = 0x7fff_ffffu32.to_be_bytes();
        assert_eq!(
            parse_frame(&huge),
            Err(FrameError::TooLong { len: 0x7fff_ffff })
        );
        let just_over = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        assert!(matches!(
            parse_frame(&just_over),
            Err(FrameError::TooLong { .. })
        ));
        // An HTTP request on the milter port: "GET " is a length of 1.1 GB.
        assert!(matches!(
            parse_frame(b"GET / HTTP/1.1\r\n"),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(parse_frame(&[0, 0, 0, 0, b'c']), Err(FrameError::Empty));
    }

    #[test]
    fn largest_allowed_frame_is_accepted() {
        let data = vec![b'x'; MAX_FRAME_LEN - 1];
        let buf = frame_of(cmd::BODY, &data);
        let (frame, used) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(frame.data.len(), MAX_FRAME_LEN - 1);
    }

    #[test]
    fn malformed_payloads_name_the_problem() {
        let many_macros: Vec<u8> = std::iter::once(cmd::CONNECT)
            .chain(b"a\0b\0".repeat(MAX_MACROS_PER_FRAME + 1))
            .collect();
        let many_args = b"<a@b>\0"
            .iter()
            .chain(&b"X=1\0".repeat(MAX_ESMTP_ARGS + 1))
            .copied()
            .collect::<Vec<u8>>();
        let cases: &[(u8, &[u8], &str)] = &[
            (
                cmd::OPTNEG,
                &[0, 0, 0, 6, 0, 0],
                "OPTNEG frame: truncated 32-bit field",
            ),
            (
                cmd::HELO,
                b"no-nul",
                "HELO frame: string is not NUL-terminated",
            ),
            (cmd::CONNECT, b"host\0", "CONNECT frame: missing byte"),
            (
                cmd::CONNECT,
                b"host\0X\0\0x\0",
                "CONNECT frame: unknown address family",
            ),
            (
                cmd::CONNECT,
                b"host\x004\x00",
                "CONNECT frame: truncated 16-bit field",
            ),
            (
                cmd::HEADER,
                b"Subject\0",
                "HEADER frame: string is not NUL-terminated",
            ),
            (
                cmd::HELO,
                b"a\0b\0",
                "HELO frame: trailing bytes after the last field",
            ),
            (b'Z', b"", "unknown command code 0x5a"),
            (0, b"", "unknown command code 0x00"),
            (cmd::MACRO, b"Zj\0x\0", "MACRO frame for unknown stage 0x5a"),
            (
                cmd::MACRO,
                &many_macros,
                "MACRO frame: more than 128 macros",
            ),
            (
                cmd::RCPT,
                &many_args,
                "RCPT frame: more than 64 ESMTP parameters",
            ),
        ];
        for (code, data, want) in cases {
            let err = Command::parse(Frame { code: *code, data }).unwrap_err();
            assert_eq!(err.to_string(), *want);
        }
    }

    #[test]
    fn an_unreadable_client_address_is_unknown_not_an_error() {
        let c = Command::parse(Frame {
            code: cmd::CONNECT,
            data: b"host\x004\x00\x19unknown\0",
        })
        .unwrap();
        assert_eq!(
            c,
            Command::Connect {
                hostname: "host".into(),
                addr: ConnectAddr::Unknown
            }
        );
    }

    #[test]
    fn sendmail_ipv6_prefix_is_stripped() {
        let c = Command::parse(Frame {
            code: cmd::CONNECT,
            data: b"[IPv6:2001:db8::5]\x006\x01\x00IPv6:2001:db8::5\0",
        })
        .unwrap();
        assert_eq!(
            c,
            Command::Connect {
                hostname: "[IPv6:2001:db8::5]".into(),
                addr: ConnectAddr::Inet {
                    ip: "2001:db8::5".parse().unwrap(),
                    port: 256
                }
            }
        );
    }

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let c = Command::parse(Frame {
            code: cmd::CONNECT,
            data: b"h\x006\x00\x19IPv6:::ffff:192.0.2.1\0",
        })
        .unwrap();
        assert!(
            matches!(c, Command::Connect { addr: ConnectAddr::Inet { ip, .. }, .. } if ip == "192.0.2.1".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn optneg_with_extra_fields_is_accepted() {
        let mut d = Vec::new();
        for v in [6u32, 0x1ff, 0x3f_ffff, 0xdead] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        let c = Command::parse(Frame {
            code: cmd::OPTNEG,
            data: &d,
        })
        .unwrap();
        assert!(matches!(c, Command::Optneg(Optneg { version: 6, .. })));
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random stream: every outcome must be a value or an error.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            let n = (x % 40) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let code = (x >> 8) as u8;
            let _ = Command::parse(Frame { code, data: &buf });
            let _ = Reply::parse(Frame { code, data: &buf });
            let _ = parse_frame(&buf);
        }
    }

    #[test]
    fn smtp_reply_escapes_percent_and_line_breaks() {
        assert_eq!(
            smtp_reply(550, "5.7.1", "100% spam\r\nbye"),
            "550 5.7.1 100%% spam  bye"
        );
    }
}
