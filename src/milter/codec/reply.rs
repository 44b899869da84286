//! Replies and modifications, filter to MTA: encoded (the daemon) and parsed (the MTA side).

use super::*;

/// A reply or modification from the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Negotiation answer, with the macros the filter asks for at each stage.
    Optneg {
        negotiated: Optneg,
        macros: Vec<(MacroStage, String)>,
    },
    Continue,
    Accept,
    Reject,
    Tempfail,
    Discard,
    /// A complete SMTP reply, for instance `550 5.7.1 Message rejected as spam`.
    ReplyCode(String),
    Quarantine(String),
    Progress,
    Skip,
    AddHeader {
        name: String,
        value: Vec<u8>,
    },
    InsHeader {
        index: u32,
        name: String,
        value: Vec<u8>,
    },
    /// Changes occurrence `index` (from 1) of the header `name`; an empty value deletes it.
    ChgHeader {
        index: u32,
        name: String,
        value: Vec<u8>,
    },
    ChgFrom {
        sender: String,
        args: Option<String>,
    },
    AddRcpt(String),
    AddRcptPar {
        recipient: String,
        args: String,
    },
    DelRcpt(String),
    ReplBody(Vec<u8>),
    ConnFail,
    Shutdown,
}

impl Reply {
    pub fn code(&self) -> u8 {
        match self {
            Reply::Optneg { .. } => rep::OPTNEG,
            Reply::Continue => rep::CONTINUE,
            Reply::Accept => rep::ACCEPT,
            Reply::Reject => rep::REJECT,
            Reply::Tempfail => rep::TEMPFAIL,
            Reply::Discard => rep::DISCARD,
            Reply::ReplyCode(_) => rep::REPLYCODE,
            Reply::Quarantine(_) => rep::QUARANTINE,
            Reply::Progress => rep::PROGRESS,
            Reply::Skip => rep::SKIP,
            Reply::AddHeader { .. } => rep::ADDHEADER,
            Reply::InsHeader { .. } => rep::INSHEADER,
            Reply::ChgHeader { .. } => rep::CHGHEADER,
            Reply::ChgFrom { .. } => rep::CHGFROM,
            Reply::AddRcpt(_) => rep::ADDRCPT,
            Reply::AddRcptPar { .. } => rep::ADDRCPT_PAR,
            Reply::DelRcpt(_) => rep::DELRCPT,
            Reply::ReplBody(_) => rep::REPLBODY,
            Reply::ConnFail => rep::CONN_FAIL,
            Reply::Shutdown => rep::SHUTDOWN,
        }
    }

    /// True for the replies that end the MTA's wait at a step (as opposed to modifications and
    /// progress notes, which may precede one at end of message).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Reply::AddHeader { .. }
                | Reply::InsHeader { .. }
                | Reply::ChgHeader { .. }
                | Reply::ChgFrom { .. }
                | Reply::AddRcpt(_)
                | Reply::AddRcptPar { .. }
                | Reply::DelRcpt(_)
                | Reply::ReplBody(_)
                | Reply::Quarantine(_)
                | Reply::Progress
        )
    }

    /// Appends this reply as a frame (the filter side).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = open_frame(self.code(), out);
        let d = &mut *out;
        match self {
            Reply::Optneg { negotiated, macros } => {
                d.extend_from_slice(&negotiated.version.to_be_bytes());
                d.extend_from_slice(&negotiated.actions.to_be_bytes());
                d.extend_from_slice(&negotiated.protocol.to_be_bytes());
                for (stage, names) in macros {
                    d.extend_from_slice(&(*stage as u32).to_be_bytes());
                    put_str(d, names.as_bytes());
                }
            }
            Reply::ReplyCode(s) | Reply::Quarantine(s) | Reply::AddRcpt(s) | Reply::DelRcpt(s) => {
                put_str(d, s.as_bytes())
            }
            Reply::AddHeader { name, value } => {
                put_str(d, name.as_bytes());
                put_str(d, value);
            }
            Reply::InsHeader { index, name, value } | Reply::ChgHeader { index, name, value } => {
                d.extend_from_slice(&index.to_be_bytes());
                put_str(d, name.as_bytes());
                put_str(d, value);
            }
            Reply::ChgFrom { sender, args } => {
                put_str(d, sender.as_bytes());
                if let Some(a) = args {
                    put_str(d, a.as_bytes());
                }
            }
            Reply::AddRcptPar { recipient, args } => {
                put_str(d, recipient.as_bytes());
                put_str(d, args.as_bytes());
            }
            Reply::ReplBody(b) => d.extend_from_slice(b),
            Reply::Continue
            | Reply::Accept
            | Reply::Reject
            | Reply::Tempfail
            | Reply::Discard
            | Reply::Progress
            | Reply::Skip
            | Reply::ConnFail
            | Reply::Shutdown => {}
        }
        close_frame(start, out);
    }

    /// Parses a frame sent by a filter (the MTA side).
    pub fn parse(frame: Frame<'_>) -> Result<Reply, PayloadError> {
        let what = "reply";
        let mut f = Fields::new(frame.data, what);
        let reply = match frame.code {
            rep::OPTNEG => {
                let negotiated = Optneg {
                    version: f.u32()?,
                    actions: f.u32()?,
                    protocol: f.u32()?,
                };
                let mut macros = Vec::new();
                while !f.is_empty() {
                    let stage = MacroStage::from_u32(f.u32()?)
                        .ok_or_else(|| malformed(what, "unknown macro stage"))?;
                    macros.push((stage, f.string()?));
                }
                Reply::Optneg { negotiated, macros }
            }
            rep::CONTINUE => Reply::Continue,
            rep::ACCEPT => Reply::Accept,
            rep::REJECT => Reply::Reject,
            rep::TEMPFAIL => Reply::Tempfail,
            rep::DISCARD => Reply::Discard,
            rep::PROGRESS => Reply::Progress,
            rep::SKIP => Reply::Skip,
            rep::CONN_FAIL => Reply::ConnFail,
            rep::SHUTDOWN => Reply::Shutdown,
            rep::REPLYCODE => Reply::ReplyCode(f.string()?),
            rep::QUARANTINE => Reply::Quarantine(f.string()?),
            rep::ADDRCPT => Reply::AddRcpt(f.string()?),
            rep::DELRCPT => Reply::DelRcpt(f.string()?),
            rep::ADDHEADER => Reply::AddHeader {
                name: f.string()?,
                value: f.bytes()?.to_vec(),
            },
            rep::INSHEADER | rep::CHGHEADER => {
                let index = f.u32()?;
                let name = f.string()?;
                let value = f.bytes()?.to_vec();
                if frame.code == rep::INSHEADER {
                    Reply::InsHeader { index, name, value }
                } else {
                    Reply::ChgHeader { index, name, value }
                }
            }
            rep::CHGFROM => {
                let sender = f.string()?;
                let args = if f.is_empty() {
                    None
                } else {
                    Some(f.string()?)
                };
                Reply::ChgFrom { sender, args }
            }
            rep::ADDRCPT_PAR => Reply::AddRcptPar {
                recipient: f.string()?,
                args: f.string()?,
            },
            rep::REPLBODY => return Ok(Reply::ReplBody(frame.data.to_vec())),
            other => return Err(PayloadError::UnknownReply(other)),
        };
        f.end()?;
        Ok(reply)
    }
}

/// Builds the text of an SMTP reply for [`Reply::ReplyCode`].
///
/// The MTA expands `%` in reply text (as libmilter's `smfi_setreply` documents), so operator
/// text has each `%` doubled; CR and LF would split the SMTP reply and are replaced by spaces.
pub fn smtp_reply(code: u16, enhanced: &str, text: &str) -> String {
    let mut s = format!("{code} {enhanced} ");
    for c in text.chars() {
        match c {
            '%' => s.push_str("%%"),
            '\r' | '\n' => s.push(' '),
            c => s.push(c),
        }
    }
    s
}
