//! Configuration: a TOML file validated into a typed model, every problem reported at once.
//!
//! - [`model`]: the validated configuration every part of the daemon reads (and `lists`, its
//!   DNS list and allowlist part);
//! - `read`, `read_lists`, `reader`: from the file's spanned TOML tree to the model, each
//!   problem with file, line, column and dotted key;
//! - `reload`: which keys a reload (SIGHUP) cannot change ([`Config::keep_restart_only`]);
//! - [`names`]: checks on DNS names, networks and addresses, shared with the list files.
//! - [`hub`]: the hub's own config file.
//!
//! The sample `config/repmilter.toml` documents every key.

pub mod hub;
mod lists;
pub mod model;
pub mod names;
mod read;
mod read_lists;
mod reader;
mod reload;

pub use model::*;
pub use read::{ConfigError, MAX_CONFIG_FILE};
pub use reader::{Problem, parse_duration};

#[cfg(test)]
mod tests;
