//! repmilter: an email reputation filter that Postfix and Sendmail call through the milter
//! protocol.
//!
//! # Layout
//! A message flows one way through these modules:
//!
//! - [`milter`]: the protocol. `codec` turns bytes into commands and replies into bytes,
//!   `state` is the protocol state machine, `server` accepts connections.
//! - [`session`]: one MTA connection. Collects the envelope, headers and body of each
//!   message, runs the pipeline at end of message and turns the decision into replies.
//! - [`message`]: the message as the stages see it.
//! - [`scoring`]: symbols, the pipeline of stages under a deadline, and `policy`, which maps
//!   a score to an action and the SpamAssassin-compatible headers.
//! - [`signatures`]: content rules (SpamAssassin syntax, phrase lists) and the GTUBE test.
//! - [`reputation`]: DNS lists (lookups under a per-message budget, cache, zone probes,
//!   Received hops) and local allowlists.
//! - [`warn`]: rate-limited warnings; [`logging`]: one escaped line per event.
//! - [`files`]: capped reads of operator files (never a FIFO or a device).
//! - [`config`]: the TOML file, validated into a typed model with every problem reported.
//! - [`daemon`]: `repmilter serve`: listener, signals, reload, shutdown.
//!
//! Start reading at [`session::Session::handle`].

#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod files;
pub mod logging;
pub mod message;
pub mod milter;
pub mod reputation;
pub mod scoring;
pub mod session;
pub mod signatures;
pub mod warn;

/// Displays an error with its whole `source()` chain: `outer: inner: root cause`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
