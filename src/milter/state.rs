//! The milter protocol as a state machine: which command may come next, what negotiation
//! settles, and which commands the MTA waits for a reply to. No sockets, no spam knowledge.

use super::codec::{Command, MacroStage, Optneg, Reply, SUPPORTED_VERSIONS, action, cmd, proto};

/// Where a milter conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing received yet: only OPTNEG may come.
    Negotiate,
    /// Negotiated; waiting for the CONNECT of an SMTP session (also after QUIT_NC).
    AwaitConnect,
    /// Connected, between messages: HELO, MAIL, or the end of the session.
    Connected,
    /// After MAIL: recipients, then the content.
    Envelope,
    /// Receiving headers.
    Headers,
    /// After the end of headers: body chunks, then end of message.
    Body,
    /// QUIT received; nothing more is read.
    Closed,
}

/// A command that the protocol does not allow where the conversation stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command} is not allowed in phase {phase:?}")]
pub struct OutOfOrder {
    pub phase: Phase,
    pub command: &'static str,
}

/// What a command does to the conversation, beyond the new phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond the phase change.
    None,
    /// The current message, if any, is over without a verdict (ABORT, a new MAIL, QUIT_NC).
    ResetMessage,
    /// A new SMTP session starts on this connection: connection data is reset too.
    ResetConnection,
}

/// The transition function. Lenient where real MTAs differ (HELO may repeat after STARTTLS,
/// DATA and EOH may be skipped, ABORT may come at any point after CONNECT), strict where a
/// command could only mean the peer is not an MTA speaking milter.
pub fn next(phase: Phase, command: &Command) -> Result<(Phase, Effect), OutOfOrder> {
    use Phase::*;
    let code = command.code();
    let out_of_order = || OutOfOrder {
        phase,
        command: command.name(),
    };
    // Commands valid in every phase after negotiation.
    match (phase, code) {
        (Negotiate, cmd::OPTNEG) => return Ok((AwaitConnect, Effect::None)),
        (Negotiate, _) | (Closed, _) => return Err(out_of_order()),
        (_, cmd::MACRO) => return Ok((phase, Effect::None)),
        (_, cmd::QUIT) => return Ok((Closed, Effect::ResetConnection)),
        (_, cmd::QUIT_NC) => return Ok((AwaitConnect, Effect::ResetConnection)),
        _ => {}
    }
    let to = match (phase, code) {
        // Sendmail renegotiates on a reused connection.
        (AwaitConnect, cmd::OPTNEG) => (AwaitConnect, Effect::None),
        (AwaitConnect, cmd::CONNECT) => (Connected, Effect::ResetConnection),
        (AwaitConnect, cmd::ABORT) => (AwaitConnect, Effect::None),
        (Connected, cmd::HELO | cmd::UNKNOWN) => (Connected, Effect::None),
        (Connected, cmd::ABORT) => (Connected, Effect::ResetMessage),
        (Connected, cmd::MAIL) => (Envelope, Effect::ResetMessage),
        (Envelope, cmd::RCPT | cmd::DATA | cmd::UNKNOWN) => (Envelope, Effect::None),
        // A client may send EHLO again after MAIL (RFC 5321 4.1.4); Postfix reports the HELO
        // first and the ABORT that resets the transaction after it.
        (Envelope, cmd::HELO) => (Envelope, Effect::None),
        // Postfix may send a new MAIL after a failed transaction without ABORT in between.
        (Envelope, cmd::MAIL) => (Envelope, Effect::ResetMessage),
        (Envelope | Headers, cmd::HEADER) => (Headers, Effect::None),
        (Envelope | Headers, cmd::EOH) => (Body, Effect::None),
        (Envelope | Headers | Body, cmd::BODY) => (Body, Effect::None),
        (Envelope | Headers | Body, cmd::BODYEOB) => (Connected, Effect::None),
        (Envelope | Headers | Body, cmd::ABORT) => (Connected, Effect::ResetMessage),
        _ => return Err(out_of_order()),
    };
    Ok(to)
}

/// What the filter would like from negotiation; each part is cut to what the MTA offers.
#[derive(Debug, Clone)]
pub struct Wants {
    pub actions: u32,
    pub protocol: u32,
    pub macros: Vec<(MacroStage, String)>,
}

/// Why negotiation failed; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    #[error("MTA offers milter protocol version {0}; versions 2 to 6 are supported")]
    Version(u32),
}

/// The settled terms of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub protocol: u32,
}

impl Negotiated {
    /// Terms used before negotiation completes; nothing may be skipped or modified.
    pub const NONE: Negotiated = Negotiated {
        version: 6,
        actions: 0,
        protocol: 0,
    };

    pub fn can(&self, action_flag: u32) -> bool {
        self.actions & action_flag == action_flag
    }

    pub fn has(&self, proto_flag: u32) -> bool {
        self.protocol & proto_flag == proto_flag
    }

    /// Whether the MTA waits for a reply to this command.
    pub fn expects_reply(&self, code: u8) -> bool {
        let no_reply_flag = match code {
            cmd::OPTNEG | cmd::BODYEOB => return true,
            cmd::MACRO | cmd::ABORT | cmd::QUIT | cmd::QUIT_NC => return false,
            cmd::CONNECT => proto::NR_CONN,
            cmd::HELO => proto::NR_HELO,
            cmd::MAIL => proto::NR_MAIL,
            cmd::RCPT => proto::NR_RCPT,
            cmd::DATA => proto::NR_DATA,
            cmd::HEADER => proto::NR_HDR,
            cmd::EOH => proto::NR_EOH,
            cmd::BODY => proto::NR_BODY,
            cmd::UNKNOWN => proto::NR_UNKN,
            _ => return true,
        };
        !self.has(no_reply_flag)
    }
}

/// Answers the MTA's offer: the highest common version, and only flags the MTA offered.
pub fn negotiate(offer: Optneg, wants: &Wants) -> Result<(Negotiated, Reply), NegotiateError> {
    let min = SUPPORTED_VERSIONS[0];
    if offer.version < min {
        return Err(NegotiateError::Version(offer.version));
    }
    // Versions 3 to 5 are subsets of 6 distinguished by the flags offered, which we honour.
    let version = offer.version.min(SUPPORTED_VERSIONS[1]);
    let mut actions = wants.actions & offer.actions;
    let protocol = wants.protocol & offer.protocol;
    // Macro lists exist from version 6 on and only when the MTA offers to take them.
    let macros = if version >= 6 && offer.actions & action::SETSYMLIST != 0 {
        actions |= action::SETSYMLIST;
        wants.macros.clone()
    } else {
        actions &= !action::SETSYMLIST;
        Vec::new()
    };
    let negotiated = Negotiated {
        version,
        actions,
        protocol,
    };
    let reply = Reply::Optneg {
        negotiated: Optneg {
            version,
            actions,
            protocol,
        },
        macros,
    };
    Ok((negotiated, reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::codec::ConnectAddr;

    fn wants() -> Wants {
        Wants {
            actions: action::ADDHDRS | action::CHGHDRS | action::QUARANTINE,
            protocol: proto::NODATA | proto::NOUNKNOWN | proto::NR_HDR | proto::SKIP,
            macros: vec![(MacroStage::Eom, "i".into())],
        }
    }

    #[test]
    fn negotiation_takes_only_what_is_offered() {
        let postfix = Optneg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        };
        let (n, reply) = negotiate(postfix, &wants()).unwrap();
        assert_eq!(n.version, 6);
        assert!(n.can(action::ADDHDRS | action::CHGHDRS | action::SETSYMLIST));
        assert!(n.has(proto::SKIP | proto::NR_HDR));
        assert!(matches!(reply, Reply::Optneg { ref macros, .. } if macros.len() == 1));

        // An old MTA: version 2, no quarantine, no skip, no no-reply flags, no macro lists.
        let old = Optneg {
            version: 2,
            actions: action::ADDHDRS | action::CHGHDRS,
            protocol: 0x7f,
        };
        let (n, reply) = negotiate(old, &wants()).unwrap();
        assert_eq!(n.version, 2);
        assert_eq!(n.actions, action::ADDHDRS | action::CHGHDRS);
        assert_eq!(n.protocol, 0);
        assert!(n.expects_reply(cmd::HEADER));
        assert!(matches!(reply, Reply::Optneg { ref macros, .. } if macros.is_empty()));
    }

    #[test]
    fn newer_versions_are_answered_with_ours_and_older_refused() {
        let offer = |version| Optneg {
            version,
            actions: 0,
            protocol: 0,
        };
        assert_eq!(negotiate(offer(7), &wants()).unwrap().0.version, 6);
        assert_eq!(
            negotiate(offer(1), &wants()),
            Err(NegotiateError::Version(1))
        );
    }

    #[test]
    fn no_reply_flags_decide_what_is_answered() {
        let n = Negotiated {
            version: 6,
            actions: 0,
            protocol: proto::NR_HDR | proto::NR_EOH,
        };
        assert!(!n.expects_reply(cmd::HEADER));
        assert!(!n.expects_reply(cmd::EOH));
        assert!(n.expects_reply(cmd::BODY));
        assert!(n.expects_reply(cmd::BODYEOB));
        assert!(!n.expects_reply(cmd::MACRO));
        assert!(!n.expects_reply(cmd::ABORT));
    }

    fn connect() -> Command {
        Command::Connect {
            hostname: "h".into(),
            addr: ConnectAddr::Unknown,
        }
    }

    fn mail() -> Command {
        Command::Mail {
            sender: "<a@b>".into(),
            args: vec![],
        }
    }

    fn optneg() -> Command {
        Command::Optneg(Optneg {
            version: 6,
            actions: 0,
            protocol: 0,
        })
    }

    fn run(cmds: &[Command]) -> Result<Phase, OutOfOrder> {
        let mut p = Phase::Negotiate;
        for c in cmds {
            p = next(p, c)?.0;
        }
        Ok(p)
    }

    #[test]
    fn a_whole_session_with_two_messages() {
        let header = Command::Header {
            name: "Subject".into(),
            value: b"x".to_vec(),
        };
        let p = run(&[
            optneg(),
            connect(),
            Command::Helo("h".into()),
            mail(),
            Command::Rcpt {
                recipient: "<c@d>".into(),
                args: vec![],
            },
            Command::Data,
            header.clone(),
            Command::Eoh,
            Command::Body(b"x".to_vec()),
            Command::EndOfBody(vec![]),
            mail(),
            Command::Helo("again".into()),
            Command::Abort,
            mail(),
            header,
            Command::EndOfBody(vec![]),
            Command::QuitNc,
            connect(),
            Command::Quit,
        ])
        .unwrap();
        assert_eq!(p, Phase::Closed);
    }

    #[test]
    fn out_of_order_commands_are_refused() {
        let cases: Vec<(Vec<Command>, &str)> = vec![
            (vec![connect()], "CONNECT is not allowed in phase Negotiate"),
            (
                vec![optneg(), mail()],
                "MAIL is not allowed in phase AwaitConnect",
            ),
            (
                vec![optneg(), connect(), Command::Body(vec![])],
                "BODY is not allowed in phase Connected",
            ),
            (
                vec![
                    optneg(),
                    connect(),
                    mail(),
                    Command::Eoh,
                    Command::Helo("x".into()),
                ],
                "HELO is not allowed in phase Body",
            ),
            (
                vec![optneg(), connect(), Command::Quit, connect()],
                "CONNECT is not allowed in phase Closed",
            ),
        ];
        for (cmds, want) in cases {
            assert_eq!(run(&cmds).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn effects_reset_the_right_scope() {
        assert_eq!(
            next(Phase::Body, &Command::Abort).unwrap(),
            (Phase::Connected, Effect::ResetMessage)
        );
        assert_eq!(
            next(Phase::Envelope, &mail()).unwrap(),
            (Phase::Envelope, Effect::ResetMessage)
        );
        assert_eq!(
            next(Phase::Body, &Command::QuitNc).unwrap(),
            (Phase::AwaitConnect, Effect::ResetConnection)
        );
    }
}
