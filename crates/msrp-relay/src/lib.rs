//! MSRP relay (RFC 4976): AUTH with HTTP Digest, the session table, routing with path
//! rewriting, chunk streaming with back-pressure, hop-by-hop responses and failure REPORTs.
//!
//! The decisions (`route`, `sessions`, `peers`, `transactions`; Digest lives in msrp-auth) are
//! plain code tested without sockets; `conn` (a connection and its output), `reader` (its
//! reading side), `fast`, `forward` and `server` are the tokio driver around them.

mod auth;
mod conn;
mod fast;
mod forward;
pub mod options;
pub mod peers;
mod reader;
pub mod route;
mod server;
pub mod sessions;
pub mod stats;
pub mod throttle;
mod transactions;

pub use options::RelayOptions;

/// Locks `m`, taking over a lock a panicking task left poisoned: its tables stay usable (as in
/// the chat), where treating the poison as a failure would make every later request fail
/// until a restart.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub use server::Relay;
// Shared with the chat focus (msrp-auth); re-exported so `msrp_relay::digest` keeps working.
pub use msrp_auth::{BoxFuture, CredentialStore, digest, guard, log_throttle};
