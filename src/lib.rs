//! repmilter: an email reputation filter that Postfix and Sendmail call through the milter
//! protocol.
//!
//! # Layout
//! A message flows one way, from the top of this list down and back up as replies; a module
//! imports only modules below it.
//!
//! - [`daemon`]: `repmilter serve`: listener, signals, reloads (SIGHUP and the rule-file
//!   poll), shutdown; the runtime.
//! - [`monitor`]: the `[metrics] listen` HTTP listener (Prometheus metrics, dashboard,
//!   summary) and `repmilter stats`; [`batch`]: `repmilter check` over many messages.
//! - [`session`]: one MTA connection: turns milter commands into a scan input, has the engine
//!   judge it at end of message, turns the decision into replies.
//! - [`engine`]: the config, rule set and pipeline in use, rebuilt on reload; `pipeline` lists
//!   the stages and runs them under a message's deadline (compute stages on blocking threads,
//!   lookups on the runtime).
//! - The stages: [`signatures`] (content rules in SpamAssassin syntax, phrase lists, GTUBE),
//!   [`reputation`] (DNS lists with their cache and probes, Received hops, local allowlists).
//! - [`learn`]: the learned content model (features, naive Bayes), trained from reports.
//! - [`hub`]: the central reputation service (being built): correlation model and store.
//! - [`feedback`]: events for the hub (verdicts, reported samples) and their durable spool.
//! - [`policy`]: score to action, and the SpamAssassin-compatible headers.
//! - [`scan`]: the words stages share: symbols, verdicts, the scan input, the stage traits.
//! - [`message`]: the message as the stages see it (headers, body, decoded MIME view).
//! - [`milter`]: the protocol only: `codec` (bytes to commands, replies to bytes), `state`
//!   (the state machine), `server` (listeners, permits, shutdown), `client` (the MTA side).
//! - [`config`]: the TOML file, validated into a typed model with every problem reported.
//! - [`files`], [`logging`], [`warn`], [`problem`], [`http`]: capped file reads, escaped log
//!   lines (text, JSON, syslog), rate-limited warnings, problems in files with their
//!   positions, a bounded HTTP serve loop.
//! - [`metrics`]: counters, histograms, recent verdicts and the action history, recorded by
//!   every module above and read by the monitor listener.
//!
//! Start reading at [`session::Session::handle`].

#![forbid(unsafe_code)]

pub mod batch;
pub mod config;
pub mod daemon;
pub mod decimal;
pub mod engine;
pub mod feedback;
pub mod files;
pub mod http;
pub mod hub;
pub mod learn;
pub mod loadgen;
pub mod logging;
pub mod manpage;
pub mod message;
pub mod metrics;
pub mod milter;
pub mod monitor;
pub mod policy;
pub mod problem;
pub mod reputation;
pub mod scan;
pub mod session;
pub mod signatures;
#[cfg(test)]
mod testing;
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
