//! One milter connection as a stream of commands: frames read off the socket under a
//! deadline, replies written back under a timeout. Knows nothing of what the commands mean.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::codec::{self, Command, FrameError, PayloadError, Reply};
use super::server::Stream;

/// Bytes asked of the socket per read when no frame is pending: enough for a burst of small
/// commands. An idle connection holds no more than this.
const READ_MIN: usize = 8 * 1024;

/// A read buffer grown past this by a large frame (a body chunk is up to 64 KB) is given back
/// once it is empty, so that an idle connection holds about [`READ_MIN`]. Kept at the largest
/// frame instead, 1,000 connections that had each carried one large message held 64 MB
/// between messages: a 10-minute soak's memory grew from 52 to 124 MB at a steady load.
const READ_KEEP: usize = 2 * READ_MIN;

/// Why a connection cannot go on. Each closes that one connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    #[error("bad frame")]
    Frame(#[from] FrameError),
    #[error("bad command")]
    Payload(#[from] PayloadError),
    #[error("connection closed in the middle of a frame ({0} bytes pending)")]
    Truncated(usize),
    #[error("no complete command by the deadline")]
    Deadline,
    #[error("the MTA did not take our reply within {0:?}")]
    WriteTimeout(Duration),
}

/// Room made for a batch of replies before encoding it.
const REPLY_ROOM: usize = 512;

pub struct Connection<S> {
    stream: S,
    buf: Vec<u8>,
    /// Where the unparsed bytes of `buf` start.
    start: usize,
    out: Vec<u8>,
    /// Bytes were read since our last reply: the peer waits for an ACK we have not sent.
    owe_ack: bool,
}

impl<S: Stream> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            buf: Vec::new(),
            start: 0,
            out: Vec::new(),
            owe_ack: false,
        }
    }

    /// The next command, or None when the peer closed the connection between two frames.
    /// The whole command must have arrived by `deadline`: bytes trickling in do not move it.
    /// Cancel-safe: bytes read stay buffered for the next call.
    pub async fn read_command(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Command>, ConnectionError> {
        loop {
            if let Some((frame, used)) = codec::parse_frame(&self.buf[self.start..])? {
                let command = Command::parse(frame)?;
                self.start += used;
                return Ok(Some(command));
            }
            // Keep the unparsed tail at the front so the buffer stays one frame long at most.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.is_empty() && self.buf.capacity() > READ_KEEP {
                self.buf = Vec::new();
            }
            // Room for the rest of the pending frame (its length is known once 4 bytes are
            // in, and was checked against the frame limit), or for a burst of small commands.
            let pending = codec::pending_frame_len(&self.buf).unwrap_or(0);
            self.buf
                .reserve(pending.saturating_sub(self.buf.len()).max(READ_MIN));
            // About to wait for more bytes with nothing written since the last read: the
            // ACK for that read would otherwise be delayed (see `Stream::ack_now`). A reply
            // carries the ACK by itself, so reads answered by one cost no extra system call.
            if self.owe_ack {
                self.stream.ack_now();
                self.owe_ack = false;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| ConnectionError::Deadline)??;
            self.owe_ack = read > 0;
            if read == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::Truncated(self.buf.len()))
                };
            }
        }
    }

    /// Writes replies, in order; the MTA must take them within `timeout`.
    pub async fn write_replies(
        &mut self,
        replies: &[Reply],
        timeout: Duration,
    ) -> Result<(), ConnectionError> {
        if replies.is_empty() {
            return Ok(());
        }
        self.out.clear();
        // The first reply's size: the negotiation, or the headers and verdict of a message
        // (a few hundred bytes), in one allocation rather than doubling up to it.
        self.out.reserve(REPLY_ROOM);
        for r in replies {
            r.encode(&mut self.out);
        }
        tokio::time::timeout(timeout, self.stream.write_all(&self.out))
            .await
            .map_err(|_| ConnectionError::WriteTimeout(timeout))??;
        self.owe_ack = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::codec::Optneg;
    use tokio::io::AsyncWriteExt;

    impl Stream for tokio::io::DuplexStream {}

    fn frame(c: &Command) -> Vec<u8> {
        let mut out = Vec::new();
        c.encode(&mut out);
        out
    }

    #[tokio::test]
    async fn commands_come_whole_however_the_bytes_arrive() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut conn = Connection::new(ours);
        let optneg = frame(&Command::Optneg(Optneg {
            version: 6,
            actions: 0x1ff,
            protocol: 0,
        }));
        let helo = frame(&Command::Helo("mx.example".into()));
        let bytes = [optneg, helo].concat();
        let writer = tokio::spawn(async move {
            for b in bytes {
                peer.write_all(&[b]).await.unwrap();
            }
            peer
        });
        let far = Instant::now() + Duration::from_secs(10);
        assert!(matches!(
            conn.read_command(far).await.unwrap(),
            Some(Command::Optneg(_))
        ));
        assert_eq!(
            conn.read_command(far).await.unwrap(),
            Some(Command::Helo("mx.example".into()))
        );
        drop(writer.await.unwrap());
        assert_eq!(conn.read_command(far).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_does_not_move_the_deadline() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut conn = Connection::new(ours);
        let helo = frame(&Command::Helo("x".repeat(40)));
        tokio::spawn(async move {
            for b in helo {
                if peer.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            conn.read_command(deadline).await,
            Err(ConnectionError::Deadline)
        ));
    }

    #[tokio::test]
    async fn an_idle_connection_gives_back_what_a_large_chunk_took() {
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let mut conn = Connection::new(ours);
        let chunk = frame(&Command::Body(vec![b'x'; codec::MAX_BODY_CHUNK]));
        peer.write_all(&chunk).await.unwrap();
        let far = Instant::now() + Duration::from_secs(10);
        assert!(matches!(
            conn.read_command(far).await.unwrap(),
            Some(Command::Body(b)) if b.len() == codec::MAX_BODY_CHUNK
        ));
        assert!(conn.buf.capacity() >= codec::MAX_BODY_CHUNK);
        // Waiting for the next command, the buffer is back to a small one (1,000 idle
        // connections in 16 MB, not 64).
        peer.write_all(&frame(&Command::Helo("mx".into())))
            .await
            .unwrap();
        assert!(conn.read_command(far).await.unwrap().is_some());
        assert!(
            conn.buf.capacity() <= 16 * 1024,
            "{} bytes kept",
            conn.buf.capacity()
        );
    }

    #[tokio::test]
    async fn a_frame_cut_off_by_the_peer_is_an_error() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut conn = Connection::new(ours);
        peer.write_all(&[0, 0, 0, 13, b'O', 0]).await.unwrap();
        drop(peer);
        let far = Instant::now() + Duration::from_secs(10);
        assert!(matches!(
            conn.read_command(far).await,
            Err(ConnectionError::Truncated(6))
        ));
    }
}
