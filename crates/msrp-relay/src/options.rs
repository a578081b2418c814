//! What the relay needs to know about its deployment (filled from msrpd's configuration).

use std::time::Duration;

use msrp::Limits;

/// The method AG's msrplib sends before each file transfer to learn where to resume (its
/// response carries an `Offset` header); relayed by default so Blink's transfers work.
pub const FILE_OFFSET: &str = "FILE_OFFSET";

/// Relay settings; see docs/CONFIG.md for the meaning and defaults of each.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Host written into Use-Path (and recognised as ours in To-Paths).
    pub hostname: String,
    /// Realms served; the first is the default.
    pub domains: Vec<String>,
    /// Other host names or addresses that mean "this relay" in a To-Path (listen addresses).
    pub aliases: Vec<String>,
    /// The relay's listening ports. A To-Path URI is the relay's only with one of them (RFC
    /// 4975 §6.1 compares ports too), so another MSRP service on the same host — msrpd's own
    /// chat focus — is a next hop, not the relay. Empty: any port.
    pub ports: Vec<u16>,
    pub min_expires: u32,
    pub default_expires: u32,
    pub max_expires: u32,
    pub nonce_lifetime: Duration,
    pub max_auth_failures: u32,
    pub auth_timeout: Duration,
    pub transaction_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Sessions one connection may hold (RFC 4976 lets a connection AUTH several times); more
    /// AUTHs get 403. Bounds the session table at `max_connections` times this.
    pub max_sessions_per_connection: usize,
    pub basic_auth_domains: Vec<String>,
    pub extra_methods: Vec<String>,
    pub limits: Limits,
    /// Most bytes written to one peer in one chunk before it is interrupted (`+`).
    pub max_chunk: usize,
    /// Read buffer size per connection: also the largest body piece handed on at once.
    pub read_buffer: usize,
    /// Output queued for one connection (bytes) beyond which its producer writes it out
    /// before going on: the back-pressure bound per connection and direction.
    pub output_buffer: usize,
    /// Frames queued for one connection before their producer writes them out itself.
    pub output_messages: usize,
    /// Password guessing limits, per account, address and nonce; one guard may be shared with
    /// the chat's SIP Digest so that both count together.
    pub guard: std::sync::Arc<crate::guard::AuthGuard>,
    /// How long a chunk being streamed through may wait for more of its sender's bytes while
    /// it holds the next hop's connection; then it is cut (`+`) and the connection is free.
    pub chunk_hold: Duration,
    /// After a failed dial, requests for that next hop fail at once for this long (481)
    /// instead of each waiting for its own dial to time out.
    pub dial_backoff: Duration,
    /// Rates and quotas (`[relay.limits]`); unlimited by default.
    pub throttle: crate::throttle::ThrottleOptions,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            hostname: "localhost".into(),
            domains: vec!["localhost".into()],
            aliases: Vec::new(),
            ports: Vec::new(),
            min_expires: 60,
            default_expires: 600,
            max_expires: 3600,
            nonce_lifetime: Duration::from_secs(300),
            max_auth_failures: 3,
            auth_timeout: Duration::from_secs(30),
            transaction_timeout: Duration::from_secs(30),
            max_connections: 100_000,
            max_connections_per_ip: 1000,
            max_sessions_per_connection: 16,
            basic_auth_domains: Vec::new(),
            extra_methods: vec![FILE_OFFSET.into()],
            limits: Limits::default(),
            max_chunk: 256 * 1024,
            read_buffer: 256 * 1024,
            output_buffer: 256 * 1024,
            output_messages: 4096,
            chunk_hold: Duration::from_secs(1),
            dial_backoff: Duration::from_secs(5),
            guard: std::sync::Arc::default(),
            throttle: crate::throttle::ThrottleOptions::default(),
        }
    }
}

impl RelayOptions {
    /// True when `host` names this relay.
    pub fn is_local_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case(&self.hostname)
            || self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(host))
    }

    /// True when `uri` names this relay: one of its hosts, and one of its ports (2855 when the
    /// URI has none, RFC 4975 §15.1).
    pub fn is_me(&self, uri: &msrp::Uri) -> bool {
        self.is_local_host(uri.host()) && (self.ports.is_empty() || self.ports.contains(&uri.port().unwrap_or(2855)))
    }

    /// The realm for an AUTH whose To-Path names `host` (RFC 4976 §5.1: one relay, many
    /// domains).
    pub fn realm_for(&self, host: &str) -> &str {
        self.domains.iter().find(|d| d.eq_ignore_ascii_case(host)).unwrap_or(&self.domains[0])
    }
}
