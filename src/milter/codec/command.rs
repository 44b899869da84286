//! Commands, MTA to filter: parsed from frames (the daemon) and encoded (the MTA side).

use super::*;

/// A command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Optneg(Optneg),
    /// Macros for the command whose code is `stage`, sent just before it.
    Macro {
        stage: u8,
        pairs: Vec<(String, String)>,
    },
    Connect {
        hostname: String,
        addr: ConnectAddr,
    },
    Helo(String),
    /// The envelope sender as given (`<a@b>` or `<>`) and its ESMTP parameters.
    Mail {
        sender: String,
        args: Vec<String>,
    },
    Rcpt {
        recipient: String,
        args: Vec<String>,
    },
    Data,
    /// One header; the value is raw bytes as the MTA passed them (8-bit text is common in spam).
    Header {
        name: String,
        value: Vec<u8>,
    },
    Eoh,
    Body(Vec<u8>),
    /// End of message; Sendmail may carry the last body chunk in it.
    EndOfBody(Vec<u8>),
    Abort,
    Quit,
    /// Quit, but the connection will carry a new SMTP session (protocol 6).
    QuitNc,
    Unknown(String),
}

impl Command {
    /// The command byte, for logs and the protocol state machine.
    pub fn code(&self) -> u8 {
        match self {
            Command::Optneg(_) => cmd::OPTNEG,
            Command::Macro { .. } => cmd::MACRO,
            Command::Connect { .. } => cmd::CONNECT,
            Command::Helo(_) => cmd::HELO,
            Command::Mail { .. } => cmd::MAIL,
            Command::Rcpt { .. } => cmd::RCPT,
            Command::Data => cmd::DATA,
            Command::Header { .. } => cmd::HEADER,
            Command::Eoh => cmd::EOH,
            Command::Body(_) => cmd::BODY,
            Command::EndOfBody(_) => cmd::BODYEOB,
            Command::Abort => cmd::ABORT,
            Command::Quit => cmd::QUIT,
            Command::QuitNc => cmd::QUIT_NC,
            Command::Unknown(_) => cmd::UNKNOWN,
        }
    }

    /// A short name for log lines.
    pub fn name(&self) -> &'static str {
        command_name(self.code())
    }

    /// Parses the payload of a frame sent by the MTA.
    pub fn parse(frame: Frame<'_>) -> Result<Command, PayloadError> {
        let what = command_name(frame.code);
        let mut f = Fields::new(frame.data, what);
        let command = match frame.code {
            cmd::OPTNEG => {
                // Newer MTAs may append fields; only the first three are defined.
                let version = f.u32()?;
                let actions = f.u32()?;
                let protocol = f.u32()?;
                return Ok(Command::Optneg(Optneg {
                    version,
                    actions,
                    protocol,
                }));
            }
            cmd::MACRO => {
                let stage = f.byte()?;
                if !MACRO_STAGES.contains(&stage) {
                    return Err(PayloadError::MacroStage(stage));
                }
                let mut pairs = Vec::new();
                while !f.is_empty() {
                    if pairs.len() == MAX_MACROS_PER_FRAME {
                        return Err(PayloadError::TooMany {
                            what,
                            items: "macros",
                            max: MAX_MACROS_PER_FRAME,
                        });
                    }
                    let name = f.string()?;
                    // A trailing name without its value is tolerated: a macro is a hint, not
                    // worth ending the session over.
                    let value = if f.is_empty() {
                        String::new()
                    } else {
                        f.string()?
                    };
                    pairs.push((name, value));
                }
                Command::Macro { stage, pairs }
            }
            cmd::CONNECT => {
                let hostname = f.string()?;
                let family = f.byte()?;
                let addr = match family {
                    b'U' => {
                        // Nothing follows for an unknown family, but tolerate a stray port.
                        return Ok(Command::Connect {
                            hostname,
                            addr: ConnectAddr::Unknown,
                        });
                    }
                    b'L' => {
                        let _port = f.u16()?;
                        ConnectAddr::Unix(f.string()?)
                    }
                    b'4' | b'6' => {
                        let port = f.u16()?;
                        let text = f.string()?;
                        // An address the MTA could not render ("unknown") is not worth
                        // closing the session over: that would defer the client's mail.
                        match parse_ip(family, &text) {
                            Some(ip) => ConnectAddr::Inet { ip, port },
                            None => ConnectAddr::Unknown,
                        }
                    }
                    _ => return Err(malformed(what, "unknown address family")),
                };
                Command::Connect { hostname, addr }
            }
            cmd::HELO => Command::Helo(f.string()?),
            cmd::MAIL | cmd::RCPT => {
                let first = f.string()?;
                let args = f.strings()?;
                if frame.code == cmd::MAIL {
                    Command::Mail {
                        sender: first,
                        args,
                    }
                } else {
                    Command::Rcpt {
                        recipient: first,
                        args,
                    }
                }
            }
            cmd::DATA => Command::Data,
            cmd::HEADER => {
                let name = f.string()?;
                let value = f.bytes()?.to_vec();
                Command::Header { name, value }
            }
            cmd::EOH => Command::Eoh,
            cmd::BODY => return Ok(Command::Body(frame.data.to_vec())),
            cmd::BODYEOB => return Ok(Command::EndOfBody(frame.data.to_vec())),
            cmd::ABORT => Command::Abort,
            cmd::QUIT => Command::Quit,
            cmd::QUIT_NC => Command::QuitNc,
            cmd::UNKNOWN => Command::Unknown(f.string()?),
            other => return Err(PayloadError::UnknownCommand(other)),
        };
        f.end()?;
        Ok(command)
    }

    /// Appends this command as a frame (the MTA side).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = open_frame(self.code(), out);
        let d = &mut *out;
        match self {
            Command::Optneg(o) => {
                d.extend_from_slice(&o.version.to_be_bytes());
                d.extend_from_slice(&o.actions.to_be_bytes());
                d.extend_from_slice(&o.protocol.to_be_bytes());
            }
            Command::Macro { stage, pairs } => {
                d.push(*stage);
                for (k, v) in pairs {
                    put_str(d, k.as_bytes());
                    put_str(d, v.as_bytes());
                }
            }
            Command::Connect { hostname, addr } => {
                put_str(d, hostname.as_bytes());
                match addr {
                    ConnectAddr::Unknown => d.push(b'U'),
                    ConnectAddr::Unix(path) => {
                        d.push(b'L');
                        d.extend_from_slice(&0u16.to_be_bytes());
                        put_str(d, path.as_bytes());
                    }
                    ConnectAddr::Inet { ip, port } => {
                        d.push(if ip.is_ipv4() { b'4' } else { b'6' });
                        d.extend_from_slice(&port.to_be_bytes());
                        put_str(d, ip.to_string().as_bytes());
                    }
                }
            }
            Command::Helo(s) | Command::Unknown(s) => put_str(d, s.as_bytes()),
            Command::Mail { sender: a, args } | Command::Rcpt { recipient: a, args } => {
                put_str(d, a.as_bytes());
                for arg in args {
                    put_str(d, arg.as_bytes());
                }
            }
            Command::Header { name, value } => {
                put_str(d, name.as_bytes());
                put_str(d, value);
            }
            Command::Body(b) | Command::EndOfBody(b) => d.extend_from_slice(b),
            Command::Data | Command::Eoh | Command::Abort | Command::Quit | Command::QuitNc => {}
        }
        close_frame(start, out);
    }
}

fn command_name(code: u8) -> &'static str {
    match code {
        cmd::OPTNEG => "OPTNEG",
        cmd::MACRO => "MACRO",
        cmd::CONNECT => "CONNECT",
        cmd::HELO => "HELO",
        cmd::MAIL => "MAIL",
        cmd::RCPT => "RCPT",
        cmd::DATA => "DATA",
        cmd::HEADER => "HEADER",
        cmd::EOH => "EOH",
        cmd::BODY => "BODY",
        cmd::BODYEOB => "BODYEOB",
        cmd::ABORT => "ABORT",
        cmd::QUIT => "QUIT",
        cmd::QUIT_NC => "QUIT_NC",
        cmd::UNKNOWN => "UNKNOWN",
        _ => "unknown command",
    }
}
