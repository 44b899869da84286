//! The milter protocol only; knows nothing about spam.
//!
//! - [`codec`]: frames to and from typed commands and replies; pure, no I/O.
//! - [`connection`]: a socket as a stream of commands, under deadlines.
//! - [`state`]: which command may come next, negotiation, which commands want a reply.
//! - [`server`]: listeners, connection permits, shutdown fan-out; [`Listen`]: where.
//! - [`client`]: the MTA side, for tests, benches and load generation.

pub mod client;
pub mod codec;
pub mod connection;
mod listen;
pub mod server;
pub mod state;

pub use listen::Listen;
