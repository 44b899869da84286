//! The MTA side of the protocol, over any stream: used by the integration tests and benches
//! to drive the daemon as Postfix would, and the seed of a load generator.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{self, Command, ConnectAddr, FrameError, Optneg, PayloadError, Reply, cmd};
use super::state::Negotiated;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    #[error("bad frame from filter")]
    Frame(#[from] FrameError),
    #[error("bad reply from filter")]
    Payload(#[from] PayloadError),
    #[error("filter closed the connection")]
    Closed,
    #[error("filter answered negotiation with {0:?}")]
    Negotiation(Reply),
}

/// What Postfix 3.x offers: protocol 6, every action, every protocol flag.
pub const POSTFIX_OFFER: Optneg = Optneg {
    version: 6,
    actions: 0x1ff,
    protocol: 0x1f_ffff,
};

/// One mail transaction to send through a session: envelope and macros (the message
/// itself is given apart).
#[derive(Debug, Clone, Default)]
pub struct Transaction<'a> {
    pub from: &'a str,
    pub rcpts: &'a [&'a str],
    /// Macros sent before MAIL, as Postfix sends `{auth_authen}` and `i`.
    pub mail_macros: &'a [(&'a str, &'a str)],
}

pub struct Client<S> {
    stream: S,
    buf: Vec<u8>,
    out: Vec<u8>,
    negotiated: Negotiated,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
            out: Vec::new(),
            negotiated: Negotiated::NONE,
        }
    }

    /// Starts an SMTP session as Postfix does: negotiates with [`POSTFIX_OFFER`], then sends
    /// CONNECT. Returns the client and the filter's answer to CONNECT.
    pub async fn open(
        stream: S,
        hostname: &str,
        addr: ConnectAddr,
    ) -> Result<(Self, Vec<Reply>), ClientError> {
        let mut c = Client::new(stream);
        c.negotiate(POSTFIX_OFFER).await?;
        let r = c.connect(hostname, addr).await?;
        Ok((c, r))
    }

    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    /// Sends raw bytes, for tests of hostile input.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    pub async fn send(&mut self, command: &Command) -> Result<(), ClientError> {
        self.out.clear();
        command.encode(&mut self.out);
        self.stream.write_all(&self.out).await?;
        Ok(())
    }

    pub async fn recv(&mut self) -> Result<Reply, ClientError> {
        loop {
            if let Some((frame, used)) = codec::parse_frame(&self.buf)? {
                let reply = Reply::parse(frame)?;
                self.buf.drain(..used);
                return Ok(reply);
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Sends a command and collects replies up to the final one, or none if the negotiated
    /// flags say the filter will not answer it.
    pub async fn command(&mut self, command: &Command) -> Result<Vec<Reply>, ClientError> {
        self.send(command).await?;
        if !self.negotiated.expects_reply(command.code()) {
            return Ok(Vec::new());
        }
        let mut replies = Vec::new();
        loop {
            let r = self.recv().await?;
            let last = r.is_final();
            replies.push(r);
            if last {
                return Ok(replies);
            }
        }
    }

    pub async fn negotiate(&mut self, offer: Optneg) -> Result<Reply, ClientError> {
        self.send(&Command::Optneg(offer)).await?;
        let reply = self.recv().await?;
        match &reply {
            Reply::Optneg { negotiated, .. } => {
                self.negotiated = Negotiated {
                    version: negotiated.version,
                    actions: negotiated.actions,
                    protocol: negotiated.protocol,
                };
                Ok(reply)
            }
            _ => Err(ClientError::Negotiation(reply)),
        }
    }

    pub async fn connect(
        &mut self,
        hostname: &str,
        addr: ConnectAddr,
    ) -> Result<Vec<Reply>, ClientError> {
        self.command(&Command::Connect {
            hostname: hostname.into(),
            addr,
        })
        .await
    }

    /// Runs one message from MAIL to end of message, as Postfix does: steps the filter asked
    /// to skip are not sent, and the body goes in chunks of at most 64 KiB. Returns the replies
    /// of the first step that did not continue (for instance an accept at MAIL), or those of
    /// end of message.
    pub async fn message(
        &mut self,
        env: &Transaction<'_>,
        raw: &[u8],
    ) -> Result<Vec<Reply>, ClientError> {
        Ok(self.message_timed(env, raw).await?.0)
    }

    /// [`Client::message`], with the time from sending end-of-body to the final reply (what
    /// an MTA waits on the filter), or None when a step before it ended the message.
    pub async fn message_timed(
        &mut self,
        env: &Transaction<'_>,
        raw: &[u8],
    ) -> Result<(Vec<Reply>, Option<std::time::Duration>), ClientError> {
        use super::codec::proto;
        let n = self.negotiated;
        let stops = |r: &[Reply]| r.iter().any(|r| r.is_final() && *r != Reply::Continue);
        if !env.mail_macros.is_empty() {
            self.send(&Command::Macro {
                stage: cmd::MAIL,
                pairs: env
                    .mail_macros
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await?;
        }
        let r = self
            .command(&Command::Mail {
                sender: format!("<{}>", env.from),
                args: vec![],
            })
            .await?;
        if stops(&r) {
            return Ok((r, None));
        }
        for rcpt in env.rcpts {
            if !n.has(proto::NORCPT) {
                let r = self
                    .command(&Command::Rcpt {
                        recipient: format!("<{rcpt}>"),
                        args: vec![],
                    })
                    .await?;
                if stops(&r) {
                    return Ok((r, None));
                }
            }
        }
        if !n.has(proto::NODATA) {
            let r = self.command(&Command::Data).await?;
            if stops(&r) {
                return Ok((r, None));
            }
        }
        // Every header, as an MTA passes them (the daemon's own bounds are what is tested).
        let mut headers = Vec::new();
        let body_start = crate::message::each_header(raw, |n, v| headers.push((n, v)));
        if !n.has(proto::NOHDRS) {
            for (name, value) in headers {
                let r = self.command(&Command::Header { name, value }).await?;
                if stops(&r) {
                    return Ok((r, None));
                }
            }
        }
        if !n.has(proto::NOEOH) {
            let r = self.command(&Command::Eoh).await?;
            if stops(&r) {
                return Ok((r, None));
            }
        }
        if !n.has(proto::NOBODY) {
            for chunk in raw[body_start..].chunks(codec::MAX_BODY_CHUNK) {
                let r = self.command(&Command::Body(chunk.to_vec())).await?;
                if r.contains(&Reply::Skip) {
                    break;
                }
                if stops(&r) {
                    return Ok((r, None));
                }
            }
        }
        let sent = std::time::Instant::now();
        let r = self.command(&Command::EndOfBody(Vec::new())).await?;
        Ok((r, Some(sent.elapsed())))
    }

    pub async fn abort(&mut self) -> Result<(), ClientError> {
        self.send(&Command::Abort).await
    }

    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.send(&Command::Quit).await?;
        self.stream.shutdown().await?;
        Ok(())
    }
}
