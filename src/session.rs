//! One MTA connection: turns protocol events into a scan input, has the engine judge it at
//! end of message, and turns the decision into replies. The one place that knows both milter
//! and scanning.
//!
//! Connection data (client, HELO, connection macros) lives apart from message data; ABORT or
//! a new MAIL resets the message only. Each message takes a snapshot of the engine (config and
//! pipeline) at MAIL, so a reload never changes a message half-way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::TrustMode;
use crate::decimal;
use crate::engine::Engine;
use crate::logging::Quoted;
use crate::message::{Envelope, MAX_HEADER_DELETIONS, MAX_HEADER_NAME, Message, is_spam_header};
use crate::milter::codec::{self, Command, ConnectAddr, MacroStage, Reply, action, cmd, proto};
use crate::milter::connection::{Connection, ConnectionError};
use crate::milter::server::{Peer, Stream};
use crate::milter::state::{self, Effect, NegotiateError, Negotiated, OutOfOrder, Phase, Wants};
use crate::policy::{Action, Decision};

/// Headers a new message has room for before its list grows.
const HEADER_ROOM: usize = 32;

/// Why a connection was closed by us. Each is logged; none affects other connections.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("protocol violation")]
    OutOfOrder(#[from] OutOfOrder),
    #[error("negotiation failed")]
    Negotiate(#[from] NegotiateError),
    #[error("no negotiation within {0:?} of connecting")]
    Handshake(Duration),
    #[error("no complete command within {0:?}")]
    Idle(Duration),
}

impl SessionError {
    /// A short name for the metrics' `errors` counter.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Connection(c) => match c {
                ConnectionError::Io(_) => "io",
                ConnectionError::Frame(_) => "bad_frame",
                ConnectionError::Payload(_) => "bad_command",
                ConnectionError::Truncated(_) => "truncated",
                ConnectionError::Deadline => "deadline",
                ConnectionError::WriteTimeout(_) => "write_timeout",
            },
            SessionError::OutOfOrder(_) => "out_of_order",
            SessionError::Negotiate(_) => "negotiation",
            SessionError::Handshake(_) => "handshake_timeout",
            SessionError::Idle(_) => "idle_timeout",
        }
    }
}

/// What the filter asks for: the steps it needs and no-reply for the ones it never answers.
///
/// Every reply is a round trip the MTA waits on, so only the steps whose answer can matter
/// under `config` keep theirs: CONNECT when trusted networks are accepted there unscanned,
/// MAIL when authenticated senders are. BODY is never answered: SKIP would spare the MTA
/// sending the rest of a message past `max_message_size`, but that costs a round trip on
/// every message to save bytes on the rare oversized one (the rest is read and dropped).
/// A connection keeps what it negotiated: after a reload that turns skipping on, its
/// clients are scanned instead, which is safe.
fn wants(config: &crate::config::Config) -> Wants {
    let mut protocol = proto::NODATA
        | proto::NOUNKNOWN
        | proto::NR_HELO
        | proto::NR_RCPT
        | proto::NR_HDR
        | proto::NR_EOH
        | proto::NR_DATA
        | proto::NR_UNKN
        | proto::NR_BODY
        // For an MTA without NR_BODY: its body chunks are answered, and SKIP can end them.
        | proto::SKIP;
    let trust = &config.trust;
    if trust.networks.is_empty() || trust.networks_mode != TrustMode::Skip {
        protocol |= proto::NR_CONN;
    }
    if trust.authenticated_mode != TrustMode::Skip {
        protocol |= proto::NR_MAIL;
    }
    Wants {
        actions: action::ADDHDRS | action::CHGHDRS | action::QUARANTINE,
        protocol,
        macros: vec![
            (MacroStage::Connect, "j {daemon_name} {client_name}".into()),
            (MacroStage::Mail, "i {auth_type} {auth_authen}".into()),
            (MacroStage::Eoh, "i".into()),
            (MacroStage::Eom, "i".into()),
        ],
    }
}

/// The macros kept, out of whatever the MTA sends: the ones the session reads. A peer's other
/// macros cost nothing past the frame that carried them.
const KEPT_MACROS: [&str; 2] = ["i", "auth_authen"];

/// Longest macro value kept: queue ids and SASL login names are short.
pub const MAX_MACRO_VALUE: usize = 256;

/// Longest envelope string kept (HELO, client name, sender, each recipient): RFC 5321 caps a
/// path at 256 octets and a domain at 255; twice that leaves room for UTF-8 addresses.
pub const MAX_ENVELOPE_FIELD: usize = 512;

/// Most recipients kept per message: Postfix's `smtpd_recipient_limit` default. Only an
/// allowlist reads them; recipients past the bounds are counted (`rcpts_dropped`).
pub const MAX_RCPTS: usize = 1000;

/// Most bytes of recipient addresses kept per message: a thousand typical addresses.
pub const MAX_RCPT_BYTES: usize = 64 * 1024;

/// Macro stages that belong to the message, cleared when it ends.
const MESSAGE_MACRO_STAGES: [u8; 7] = [
    cmd::MAIL,
    cmd::RCPT,
    cmd::DATA,
    cmd::HEADER,
    cmd::EOH,
    cmd::BODY,
    cmd::BODYEOB,
];

/// Order in which stages' macros are searched: the most recent stage first.
const MACRO_LOOKUP_ORDER: [u8; 9] = [
    cmd::BODYEOB,
    cmd::BODY,
    cmd::EOH,
    cmd::HEADER,
    cmd::DATA,
    cmd::RCPT,
    cmd::MAIL,
    cmd::HELO,
    cmd::CONNECT,
];

/// What the MTA said about the SMTP client of this connection.
#[derive(Default)]
struct SmtpClient {
    client_ip: Option<std::net::IpAddr>,
    client_name: String,
    helo: String,
    /// Accepted as a whole at CONNECT (trusted network, skip mode).
    skip: bool,
}

struct MessageState {
    engine: Arc<Engine>,
    envelope: Envelope,
    message: Message,
    /// Bytes of headers and body kept so far, against `max_message_size`.
    kept: usize,
    /// Bytes of recipients kept so far, against [`MAX_RCPT_BYTES`].
    rcpt_bytes: usize,
    /// Bytes of headers and body received (`name: value\r\n` per header), for the log and
    /// the dashboard; the body stops coming once the size limit asked the MTA to skip it.
    received: usize,
    /// Accepted without a scan at MAIL.
    skip: bool,
    /// Headers named X-Spam or X-Spam-*, by lower-case name: the first spelling seen and how
    /// many, for removal.
    spam_headers: HashMap<String, (String, u32)>,
    has_subject: Option<Vec<u8>>,
}

/// The protocol-facing session, without sockets: commands in, replies out.
pub struct Session {
    phase: Phase,
    negotiated: Negotiated,
    engines: watch::Receiver<Arc<Engine>>,
    conn: SmtpClient,
    msg: Option<MessageState>,
    /// The [`KEPT_MACROS`] by stage (a MACRO command's stage code); a new MACRO frame for a
    /// stage replaces what that stage had.
    macros: Macros,
    /// MAIL-stage macros arrived since the last MAIL. An MTA may send none for a message
    /// (nothing defined), and the previous sender's login must not carry over.
    mail_macros_fresh: bool,
    peer: Peer,
}

/// The [`KEPT_MACROS`] by stage, one slot per stage of [`MACRO_LOOKUP_ORDER`]: looked up
/// two or three times a message and replaced at every MACRO frame, where a `HashMap` hashed the
/// stage code each time (SipHash: 3.5K instructions a message, 0.8%). A stage code outside
/// the list is never read, so its macros are not kept.
#[derive(Default)]
struct Macros([Vec<(&'static str, String)>; MACRO_LOOKUP_ORDER.len()]);

impl Macros {
    fn slot(stage: u8) -> Option<usize> {
        MACRO_LOOKUP_ORDER.iter().position(|s| *s == stage)
    }

    fn set(&mut self, stage: u8, kept: Vec<(&'static str, String)>) {
        if let Some(k) = Self::slot(stage) {
            self.0[k] = kept;
        }
    }

    fn clear(&mut self, stage: u8) {
        self.set(stage, Vec::new());
    }

    /// Every stage's macros, but the connection's when `keep_connect`.
    fn clear_all(&mut self, keep_connect: bool) {
        for (stage, kept) in MACRO_LOOKUP_ORDER.iter().zip(&mut self.0) {
            if !(keep_connect && *stage == cmd::CONNECT) {
                kept.clear();
            }
        }
    }

    #[cfg(test)]
    fn get(&self, stage: u8) -> &[(&'static str, String)] {
        Self::slot(stage).map_or(&[], |k| &self.0[k])
    }

    /// The value of `name` from the most recent stage that has a non-empty one.
    fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().find_map(|kept| {
            kept.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        })
    }
}

fn strip_brackets(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.shrink_to_fit();
    }
    s
}

impl Session {
    pub fn new(engines: watch::Receiver<Arc<Engine>>, peer: Peer) -> Session {
        Session {
            phase: Phase::Negotiate,
            negotiated: Negotiated::NONE,
            engines,
            conn: SmtpClient::default(),
            msg: None,
            macros: Macros::default(),
            mail_macros_fresh: false,
            peer,
        }
    }

    /// True when no message is in progress, so closing loses nothing.
    pub fn idle(&self) -> bool {
        self.msg.is_none()
    }

    pub fn closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Nothing received yet.
    pub fn phase_is_initial(&self) -> bool {
        self.phase == Phase::Negotiate
    }

    fn macro_value(&self, name: &str) -> Option<&str> {
        self.macros.value(name)
    }

    fn reply_if_expected(&self, code: u8, reply: Reply) -> Vec<Reply> {
        if self.negotiated.expects_reply(code) {
            vec![reply]
        } else {
            Vec::new()
        }
    }

    /// Handles one command and returns the replies to send, in order.
    pub async fn handle(&mut self, command: Command) -> Result<Vec<Reply>, SessionError> {
        let (phase, effect) = state::next(self.phase, &command)?;
        self.phase = phase;
        match effect {
            Effect::None => {}
            Effect::ResetMessage => self.msg = None,
            Effect::ResetConnection => {
                self.msg = None;
                self.conn = SmtpClient::default();
                self.macros.clear_all(command.code() == cmd::CONNECT);
            }
        }
        let code = command.code();
        let replies = match command {
            Command::Optneg(offer) => {
                let wants = wants(&self.engines.borrow().config);
                let (negotiated, reply) = state::negotiate(offer, &wants)?;
                self.negotiated = negotiated;
                vec![reply]
            }
            Command::Macro { stage, pairs } => {
                // One value per kept name (the last one sent), so a frame repeating a name
                // costs no more than one.
                let mut kept: Vec<(&'static str, String)> = Vec::new();
                for (k, v) in pairs {
                    let k = k.trim_start_matches('{').trim_end_matches('}');
                    if let Some(name) = KEPT_MACROS.iter().find(|n| **n == k) {
                        kept.retain(|(n, _)| n != name);
                        kept.push((name, clip(v, MAX_MACRO_VALUE)));
                    }
                }
                self.macros.set(stage, kept);
                if stage == cmd::MAIL {
                    self.mail_macros_fresh = true;
                }
                Vec::new()
            }
            Command::Connect { hostname, addr } => self.on_connect(hostname, addr),
            Command::Helo(name) => {
                self.conn.helo = clip(name, MAX_ENVELOPE_FIELD);
                self.reply_if_expected(code, Reply::Continue)
            }
            Command::Mail { sender, .. } => self.on_mail(&sender),
            Command::Rcpt { recipient, .. } => {
                if let Some(m) = &mut self.msg {
                    m.add_rcpt(strip_brackets(&recipient));
                }
                self.reply_if_expected(code, Reply::Continue)
            }
            Command::Header { name, value } => {
                if let Some(m) = &mut self.msg {
                    m.add_header(name, value);
                }
                self.reply_if_expected(code, Reply::Continue)
            }
            Command::Body(chunk) => {
                let full = match &mut self.msg {
                    Some(m) => m.add_body(chunk),
                    None => false,
                };
                // SKIP spares the MTA sending the rest; only version 6 MTAs that offered it.
                let reply = if full && self.negotiated.has(proto::SKIP) {
                    Reply::Skip
                } else {
                    Reply::Continue
                };
                self.reply_if_expected(code, reply)
            }
            Command::EndOfBody(chunk) => self.on_end_of_message(chunk).await,
            Command::Abort => {
                self.end_message();
                Vec::new()
            }
            Command::Data | Command::Eoh | Command::Unknown(_) => {
                self.reply_if_expected(code, Reply::Continue)
            }
            Command::Quit | Command::QuitNc => Vec::new(),
        };
        Ok(replies)
    }

    fn on_connect(&mut self, hostname: String, addr: ConnectAddr) -> Vec<Reply> {
        self.conn.client_name = clip(hostname, MAX_ENVELOPE_FIELD);
        if let ConnectAddr::Inet { ip, .. } = addr {
            self.conn.client_ip = Some(ip);
        }
        let engine = self.engines.borrow().clone();
        let trust = &engine.config.trust;
        let trusted = self
            .conn
            .client_ip
            .is_some_and(|ip| trust.networks.iter().any(|n| n.contains(ip)));
        if trusted
            && trust.networks_mode == TrustMode::Skip
            && self.negotiated.expects_reply(cmd::CONNECT)
        {
            self.conn.skip = true;
            tracing::debug!(peer = %self.peer, client = ?self.conn.client_ip, "trusted network: connection accepted without scanning");
            return vec![Reply::Accept];
        }
        // The client's DNS list answers are wanted at end of message: ask now.
        if let (Some(dns), Some(ip)) = (&engine.dns, self.conn.client_ip) {
            dns.prefetch(ip);
        }
        self.reply_if_expected(cmd::CONNECT, Reply::Continue)
    }

    fn on_mail(&mut self, sender: &str) -> Vec<Reply> {
        if !std::mem::take(&mut self.mail_macros_fresh) {
            self.macros.clear(cmd::MAIL);
        }
        let engine = self.engines.borrow().clone();
        let auth_user = self.macro_value("auth_authen").map(str::to_string);
        let skip = auth_user.is_some()
            && engine.config.trust.authenticated_mode == TrustMode::Skip
            && self.negotiated.expects_reply(cmd::MAIL);
        let envelope = Envelope {
            client_ip: self.conn.client_ip,
            client_name: self.conn.client_name.clone(),
            helo: self.conn.helo.clone(),
            from: clip(strip_brackets(sender).to_string(), MAX_ENVELOPE_FIELD),
            rcpts: Vec::new(),
            rcpts_dropped: 0,
            auth_user,
            queue_id: self.macro_value("i").map(str::to_string),
        };
        self.msg = Some(MessageState {
            engine,
            envelope,
            message: Message {
                // The corpus' messages carry 31 headers on average: room for most at once,
                // not four reallocations on the way.
                headers: Vec::with_capacity(HEADER_ROOM),
                ..Message::default()
            },
            kept: 0,
            received: 0,
            rcpt_bytes: 0,
            skip,
            spam_headers: HashMap::new(),
            has_subject: None,
        });
        if skip {
            tracing::debug!(peer = %self.peer, "authenticated sender: message accepted without scanning");
            return vec![Reply::Accept];
        }
        self.reply_if_expected(cmd::MAIL, Reply::Continue)
    }

    fn end_message(&mut self) {
        self.msg = None;
        for stage in MESSAGE_MACRO_STAGES {
            self.macros.clear(stage);
        }
    }

    async fn on_end_of_message(&mut self, chunk: Vec<u8>) -> Vec<Reply> {
        let Some(mut m) = self.msg.take() else {
            // End of a message we never saw begin (MAIL accepted it, or the MTA skipped MAIL).
            self.end_message();
            return vec![Reply::Continue];
        };
        if m.skip || self.conn.skip {
            self.end_message();
            return vec![Reply::Accept];
        }
        m.add_body(chunk);
        if let Some(id) = self.macro_value("i") {
            m.envelope.queue_id = Some(id.to_string());
        }
        let started = std::time::Instant::now();
        // What the log line needs (short strings); the envelope itself goes to the scan.
        let (queue_id, from) = (m.envelope.queue_id.clone(), m.envelope.from.clone());
        let client = m.envelope.client_ip;
        let rcpts = m.envelope.rcpts.len() + m.envelope.rcpts_dropped;
        let input = m.engine.input(
            std::mem::take(&mut m.envelope),
            std::mem::take(&mut m.message),
        );
        let (verdict, decision) = m.engine.judge(Arc::new(input)).await;
        let chosen = decision.action;
        let replies = eom_replies(&self.negotiated, &m, decision);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let client = client.map_or("-".to_string(), client_text);
        // The sender and queue id are the peer's words: quoted and escaped.
        tracing::info!(
            queue_id = ?Quoted(queue_id.as_deref().unwrap_or("-")),
            client = %client,
            from = ?Quoted(&from),
            rcpts,
            size = m.received,
            score = %decimal::tenths(verdict.score),
            action = %chosen,
            symbols = %SymbolList(&verdict.symbols),
            elapsed_ms = %decimal::hundredths(elapsed_ms),
            "message scored"
        );
        crate::metrics::get().message(crate::metrics::Recent {
            time: crate::metrics::get().now(),
            queue_id: queue_id.unwrap_or_default(),
            client,
            from,
            rcpts,
            size: m.received,
            score: verdict.score,
            action: chosen.to_string(),
            symbols: verdict
                .symbols
                .iter()
                .map(|s| (s.name.clone(), s.score))
                .collect(),
            elapsed_ms,
        });
        self.end_message();
        replies
    }
}

/// The client's address as the log line and the dashboard show it. An IPv4 address is written
/// octet by octet: `Display` writes it through a buffer and the formatter, about 1,600
/// instructions for each message's log line.
fn client_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// A verdict's symbols as the log line lists them: `NAME(1.0),OTHER(-0.5)`.
struct SymbolList<'a>(&'a [crate::scan::Symbol]);

impl std::fmt::Display for SymbolList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}({})", s.name, decimal::tenths(s.score))?;
        }
        Ok(())
    }
}

impl MessageState {
    fn limit(&self) -> usize {
        self.engine.config.milter.max_message_size
    }

    fn add_rcpt(&mut self, rcpt: &str) {
        let rcpt = clip(rcpt.to_string(), MAX_ENVELOPE_FIELD);
        if self.envelope.rcpts.len() >= MAX_RCPTS || self.rcpt_bytes + rcpt.len() > MAX_RCPT_BYTES {
            self.envelope.rcpts_dropped += 1;
            return;
        }
        self.rcpt_bytes += rcpt.len();
        self.envelope.rcpts.push(rcpt);
    }

    fn add_header(&mut self, name: String, value: Vec<u8>) {
        // Counted for removal up to the bound; past it the message is refused whole. A name
        // too long to be a header's is neither kept nor edited (`Message::push_header`).
        if name.len() <= MAX_HEADER_NAME
            && is_spam_header(&name)
            && self.message.spam_headers < MAX_HEADER_DELETIONS as usize
        {
            self.spam_headers
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| (name.clone(), 0))
                .1 += 1;
        }
        if self.has_subject.is_none() && name.eq_ignore_ascii_case("Subject") {
            self.has_subject = Some(value.clone());
        }
        self.received += name.len() + value.len() + 4;
        let room = self.limit().saturating_sub(self.kept);
        self.kept += self.message.push_header(name, value, room);
    }

    /// Keeps what fits under the size limit; returns true once the limit is reached.
    fn add_body(&mut self, chunk: Vec<u8>) -> bool {
        self.received += chunk.len();
        let room = self.limit().saturating_sub(self.kept);
        let take = chunk.len().min(room);
        if take < chunk.len() {
            self.message.truncated = true;
        }
        if self.message.body.is_empty() && take == chunk.len() {
            // Most bodies come in one chunk: keep it as it came, no copy.
            self.message.body = chunk;
        } else {
            self.message.body.extend_from_slice(&chunk[..take]);
        }
        self.kept += take;
        self.kept >= self.limit()
    }
}

/// The modifications and final reply for a decision, within what negotiation allows.
fn eom_replies(n: &Negotiated, m: &MessageState, d: Decision) -> Vec<Reply> {
    let config = &m.engine.config;
    let mut out = Vec::with_capacity(d.add_headers.len() + 2);
    if d.action.delivers() {
        if config.headers.remove_incoming && n.can(action::CHGHDRS) {
            let mut names: Vec<&(String, u32)> = m.spam_headers.values().collect();
            names.sort();
            for (name, count) in names {
                // From the last down: deleting occurrence 1 would renumber the others.
                for index in (1..=*count).rev() {
                    out.push(Reply::ChgHeader {
                        index,
                        name: name.clone(),
                        value: Vec::new(),
                    });
                }
            }
        }
        if n.can(action::ADDHDRS) {
            out.extend(
                d.add_headers
                    .into_iter()
                    .map(|(name, value)| Reply::AddHeader {
                        name,
                        value: value.into_bytes(),
                    }),
            );
        }
        if let Some(prefix) = &d.subject_prefix {
            match &m.has_subject {
                Some(old) if old.starts_with(prefix.as_bytes()) => {}
                Some(old) if n.can(action::CHGHDRS) => {
                    let mut value = prefix.as_bytes().to_vec();
                    value.extend_from_slice(old);
                    out.push(Reply::ChgHeader {
                        index: 1,
                        name: "Subject".into(),
                        value,
                    });
                }
                None if n.can(action::ADDHDRS) => out.push(Reply::AddHeader {
                    name: "Subject".into(),
                    value: prefix.trim_end().as_bytes().to_vec(),
                }),
                _ => {}
            }
        }
        if let Some(reason) = &d.quarantine_reason {
            if n.can(action::QUARANTINE) {
                out.push(Reply::Quarantine(reason.clone()));
            } else {
                tracing::warn!(
                    "quarantine decided but the MTA did not offer it; message delivered with headers"
                );
            }
        }
    }
    out.push(match d.action {
        Action::Reject | Action::SoftReject => {
            let (code, enhanced, text) = d
                .smtp_reply
                .as_ref()
                .expect("reject decisions carry a reply");
            Reply::ReplyCode(codec::smtp_reply(*code, enhanced, text))
        }
        Action::Discard => Reply::Discard,
        _ => Reply::Accept,
    });
    out
}

/// Runs a session over a stream until the MTA quits, an error closes it, or a shutdown
/// arrives while no message is in progress.
///
/// Every wait has a deadline that arriving bytes do not move: the first command (OPTNEG) must
/// arrive within `handshake_timeout`, each later one in full within `idle_timeout` of the
/// previous, and each reply must be taken by the MTA within `idle_timeout`. So a silent or
/// trickling peer holds its connection permit for a bounded time, whatever it sends.
pub async fn run<S>(
    stream: S,
    engines: watch::Receiver<Arc<Engine>>,
    mut shutdown: watch::Receiver<bool>,
    peer: Peer,
) -> Result<(), SessionError>
where
    S: Stream,
{
    let (handshake, idle) = {
        let c = &engines.borrow().config.milter;
        (c.handshake_timeout, c.idle_timeout)
    };
    let mut session = Session::new(engines, peer);
    let mut conn = Connection::new(stream);
    let mut draining = *shutdown.borrow();
    if draining {
        return Ok(());
    }
    let mut deadline = Instant::now() + handshake;
    loop {
        let command = tokio::select! {
            // The read first: a command already buffered (most are: the MTA sends a message's
            // commands in a burst) is taken without registering with the shutdown channel,
            // whose waiter list every session shares.
            biased;
            read = conn.read_command(deadline) => match read {
                Ok(Some(command)) => command,
                Ok(None) => return Ok(()),
                Err(ConnectionError::Deadline) if session.phase_is_initial() => {
                    return Err(SessionError::Handshake(handshake));
                }
                Err(ConnectionError::Deadline) => return Err(SessionError::Idle(idle)),
                Err(e) => return Err(e.into()),
            },
            // On shutdown, a session that has not started negotiating is closed; the others
            // go on until the MTA quits (closing one between messages would make Postfix
            // defer the client's next message) or the server's drain deadline cuts them off.
            changed = shutdown.changed(), if !draining => {
                draining = changed.is_err() || *shutdown.borrow();
                if draining && session.phase_is_initial() {
                    return Ok(());
                }
                continue;
            }
        };
        tracing::trace!(command = command.name(), "milter command");
        let replies = session.handle(command).await?;
        conn.write_replies(&replies, idle).await?;
        if session.closed() {
            return Ok(());
        }
        deadline = Instant::now() + idle;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_addresses_are_written_as_display_writes_them() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut ips: Vec<std::net::IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::1",
            "2001:db8::5",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for _ in 0..20_000 {
            ips.push(std::net::Ipv4Addr::from((next() >> 16) as u32).into());
        }
        for ip in ips {
            assert_eq!(client_text(ip), ip.to_string());
        }
    }

    use super::*;
    use crate::config::Config;
    use crate::milter::client::POSTFIX_OFFER;
    use crate::signatures::ruleset::RuleSet;

    const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

    fn session(config: Config) -> Session {
        let engine = Engine::with_rules(config, Arc::new(RuleSet::load(&[])));
        let (_tx, rx) = watch::channel(Arc::new(engine));
        Session::new(rx, Peer::Unix("test".into()))
    }

    fn connect(ip: &str) -> Command {
        Command::Connect {
            hostname: "client.example".into(),
            addr: ConnectAddr::Inet {
                ip: ip.parse().unwrap(),
                port: 25,
            },
        }
    }

    fn header(name: &str, value: &str) -> Command {
        Command::Header {
            name: name.into(),
            value: value.into(),
        }
    }

    fn mail(from: &str) -> Command {
        Command::Mail {
            sender: format!("<{from}>"),
            args: vec![],
        }
    }

    /// Feeds commands and checks each one's replies.
    async fn exchange(s: &mut Session, steps: Vec<(Command, Vec<Reply>)>) {
        for (i, (command, want)) in steps.into_iter().enumerate() {
            let name = command.name();
            let got = s.handle(command).await.unwrap();
            assert_eq!(got, want, "step {i} ({name})");
        }
    }

    /// The OPTNEG reply to Postfix's offer under `config`.
    fn negotiated_with(config: &Config) -> Reply {
        let (_, reply) = state::negotiate(POSTFIX_OFFER, &wants(config)).unwrap();
        reply
    }

    fn negotiated() -> Reply {
        negotiated_with(&Config::default())
    }

    #[tokio::test]
    async fn a_message_as_postfix_sends_it() {
        let mut s = session(Config::default());
        exchange(
            &mut s,
            vec![
                (Command::Optneg(POSTFIX_OFFER), vec![negotiated()]),
                // Negotiated without replies (nothing is skipped at CONNECT or MAIL with this
                // config): CONNECT, HELO, MAIL, RCPT, headers, end of headers, body.
                (connect("192.0.2.1"), vec![]),
                (Command::Helo("client.example".into()), vec![]),
                (mail("a@example.org"), vec![]),
                (
                    Command::Rcpt {
                        recipient: "<b@example.net>".into(),
                        args: vec![],
                    },
                    vec![],
                ),
                (header("Subject", "test"), vec![]),
                (header("X-Spam-Flag", "NO"), vec![]),
                (Command::Eoh, vec![]),
                (Command::Body(format!("{GTUBE}\r\n").into_bytes()), vec![]),
                (
                    Command::EndOfBody(vec![]),
                    vec![Reply::ReplyCode(
                        "550 5.7.1 Message rejected as spam".into(),
                    )],
                ),
                // The next message on the same connection: ham, with the forged header
                // removed before our headers are added.
                (mail("a@example.org"), vec![]),
                (header("X-Spam-Flag", "YES"), vec![]),
                (header("x-spam-flag", "YES"), vec![]),
                (Command::Eoh, vec![]),
            ],
        )
        .await;
        let r = s
            .handle(Command::EndOfBody(b"hi\r\n".to_vec()))
            .await
            .unwrap();
        let edits: Vec<(&str, u32)> = r
            .iter()
            .filter_map(|r| match r {
                Reply::ChgHeader { index, name, .. } => Some((name.as_str(), *index)),
                _ => None,
            })
            .collect();
        assert_eq!(edits, [("X-Spam-Flag", 2), ("X-Spam-Flag", 1)]);
        assert!(matches!(r[2], Reply::AddHeader { .. }), "{r:?}");
        assert_eq!(r.last(), Some(&Reply::Accept));
        exchange(&mut s, vec![(Command::Quit, vec![])]).await;
        assert!(s.closed());
    }

    #[tokio::test]
    async fn trusted_clients_and_authenticated_senders_can_skip_the_scan() {
        let mut c = Config::default();
        c.trust.networks = vec!["192.0.2.0/24".parse().unwrap()];
        c.trust.authenticated_mode = TrustMode::Skip;
        // Skipping at CONNECT and MAIL needs their replies, so they are negotiated.
        let (n, _) = state::negotiate(POSTFIX_OFFER, &wants(&c)).unwrap();
        assert!(n.expects_reply(cmd::CONNECT) && n.expects_reply(cmd::MAIL));
        let (n, _) = state::negotiate(POSTFIX_OFFER, &wants(&Config::default())).unwrap();
        assert!(!n.expects_reply(cmd::CONNECT) && !n.expects_reply(cmd::MAIL));
        let skipping = negotiated_with(&c);
        let mut s = session(c);
        exchange(
            &mut s,
            vec![
                (Command::Optneg(POSTFIX_OFFER), vec![skipping.clone()]),
                (connect("192.0.2.7"), vec![Reply::Accept]),
                (Command::QuitNc, vec![]),
                (Command::Optneg(POSTFIX_OFFER), vec![skipping]),
                (connect("198.51.100.7"), vec![Reply::Continue]),
                (
                    Command::Macro {
                        stage: cmd::MAIL,
                        pairs: vec![("{auth_authen}".into(), "alice".into())],
                    },
                    vec![],
                ),
                (mail("alice@example.org"), vec![Reply::Accept]),
                (Command::EndOfBody(vec![]), vec![Reply::Accept]),
                // The next sender did not log in: the previous login does not carry over.
                (mail("mallory@example.org"), vec![Reply::Continue]),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn macros_keep_one_short_value_per_name_they_use() {
        let mut s = session(Config::default());
        exchange(
            &mut s,
            vec![(Command::Optneg(POSTFIX_OFFER), vec![negotiated()])],
        )
        .await;
        let mut pairs: Vec<(String, String)> = (0..100)
            .map(|i| ("i".to_string(), format!("{i}{}", "q".repeat(1000))))
            .collect();
        pairs.push(("{unused}".into(), "x".repeat(1000)));
        pairs.push(("i".into(), "QUEUEID".into()));
        s.handle(Command::Macro {
            stage: cmd::CONNECT,
            pairs,
        })
        .await
        .unwrap();
        assert_eq!(s.macros.get(cmd::CONNECT), [("i", "QUEUEID".to_string())]);
        s.handle(Command::Macro {
            stage: cmd::BODYEOB,
            pairs: vec![("i".into(), "é".repeat(1000))],
        })
        .await
        .unwrap();
        // The newest stage's value, cut to the bound at a character boundary.
        let v = s.macro_value("i").unwrap();
        assert!(
            v.len() <= MAX_MACRO_VALUE && v.starts_with('é'),
            "{}",
            v.len()
        );
    }

    #[tokio::test]
    async fn commands_out_of_order_end_the_session() {
        let mut s = session(Config::default());
        assert!(matches!(
            s.handle(mail("a@b")).await,
            Err(SessionError::OutOfOrder(_))
        ));
        let mut s = session(Config::default());
        exchange(
            &mut s,
            vec![
                (Command::Optneg(POSTFIX_OFFER), vec![negotiated()]),
                (connect("192.0.2.1"), vec![]),
            ],
        )
        .await;
        assert!(matches!(
            s.handle(Command::Body(b"x".to_vec())).await,
            Err(SessionError::OutOfOrder(_))
        ));
    }
}
