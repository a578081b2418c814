//! What the relay (RFC 4976 AUTH) and the chat focus (SIP Digest for INVITE) share, so that
//! neither depends on the other: server-side HTTP Digest (RFC 7616: stateless nonces, the
//! nonce-count table), the credential store they ask, the password-guessing guard one daemon
//! runs for both doors, and throttled logging of what a peer can cause at will.

pub mod digest;
pub mod guard;
pub mod log_throttle;
pub mod rate;

use std::future::Future;
use std::pin::Pin;

use digest::Algorithm;

/// A boxed future (object-safe async trait methods without a macro crate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the services find the HA1 of an account (the daemon's user store).
pub trait CredentialStore: Send + Sync + 'static {
    /// The lowercase-hex HA1 of `user` in `realm` for `alg`; `Ok(None)` for no such account.
    fn ha1<'a>(
        &'a self,
        user: &'a str,
        realm: &'a str,
        alg: Algorithm,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;

    /// The Digest algorithms the store can verify, strongest first: what a challenge
    /// offers (a table of MD5 hashes cannot check a SHA-256 response).
    fn algorithms(&self) -> &[Algorithm] {
        &[Algorithm::Sha256, Algorithm::Md5]
    }
}
