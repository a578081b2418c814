//! Test fixtures for the workspace's integration tests (a dev-dependency only): the one MSRP
//! test client, [`Endpoint`], written from the project's codec (read frame by frame, or run by
//! itself as an [`Auto`]), a relay on 127.0.0.1 port 0
//! ([`start_relay`]), throw-away TLS certificates ([`tls_for`], [`tls_configs`]), accounts as
//! clear passwords ([`users`]) and Digest answers ([`credentials`]).

// Fixtures hold sockets, TLS configurations and codec state that no test prints.
#![allow(missing_debug_implementations)]

mod auto;
mod endpoint;
mod relay;
mod tls;
mod users;

pub use auto::{Auto, Got};
pub use endpoint::{BoxRead, BoxWrite, Endpoint, Frame};
pub use relay::{TestRelay, options, start_relay};
pub use tls::{Tls, connector, tls_configs, tls_for};
pub use users::{Users, credentials, users};

/// How long a test waits for anything.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until `f` holds (the server's state settles after the wire says so), 5 s at most.
pub async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("not in time: {what}");
}
