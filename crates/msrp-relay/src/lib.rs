//! MSRP relay (RFC 4976): AUTH with HTTP Digest, the session table, routing with path
//! rewriting, chunk streaming with back-pressure, hop-by-hop responses and failure REPORTs.
//!
//! The decisions (`route`, `sessions`, `digest`) are plain code tested without sockets; `conn`
//! and `server` are the tokio driver around them.

mod auth;
mod conn;
pub mod digest;
mod fast;
mod forward;
pub mod guard;
pub mod log_throttle;
pub mod options;
pub mod peers;
pub mod route;
mod server;
pub mod sessions;

pub use options::RelayOptions;
pub use server::{BoxFuture, CredentialStore, Relay};
