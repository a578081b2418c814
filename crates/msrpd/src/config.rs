//! The one TOML configuration file. Every key is optional: an empty file (or none) gives the
//! embedded defaults documented in docs/CONFIG.md and msrpd.example.toml.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable naming the configuration file when `-c` is not given.
pub const CONFIG_ENV: &str = "MSRPD_CONFIG";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database and generated certificates live.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub accounts: AccountsConfig,
    pub auth: AuthConfig,
    pub relay: RelayConfig,
    pub chat: ChatConfig,
    pub metrics: MetricsConfig,
}

/// `[metrics]`: Prometheus text at `/metrics` (and `/health`) when `listen` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:PORT` to serve on (off when absent); keep it on a private address.
    pub listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("msrpd-data"),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            database: DatabaseConfig::default(),
            accounts: AccountsConfig::default(),
            auth: AuthConfig::default(),
            relay: RelayConfig::default(),
            chat: ChatConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `RUST_LOG`-style filter; the `RUST_LOG` environment variable wins when set.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. Empty: a self-signed certificate for `relay.hostname` is
    /// generated into `data_dir` on first start.
    pub certificate: Option<PathBuf>,
    /// PEM private key for `certificate`.
    pub private_key: Option<PathBuf>,
    /// Extra PEM CA or peer certificates trusted for outgoing TLS (relay-to-relay hops).
    pub trusted_certificates: Vec<PathBuf>,
    /// Also trust the operating system's root certificates for outgoing TLS.
    pub system_roots: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { certificate: None, private_key: None, trusted_certificates: Vec::new(), system_roots: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH`, `postgres://USER:PASSWORD@HOST/DB` or `mysql://USER:PASSWORD@HOST/DB`
    /// (MariaDB too). Empty: `sqlite://<data_dir>/msrpd.sqlite`.
    pub url: Option<String>,
    /// Seconds an account's HA1 is remembered after a lookup (0: ask the database every
    /// time). Password changes and removals take effect within this time; while the database
    /// is down, accounts looked up within it can still authenticate.
    pub cache_seconds: u64,
    /// Most connections to the database at once.
    pub pool_size: u32,
    /// Longest wait, milliseconds, for a connection (connecting included) before a lookup fails.
    pub connect_timeout_ms: u64,
    /// Longest wait, milliseconds, for one query's answer before it fails.
    pub query_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, cache_seconds: 10, pool_size: 8, connect_timeout_ms: 3000, query_timeout_ms: 3000 }
    }
}

/// Which stock table layout `[accounts]` starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountSchema {
    /// msrpd's own table, which `msrpd user` manages.
    #[default]
    Msrpd,
    /// Kamailio's `subscriber` (auth_db): `password`, `ha1`, `ha1b`.
    Kamailio,
    /// OpenSIPS 3's `subscriber` (auth_db): `password`, `ha1`, `ha1_sha256`.
    Opensips,
}

/// `[accounts]`: where accounts are read. `schema` fills in a stock layout; every other key
/// overrides one part of it, and an empty string removes a column (`domain = ""`: one realm).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    pub schema: AccountSchema,
    pub table: Option<String>,
    pub username: Option<String>,
    pub domain: Option<String>,
    /// Clear-text password column (Kamailio's `calculate_ha1 = yes`).
    pub password: Option<String>,
    /// MD5(username:realm:password).
    pub ha1: Option<String>,
    /// MD5(username@domain:realm:password), for clients that send `username="user@domain"`.
    pub ha1b: Option<String>,
    /// SHA-256(username:realm:password) (OpenSIPS 3).
    pub ha1_sha256: Option<String>,
    /// An SQL condition every account must meet, e.g. `enabled = 1`.
    pub condition: Option<String>,
    /// Let `msrpd user add/passwd/remove` write to a table of another schema.
    pub manage: Option<bool>,
}

/// Password guessing limits, for the relay's AUTH and the chat's SIP Digest together
/// (`msrp_relay::guard`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Failures one account may have (in 5 minutes) before it is blocked.
    pub account_failures: u32,
    /// Failures one source address may have, over all accounts, before it is blocked.
    pub address_failures: u32,
    /// Wrong answers one nonce may take before a fresh challenge is needed.
    pub nonce_failures: u32,
    /// Longest block, seconds (the first is 1 s, doubling with each further failure).
    pub max_block: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let g = msrp_relay::guard::GuardOptions::default();
        AuthConfig {
            account_failures: g.account_failures,
            address_failures: g.address_failures,
            nonce_failures: g.nonce_failures,
            max_block: g.max_block.as_secs(),
        }
    }
}

impl AuthConfig {
    pub fn guard_options(&self) -> msrp_relay::guard::GuardOptions {
        msrp_relay::guard::GuardOptions {
            account_failures: self.account_failures,
            address_failures: self.address_failures,
            nonce_failures: self.nonce_failures,
            max_block: std::time::Duration::from_secs(self.max_block),
            ..msrp_relay::guard::GuardOptions::default()
        }
    }

    fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("account_failures", self.account_failures),
            ("address_failures", self.address_failures),
            ("nonce_failures", self.nonce_failures),
        ] {
            if v == 0 {
                return Err(format!("auth.{name} must be positive"));
            }
        }
        if self.max_block == 0 {
            return Err("auth.max_block must be positive".into());
        }
        at_most(
            "auth",
            &[
                ("account_failures", u64::from(self.account_failures), 1000),
                ("address_failures", u64::from(self.address_failures), 100_000),
                ("nonce_failures", u64::from(self.nonce_failures), 1000),
                ("max_block", self.max_block, DAY),
            ],
        )
    }
}

/// Where a listener binds: `msrps://IP:PORT` (TLS) or `msrp://IP:PORT` (plain TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Listen {
    pub tls: bool,
    pub addr: SocketAddr,
}

impl TryFrom<String> for Listen {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("msrps://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("msrp://") {
            (false, r)
        } else {
            return Err(format!("listen address {s:?} must start with msrps:// or msrp://"));
        };
        let addr = rest.parse().map_err(|_| format!("listen address {s:?}: expected IP:PORT after the scheme"))?;
        Ok(Listen { tls, addr })
    }
}

impl From<Listen> for String {
    fn from(l: Listen) -> String {
        l.to_string()
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", if self.tls { "msrps" } else { "msrp" }, self.addr)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub enabled: bool,
    pub listen: Vec<Listen>,
    /// The host written into Use-Path; a DNS name (or IP) of the certificate when TLS is used.
    pub hostname: String,
    /// Realms served. An AUTH whose To-Path host is one of them uses that realm, otherwise the
    /// first one.
    pub domains: Vec<String>,
    /// Bounds and default of the session lifetime asked for in AUTH (RFC 4976 §5.1, seconds).
    pub min_expires: u32,
    pub default_expires: u32,
    pub max_expires: u32,
    /// How long a Digest nonce stays valid, seconds; older ones get `stale=true`.
    pub nonce_lifetime: u64,
    /// Failed AUTH attempts after which the connection is closed.
    pub max_auth_failures: u32,
    /// Seconds a new connection has to authenticate (or to be used for delivery).
    pub auth_timeout: u64,
    /// Seconds to wait for the next hop's response before a 408 failure REPORT (RFC 4975 §7.3).
    pub transaction_timeout: u64,
    /// Most simultaneous connections, and most per source address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Sessions one connection may authenticate (more AUTHs get 403).
    pub max_sessions_per_connection: usize,
    /// Domains where `Authorization: Basic` is accepted over TLS (off everywhere by default).
    pub basic_auth_domains: Vec<String>,
    /// Methods forwarded besides SEND, REPORT and NICKNAME (others get 501). The default,
    /// `FILE_OFFSET`, is what AG's msrplib sends before every file transfer to learn where to
    /// resume; its response (with an `Offset` header) is relayed back end to end.
    pub extra_methods: Vec<String>,
    /// Bytes read from a connection at once: also the most body bytes held per connection and
    /// direction (a forwarded body is written on before more is read, so a slow receiver
    /// holds back only its own sender).
    pub read_buffer: usize,
    /// Bytes queued for one connection before their producer writes them out itself
    /// (back-pressure per connection and direction).
    pub output_buffer: usize,
    /// Frames queued for one connection before their producer writes them out itself (the
    /// same back-pressure, counted in messages).
    pub output_messages: usize,
    /// Largest chunk the relay sends before interrupting it with `+` so that other messages
    /// to the same peer can pass (RFC 4975 §7.1, bytes).
    pub max_chunk: usize,
    /// Milliseconds a chunk streamed through may wait for more of its sender's bytes while it
    /// holds the next hop's connection; then it is cut with `+` and the connection is free.
    pub chunk_hold_ms: u64,
    /// Milliseconds after a failed dial during which requests for that next hop get 481 at
    /// once instead of each dialling again (0: every request dials).
    pub dial_backoff_ms: u64,
    /// Decoder limits (RFC 4975 framing): start line, header line, header count, head bytes,
    /// body of a non-SEND request.
    pub max_start_line: usize,
    pub max_header_line: usize,
    pub max_headers: usize,
    pub max_head_bytes: usize,
    pub max_non_send_body: u64,
    /// Rates and quotas (`[relay.limits]`, with `[relay.limits.domain."…"]` overrides).
    pub limits: LimitsConfig,
}

/// One set of rates and quotas; absent keys are unlimited (or, in a domain's table, the
/// global value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Bytes per second one session may send (its connection is read more slowly beyond).
    pub session_rate: Option<u64>,
    /// Bytes per second all sessions of one account may send together.
    pub user_rate: Option<u64>,
    /// Sessions one account may hold at once (AUTH beyond: 403).
    pub user_sessions: Option<usize>,
    /// AUTH requests per second from one address (beyond: 403).
    pub auth_rate: Option<u32>,
    /// Chat messages per second one participant may send (read more slowly beyond).
    pub message_rate: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(flatten)]
    pub global: RateLimits,
    /// Per domain (realm, or a chat participant's SIP domain).
    pub domain: std::collections::BTreeMap<String, RateLimits>,
}

impl LimitsConfig {
    fn rates(l: &RateLimits) -> msrp_relay::throttle::Limits {
        msrp_relay::throttle::Limits {
            session_rate: l.session_rate,
            user_rate: l.user_rate,
            user_sessions: l.user_sessions,
            auth_rate: l.auth_rate,
        }
    }

    /// `message_rate` per domain (lower-case), for the chat.
    pub fn message_rate_domains(&self) -> std::collections::HashMap<String, u32> {
        self.domain.iter().filter_map(|(d, l)| l.message_rate.map(|r| (d.to_ascii_lowercase(), r))).collect()
    }

    pub fn throttle(&self) -> msrp_relay::throttle::ThrottleOptions {
        msrp_relay::throttle::ThrottleOptions {
            global: Self::rates(&self.global),
            domains: self.domain.iter().map(|(d, l)| (d.to_ascii_lowercase(), Self::rates(l))).collect(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        for (name, l) in std::iter::once(("relay.limits".to_owned(), &self.global))
            .chain(self.domain.iter().map(|(d, l)| (format!("relay.limits.domain.{d:?}"), l)))
        {
            let values = [
                ("session_rate", l.session_rate),
                ("user_rate", l.user_rate),
                ("user_sessions", l.user_sessions.map(|n| n as u64)),
                ("auth_rate", l.auth_rate.map(u64::from)),
                ("message_rate", l.message_rate.map(u64::from)),
            ];
            for (key, v) in values {
                match v {
                    Some(0) => return Err(format!("{name}.{key} must be positive (leave it out for no limit)")),
                    Some(v) if v > 1 << 40 => {
                        return Err(format!("{name}.{key} = {v} is above its bound of {}", 1u64 << 40));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The relay's own defaults (`RelayOptions::default`), in the configuration's units: one
/// source, so that the file's defaults and the library's cannot drift apart (issue 12).
impl Default for RelayConfig {
    fn default() -> Self {
        let o = msrp_relay::RelayOptions::default();
        let limits = o.limits;
        RelayConfig {
            enabled: true,
            listen: vec![Listen { tls: true, addr: SocketAddr::from(([127, 0, 0, 1], 2855)) }],
            hostname: o.hostname,
            domains: o.domains,
            min_expires: o.min_expires,
            default_expires: o.default_expires,
            max_expires: o.max_expires,
            nonce_lifetime: o.nonce_lifetime.as_secs(),
            max_auth_failures: o.max_auth_failures,
            auth_timeout: o.auth_timeout.as_secs(),
            transaction_timeout: o.transaction_timeout.as_secs(),
            max_connections: o.max_connections,
            max_connections_per_ip: o.max_connections_per_ip,
            max_sessions_per_connection: o.max_sessions_per_connection,
            basic_auth_domains: o.basic_auth_domains,
            extra_methods: o.extra_methods,
            read_buffer: o.read_buffer,
            max_chunk: o.max_chunk,
            output_buffer: o.output_buffer,
            output_messages: o.output_messages,
            chunk_hold_ms: o.chunk_hold.as_millis() as u64,
            dial_backoff_ms: o.dial_backoff.as_millis() as u64,
            max_start_line: limits.max_start_line,
            max_header_line: limits.max_header_line,
            max_headers: limits.max_headers,
            max_head_bytes: limits.max_head_bytes,
            max_non_send_body: limits.max_non_send_body,
            limits: LimitsConfig::default(),
        }
    }
}

impl RelayConfig {
    pub fn limits(&self) -> msrp::Limits {
        msrp::Limits {
            max_start_line: self.max_start_line,
            max_header_line: self.max_header_line,
            max_headers: self.max_headers,
            max_head_bytes: self.max_head_bytes,
            max_non_send_body: self.max_non_send_body,
        }
    }
}

/// A SIP listener: `udp://IP:PORT`, `tcp://IP:PORT` or `tls://IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SipListen {
    pub transport: SipTransport,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

impl TryFrom<String> for SipListen {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (scheme, rest) =
            s.split_once("://").ok_or_else(|| format!("SIP listener {s:?}: expected udp://, tcp:// or tls://"))?;
        let transport = match scheme {
            "udp" => SipTransport::Udp,
            "tcp" => SipTransport::Tcp,
            "tls" => SipTransport::Tls,
            _ => return Err(format!("SIP listener {s:?}: expected udp://, tcp:// or tls://")),
        };
        let addr = rest.parse().map_err(|_| format!("SIP listener {s:?}: expected IP:PORT after the scheme"))?;
        Ok(SipListen { transport, addr })
    }
}

impl From<SipListen> for String {
    fn from(l: SipListen) -> String {
        l.to_string()
    }
}

impl fmt::Display for SipListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
            SipTransport::Tls => "tls",
        };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("network {s:?}: expected IP or IP/PREFIX");
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.as_str(), None),
        };
        let addr: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Network { addr, prefix })
    }
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        format!("{}/{}", n.addr, n.prefix)
    }
}

/// `"any"` or a list of room names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rooms {
    Keyword(String),
    List(Vec<String>),
}

/// A password kept in the configuration: written and read as a plain string, never shown by
/// `Debug` (a failed test's message, a log line) and masked by `msrpd check-config`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// What `check-config` prints in its place.
    pub fn masked(&self) -> Secret {
        Secret(if self.0.is_empty() { String::new() } else { "********".into() })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.masked().0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    pub enabled: bool,
    /// Rooms are `sip:ROOM@domain`.
    pub domain: String,
    pub sip_listen: Vec<SipListen>,
    /// Where participants' MSRP connections arrive.
    pub msrp_listen: Vec<Listen>,
    /// Host written into the server's MSRP URIs and SDP. Empty: the IP of the MSRP listener.
    pub msrp_host: String,
    /// Source networks whose SIP requests are admitted without a Digest challenge (identity
    /// from P-Asserted-Identity, else From).
    pub trusted_networks: Vec<Network>,
    /// Also trust those networks over UDP, whose source address can be forged.
    pub trusted_over_udp: bool,
    /// `"any"` (created on first INVITE) or a list of room names.
    pub rooms: Rooms,
    /// Public messages stored per room and replayed to joiners.
    pub history_size: usize,
    pub private_messages: bool,
    /// Greet each joiner with a message from the room (name, participants, history that
    /// follows); never stored in history.
    pub welcome: bool,
    /// Per-room policy: `[chat.room.NAME]` (other rooms take the settings above).
    pub room: std::collections::BTreeMap<String, RoomConfig>,
    /// Conference-info subscriptions (RFC 4575): `[chat.conference]`.
    pub conference: ConferenceConfig,
    /// REFERs to rooms (RFC 4579): `[chat.refer]`.
    pub refer: ReferConfig,
    /// SIP URI of the proxy the focus sends its own requests through (the INVITEs of
    /// referrals and file offers); empty: straight to the callee's host.
    pub outbound_proxy: String,
    /// The focus's own SIP account (Digest), answered to a proxy's 401 or 407 on those
    /// requests; both empty: none (the proxy must trust the focus by address).
    pub outbound_username: String,
    pub outbound_password: Secret,
    /// Files shared in rooms (RFC 5547), kept in `<data_dir>/chat-files`.
    pub file_sharing: bool,
    /// Largest file a participant may share (bytes; 488 above).
    pub max_file_size: u64,
    /// Files one room holds at once, and their bytes (488 beyond).
    pub max_room_files: usize,
    pub max_room_file_bytes: u64,
    /// Bytes all rooms' files take at once, uploads in progress included (488 beyond).
    pub max_file_bytes: u64,
    /// File transfers at once (uploads, pulls, offers; 503 beyond).
    pub max_file_transfers: usize,
    /// Uploads and pulls of one user at once (486 beyond).
    pub max_user_file_transfers: usize,
    /// Seconds a room keeps a file; 0: until the room ends.
    pub file_retention: u64,
    /// Offer every new file to every participant (they may decline).
    pub push_files: bool,
    /// How long a Digest nonce of the SIP side stays valid, seconds (older: `stale=true`).
    pub nonce_lifetime: u64,
    /// Decoder limits of participants' MSRP connections (as the relay's of the same names).
    pub max_start_line: usize,
    pub max_header_line: usize,
    pub max_headers: usize,
    pub max_head_bytes: usize,
    pub max_non_send_body: u64,
    /// Largest message accepted from a participant (bytes; larger gets 413).
    pub max_message_size: u64,
    /// The server's outgoing chunks are at most this many bytes, so messages interleave; 0
    /// (the default) sends each message whole, as sipsimple clients need.
    pub chunk_size: usize,
    /// Messages and bytes waiting for one participant before it is dropped as too slow.
    pub queue_messages: usize,
    pub queue_bytes: usize,
    /// Seconds a joined participant has to set up its MSRP connection (also TLS handshakes
    /// and idle connections without a session).
    pub connect_timeout: u64,
    /// Seconds a write to a participant may wait for it to read.
    pub write_timeout: u64,
    /// Sessions at once in all rooms; further INVITEs get 503.
    pub max_sessions: usize,
    /// MSRP connections accepted at once.
    pub max_connections: usize,
    /// SIP requests per second from one source address (twice that in a burst; trusted
    /// networks exempt); more are dropped unanswered.
    pub sip_rate: u32,
    /// INVITEs whose credentials are checked at once; more get 503.
    pub sip_max_checks: usize,
    /// SIP TCP/TLS connections at once, and per source address (more are closed at accept).
    pub sip_max_connections: usize,
    pub sip_max_connections_per_ip: usize,
    /// Seconds after which a SIP TCP/TLS connection that carries no call and sent nothing is
    /// closed.
    pub sip_idle_timeout: u64,
}

impl ChatConfig {
    /// The decoder limits of participants' MSRP connections.
    pub fn limits(&self) -> msrp::Limits {
        msrp::Limits {
            max_start_line: self.max_start_line,
            max_header_line: self.max_header_line,
            max_headers: self.max_headers,
            max_head_bytes: self.max_head_bytes,
            max_non_send_body: self.max_non_send_body,
        }
    }

    /// File sharing as the chat service takes it, kept in `dir`.
    pub fn file_options(&self, dir: std::path::PathBuf) -> msrp_chat::files::FileOptions {
        msrp_chat::files::FileOptions {
            dir: self.file_sharing.then_some(dir),
            max_file_size: self.max_file_size,
            max_room_files: self.max_room_files,
            max_room_bytes: self.max_room_file_bytes,
            max_total_bytes: self.max_file_bytes,
            max_transfers: self.max_file_transfers,
            max_user_transfers: self.max_user_file_transfers,
            retention: (self.file_retention > 0).then(|| std::time::Duration::from_secs(self.file_retention)),
            push: self.push_files,
        }
    }

    pub fn sip_limits(&self) -> msrp_chat::sip::SipLimits {
        msrp_chat::sip::SipLimits {
            rate: self.sip_rate,
            max_checks: self.sip_max_checks,
            max_connections: self.sip_max_connections,
            max_connections_per_ip: self.sip_max_connections_per_ip,
            idle_timeout: std::time::Duration::from_secs(self.sip_idle_timeout),
        }
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        let o = msrp_chat::ChatOptions::default();
        let files = o.files.clone();
        let door = msrp_chat::sip::SipLimits::default();
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        ChatConfig {
            enabled: true,
            domain: o.domain,
            sip_listen: vec![
                SipListen { transport: SipTransport::Udp, addr: local(5060) },
                SipListen { transport: SipTransport::Tcp, addr: local(5060) },
            ],
            msrp_listen: vec![Listen { tls: true, addr: local(2856) }, Listen { tls: false, addr: local(2857) }],
            msrp_host: String::new(),
            trusted_networks: Vec::new(),
            trusted_over_udp: false,
            rooms: Rooms::Keyword("any".into()),
            history_size: o.history_size,
            private_messages: o.private_messages,
            welcome: o.welcome,
            room: std::collections::BTreeMap::new(),
            conference: ConferenceConfig::default(),
            refer: ReferConfig::default(),
            outbound_proxy: String::new(),
            outbound_username: String::new(),
            outbound_password: Secret::default(),
            file_sharing: true,
            max_file_size: files.max_file_size,
            max_room_files: files.max_room_files,
            max_room_file_bytes: files.max_room_bytes,
            max_file_bytes: files.max_total_bytes,
            max_file_transfers: files.max_transfers,
            max_user_file_transfers: files.max_user_transfers,
            file_retention: files.retention.map_or(0, |d| d.as_secs()),
            push_files: files.push,
            nonce_lifetime: msrp_relay::RelayOptions::default().nonce_lifetime.as_secs(),
            max_start_line: o.limits.max_start_line,
            max_header_line: o.limits.max_header_line,
            max_headers: o.limits.max_headers,
            max_head_bytes: o.limits.max_head_bytes,
            max_non_send_body: o.limits.max_non_send_body,
            max_message_size: o.max_message_size,
            chunk_size: o.chunk_size,
            queue_messages: o.queue_messages,
            queue_bytes: o.queue_bytes,
            connect_timeout: o.connect_timeout.as_secs(),
            write_timeout: o.write_timeout.as_secs(),
            max_sessions: o.max_sessions,
            max_connections: o.max_connections,
            sip_rate: door.rate,
            sip_max_checks: door.max_checks,
            sip_max_connections: door.max_connections,
            sip_max_connections_per_ip: door.max_connections_per_ip,
            sip_idle_timeout: door.idle_timeout.as_secs(),
        }
    }
}

/// `[chat.conference]`: who may watch a room's roster, for how long, and what they get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConferenceConfig {
    /// Subscriptions to one room at once (503 beyond).
    pub max_per_room: usize,
    /// Subscriptions of one user to one room at once (403 beyond).
    pub max_per_user: usize,
    /// Seconds: the longest subscription granted, and the length of one without Expires.
    pub max_expires: u64,
    /// Seconds: shorter subscriptions get 423 with Min-Expires.
    pub min_expires: u64,
    /// User-Agents (substrings, any case) that get a full document on every change.
    pub full_state_agents: Vec<String>,
    /// Seconds a subscriber has to answer a NOTIFY before its subscription ends.
    pub notify_timeout: u64,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        let o = msrp_chat::ConferenceOptions::default();
        ConferenceConfig {
            max_per_room: o.max_per_room,
            max_per_user: o.max_per_user,
            max_expires: o.max_expires.as_secs(),
            min_expires: o.min_expires.as_secs(),
            full_state_agents: o.full_state_agents,
            notify_timeout: o.notify_timeout.as_secs(),
        }
    }
}

impl ConferenceConfig {
    pub fn options(&self) -> msrp_chat::ConferenceOptions {
        msrp_chat::ConferenceOptions {
            max_per_room: self.max_per_room,
            max_per_user: self.max_per_user,
            max_expires: std::time::Duration::from_secs(self.max_expires),
            min_expires: std::time::Duration::from_secs(self.min_expires),
            full_state_agents: self.full_state_agents.clone(),
            notify_timeout: std::time::Duration::from_secs(self.notify_timeout),
        }
    }

    fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("max_per_room", self.max_per_room as u64),
            ("max_per_user", self.max_per_user as u64),
            ("min_expires", self.min_expires),
            ("notify_timeout", self.notify_timeout),
        ] {
            if v == 0 {
                return Err(format!("chat.conference.{name} must be positive"));
            }
        }
        if self.min_expires > self.max_expires {
            return Err("chat.conference.min_expires must not exceed max_expires".into());
        }
        let caps: [(&str, u64, u64); 5] = [
            ("max_per_room", self.max_per_room as u64, MAX_CONNECTIONS),
            ("max_per_user", self.max_per_user as u64, MAX_CONNECTIONS),
            ("max_expires", self.max_expires, DAY),
            ("min_expires", self.min_expires, DAY),
            ("notify_timeout", self.notify_timeout, HOUR),
        ];
        at_most("chat.conference", &caps)
    }
}

/// Who may REFER a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferWho {
    Participants,
    None,
}

impl From<ReferWho> for msrp_chat::ReferPolicy {
    fn from(w: ReferWho) -> Self {
        match w {
            ReferWho::Participants => msrp_chat::ReferPolicy::Participants,
            ReferWho::None => msrp_chat::ReferPolicy::Nobody,
        }
    }
}

/// The MSRP transport offered to invitees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InviteTransport {
    Auto,
    Tcp,
    Tls,
}

/// `[chat.refer]`: inviting people into rooms and removing them by REFER (RFC 4579).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferConfig {
    /// Who may refer in rooms that do not say: `participants` or `none`.
    pub allow: ReferWho,
    /// MSRP transport of the chat stream offered to an invitee: `auto` (the referrer's),
    /// `tcp` or `tls`.
    pub transport: InviteTransport,
    /// Referrals in progress at once in the service (503 beyond).
    pub max_pending: usize,
    /// Referrals in progress at once from one user (403 beyond).
    pub max_pending_per_user: usize,
    /// Seconds the invitee has to answer before the INVITE is cancelled.
    pub timeout: u64,
}

impl Default for ReferConfig {
    fn default() -> Self {
        let o = msrp_chat::ReferOptions::default();
        ReferConfig {
            allow: ReferWho::Participants,
            transport: InviteTransport::Auto,
            max_pending: o.max_pending,
            max_pending_per_user: o.max_pending_per_user,
            timeout: o.timeout.as_secs(),
        }
    }
}

impl ReferConfig {
    pub fn options(&self) -> msrp_chat::ReferOptions {
        msrp_chat::ReferOptions {
            policy: self.allow.into(),
            transport: match self.transport {
                InviteTransport::Auto => msrp_chat::InviteTransport::Auto,
                InviteTransport::Tcp => msrp_chat::InviteTransport::Tcp,
                InviteTransport::Tls => msrp_chat::InviteTransport::Tls,
            },
            max_pending: self.max_pending,
            max_pending_per_user: self.max_pending_per_user,
            timeout: std::time::Duration::from_secs(self.timeout),
        }
    }

    fn validate(&self, chat: &ChatConfig) -> Result<(), String> {
        for (name, v) in [
            ("max_pending", self.max_pending as u64),
            ("max_pending_per_user", self.max_pending_per_user as u64),
            ("timeout", self.timeout),
        ] {
            if v == 0 {
                return Err(format!("chat.refer.{name} must be positive"));
            }
        }
        let has = |tls: bool| chat.msrp_listen.iter().any(|l| l.tls == tls);
        match self.transport {
            InviteTransport::Tcp if !has(false) => {
                return Err("chat.refer.transport = \"tcp\" needs a plain chat.msrp_listen".into());
            }
            InviteTransport::Tls if !has(true) => {
                return Err("chat.refer.transport = \"tls\" needs a TLS chat.msrp_listen".into());
            }
            _ => {}
        }
        let caps: [(&str, u64, u64); 3] = [
            ("max_pending", self.max_pending as u64, MAX_CONNECTIONS),
            ("max_pending_per_user", self.max_pending_per_user as u64, MAX_CONNECTIONS),
            ("timeout", self.timeout, HOUR),
        ];
        at_most("chat.refer", &caps)
    }
}

/// `[chat.room.NAME]`: one room's policy; absent keys follow `[chat]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// Who may join: SIP URIs, domains or `*.domain`; empty: everyone not denied (others: 403).
    pub allow: Vec<String>,
    /// Who may not (wins over `allow`).
    pub deny: Vec<String>,
    /// Most users in the room at once (486 beyond; one user's devices count once).
    pub max_participants: Option<usize>,
    /// Messages replayed to joiners (at most `chat.history_size`).
    pub history_size: Option<usize>,
    /// Told in the welcome.
    pub subject: Option<String>,
    pub private_messages: Option<bool>,
    /// Who may REFER this room (`participants` or `none`; default `chat.refer.allow`).
    pub refer: Option<ReferWho>,
}

impl ChatConfig {
    /// The rooms' settings as the chat service takes them (names lower-cased).
    pub fn room_settings(&self) -> std::collections::HashMap<String, msrp_chat::RoomSettings> {
        self.room
            .iter()
            .map(|(name, r)| {
                let settings = msrp_chat::RoomSettings {
                    allow: r.allow.clone(),
                    deny: r.deny.clone(),
                    max_participants: r.max_participants,
                    history_size: r.history_size,
                    subject: r.subject.clone(),
                    private_messages: r.private_messages,
                    refer: r.refer.map(Into::into),
                };
                (name.to_lowercase(), settings)
            })
            .collect()
    }

    fn validate_rooms(&self) -> Result<(), String> {
        for (name, r) in &self.room {
            let key = format!("chat.room.{name:?}");
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || matches!(c, '@' | ':' | ';' | '<' | '>'))
            {
                return Err(format!("{key}: not a room name"));
            }
            if !self.room_policy().allows(name) {
                return Err(format!("{key}: not among chat.rooms, so nobody could join it"));
            }
            if let Some(bad) = r.allow.iter().chain(&r.deny).find(|e| !msrp_chat::acl_entry_is_valid(e)) {
                return Err(format!("{key}: {bad:?} is neither a SIP URI with a user nor a domain"));
            }
            if r.max_participants == Some(0) {
                return Err(format!("{key}.max_participants must be positive"));
            }
            if let Some(n) = r.history_size
                && n > self.history_size
            {
                return Err(format!("{key}.history_size = {n} is above chat.history_size ({})", self.history_size));
            }
        }
        Ok(())
    }

    pub fn room_policy(&self) -> msrp_chat::RoomPolicy {
        match &self.rooms {
            Rooms::Keyword(_) => msrp_chat::RoomPolicy::Any,
            Rooms::List(list) => msrp_chat::RoomPolicy::Only(list.clone()),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Rooms::Keyword(k) = &self.rooms
            && k != "any"
        {
            return Err(format!("chat.rooms must be \"any\" or a list of names, not {k:?}"));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.domain.is_empty() || self.domain.contains(['/', ';', ' ', '@', ':']) {
            return Err(format!("chat.domain {:?} is not a domain", self.domain));
        }
        if self.sip_listen.is_empty() || self.msrp_listen.is_empty() {
            return Err("chat.sip_listen and chat.msrp_listen need an address each (or chat.enabled = false)".into());
        }
        let mut addrs = self.msrp_listen.iter().map(|l| l.addr).chain(self.sip_listen.iter().map(|l| l.addr));
        if addrs.any(|a| a.ip().is_unspecified()) && self.msrp_host.is_empty() {
            return Err(
                "chat.msrp_host is needed when a chat listener binds 0.0.0.0 or :: (it goes into a=path and Contact)"
                    .into(),
            );
        }
        for (name, v) in [
            ("queue_messages", self.queue_messages),
            ("queue_bytes", self.queue_bytes),
            ("max_sessions", self.max_sessions),
            ("max_connections", self.max_connections),
            ("connect_timeout", self.connect_timeout as usize),
            ("write_timeout", self.write_timeout as usize),
            ("sip_rate", self.sip_rate as usize),
            ("sip_max_checks", self.sip_max_checks),
            ("sip_max_connections", self.sip_max_connections),
            ("sip_max_connections_per_ip", self.sip_max_connections_per_ip),
            ("sip_idle_timeout", self.sip_idle_timeout as usize),
        ] {
            if v == 0 {
                return Err(format!("chat.{name} must be positive"));
            }
        }
        // A flow must outlive an INVITE being joined (SIP's 32 s transaction time): it counts
        // as carrying a call only once the call is set up.
        if self.sip_idle_timeout < 32 {
            return Err(format!("chat.sip_idle_timeout = {} is below its bound of 32", self.sip_idle_timeout));
        }
        self.validate_rooms()?;
        self.conference.validate()?;
        self.refer.validate(self)?;
        if !self.outbound_proxy.is_empty() && !msrp_chat::sip::is_proxy_uri(&self.outbound_proxy) {
            return Err(format!(
                "chat.outbound_proxy {:?} is not a SIP URI of a host (e.g. \"sip:proxy.example.com:5060;transport=tcp\")",
                self.outbound_proxy
            ));
        }
        if self.outbound_username.is_empty() != self.outbound_password.0.is_empty() {
            return Err(
                "chat.outbound_username and chat.outbound_password go together (the focus's SIP account)".into()
            );
        }
        // Whoever challenges a request gets a Digest answer to guess the password from: the
        // focus's requests must go through a proxy the operator runs.
        if !self.outbound_username.is_empty() && self.outbound_proxy.is_empty() {
            return Err("chat.outbound_username needs chat.outbound_proxy: the focus answers challenges only on requests sent through the service's own proxy".into());
        }
        // It goes into a quoted Digest parameter (RFC 3261 §25.1 quoted-string).
        if self.outbound_username.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            return Err(format!(
                "chat.outbound_username {:?} has a quote, backslash or control character",
                self.outbound_username
            ));
        }
        if self.history_size >= self.queue_messages {
            return Err("chat.history_size must be below chat.queue_messages (a joiner's replay is queued)".into());
        }
        if self.max_message_size == 0 {
            return Err("chat.max_message_size must be positive".into());
        }
        for (name, v) in [
            ("max_file_size", self.max_file_size),
            ("max_room_files", self.max_room_files as u64),
            ("max_room_file_bytes", self.max_room_file_bytes),
            ("max_file_bytes", self.max_file_bytes),
            ("max_file_transfers", self.max_file_transfers as u64),
            ("max_user_file_transfers", self.max_user_file_transfers as u64),
        ] {
            if v == 0 {
                return Err(format!("chat.{name} must be positive"));
            }
        }
        if self.max_file_size > self.max_room_file_bytes || self.max_room_file_bytes > self.max_file_bytes {
            return Err("chat.max_file_size <= chat.max_room_file_bytes <= chat.max_file_bytes must hold".into());
        }
        let file_caps: [(&str, u64, u64); 7] = [
            ("max_user_file_transfers", self.max_user_file_transfers as u64, 100_000),
            ("max_file_size", self.max_file_size, 64 * GIB),
            ("max_room_files", self.max_room_files as u64, 100_000),
            ("max_room_file_bytes", self.max_room_file_bytes, 1024 * GIB),
            ("max_file_bytes", self.max_file_bytes, 1024 * GIB),
            ("max_file_transfers", self.max_file_transfers as u64, 100_000),
            ("file_retention", self.file_retention, 365 * DAY),
        ];
        at_most("chat", &file_caps)?;
        check_decoder("chat", &self.limits())?;
        if self.nonce_lifetime == 0 || self.nonce_lifetime > DAY {
            return Err(format!("chat.nonce_lifetime = {} must be within 1..=86400", self.nonce_lifetime));
        }
        let caps: [(&str, u64, u64); 14] = [
            ("sip_rate", u64::from(self.sip_rate), 1_000_000),
            ("sip_max_checks", self.sip_max_checks as u64, 100_000),
            ("sip_max_connections", self.sip_max_connections as u64, MAX_CONNECTIONS),
            ("sip_max_connections_per_ip", self.sip_max_connections_per_ip as u64, MAX_CONNECTIONS),
            ("sip_idle_timeout", self.sip_idle_timeout, HOUR),
            ("history_size", self.history_size as u64, 100_000),
            ("max_message_size", self.max_message_size, GIB),
            ("chunk_size", self.chunk_size as u64, 64 * MIB),
            ("queue_messages", self.queue_messages as u64, 1_000_000),
            ("queue_bytes", self.queue_bytes as u64, 4 * GIB),
            ("connect_timeout", self.connect_timeout, HOUR),
            ("write_timeout", self.write_timeout, HOUR),
            ("max_sessions", self.max_sessions as u64, MAX_CONNECTIONS),
            ("max_connections", self.max_connections as u64, MAX_CONNECTIONS),
        ];
        at_most("chat", &caps)
    }
}

/// The bounds of the MSRP decoder limits (`max_start_line` … `max_non_send_body`) of
/// `[relay]` or `[chat]`: low enough that no frame can take much memory, high enough that no
/// client is refused (docs/CONFIG.md, "Bounds").
fn check_decoder(prefix: &str, l: &msrp::Limits) -> Result<(), String> {
    for (name, v, min) in [
        ("max_start_line", l.max_start_line, 64),
        ("max_header_line", l.max_header_line, 256),
        ("max_headers", l.max_headers, 8),
        ("max_head_bytes", l.max_head_bytes, 1024),
    ] {
        if v < min {
            return Err(format!("{prefix}.{name} = {v} is below its bound of {min}"));
        }
    }
    let caps: [(&str, u64, u64); 5] = [
        ("max_start_line", l.max_start_line as u64, MIB),
        ("max_header_line", l.max_header_line as u64, MIB),
        ("max_headers", l.max_headers as u64, 1024),
        ("max_head_bytes", l.max_head_bytes as u64, MIB),
        ("max_non_send_body", l.max_non_send_body, 64 * MIB),
    ];
    at_most(prefix, &caps)
}

/// Upper bounds of the numeric keys (docs/CONFIG.md, "Bounds"): far above any real deployment,
/// and low enough that no value can overflow a timer, exhaust memory at start-up, or panic a
/// runtime primitive (tokio's semaphores and channels refuse more than 2^61 permits).
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const MAX_CONNECTIONS: u64 = 10_000_000;

fn at_most(section: &str, caps: &[(&str, u64, u64)]) -> Result<(), String> {
    match caps.iter().find(|(_, v, max)| v > max) {
        Some((name, v, max)) => Err(format!("{section}.{name} = {v} is above its bound of {max}")),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path`, else the file named by `MSRPD_CONFIG`, else the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
        let config = match path.map(Path::to_path_buf).or(from_env) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                Config::parse(&text).map_err(|e| match e {
                    ConfigError::Parse { source, .. } => ConfigError::Parse { path, source },
                    other => other,
                })?
            }
            None => Config::default(),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), source: Box::new(e) })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.relay;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(r.min_expires <= r.default_expires && r.default_expires <= r.max_expires) {
            return bad(format!(
                "relay: need min_expires ({}) <= default_expires ({}) <= max_expires ({})",
                r.min_expires, r.default_expires, r.max_expires
            ));
        }
        if r.enabled && r.listen.is_empty() {
            return bad("relay.listen is empty; disable the relay or give an address".into());
        }
        if r.domains.is_empty() {
            return bad("relay.domains needs at least one realm".into());
        }
        if r.hostname.is_empty() || r.hostname.contains(['/', ';', ' ', '@']) {
            return bad(format!("relay.hostname {:?} is not a host name", r.hostname));
        }
        if self.tls.certificate.is_some() != self.tls.private_key.is_some() {
            return bad("tls.certificate and tls.private_key go together".into());
        }
        for (name, v) in
            [("max_chunk", r.max_chunk), ("read_buffer", r.read_buffer), ("chunk_hold_ms", r.chunk_hold_ms as usize)]
        {
            if v == 0 {
                return bad(format!("relay.{name} must be positive"));
            }
        }
        if r.max_connections == 0 || r.max_connections_per_ip == 0 || r.max_sessions_per_connection == 0 {
            return bad(
                "relay.max_connections, max_connections_per_ip and max_sessions_per_connection must be positive".into(),
            );
        }
        // Lower bounds where a tiny value would refuse every client (docs/CONFIG.md, Bounds).
        for (name, v, min) in [("max_auth_failures", r.max_auth_failures as usize, 1)] {
            if v < min {
                return bad(format!("relay.{name} = {v} is below its bound of {min}"));
            }
        }
        if r.output_buffer < 16 * 1024 {
            return bad(format!("relay.output_buffer = {} is below its bound of 16384", r.output_buffer));
        }
        if r.output_messages < 16 {
            return bad(format!("relay.output_messages = {} is below its bound of 16", r.output_messages));
        }
        check_decoder("relay", &r.limits()).map_err(ConfigError::Invalid)?;
        let caps: [(&str, u64, u64); 14] = [
            ("output_buffer", r.output_buffer as u64, 64 * MIB),
            ("output_messages", r.output_messages as u64, 1_000_000),
            ("chunk_hold_ms", r.chunk_hold_ms, 60_000),
            ("dial_backoff_ms", r.dial_backoff_ms, 600_000),
            ("max_expires", u64::from(r.max_expires), 7 * DAY),
            ("nonce_lifetime", r.nonce_lifetime, DAY),
            ("auth_timeout", r.auth_timeout, HOUR),
            ("transaction_timeout", r.transaction_timeout, HOUR),
            ("max_connections", r.max_connections as u64, MAX_CONNECTIONS),
            ("max_connections_per_ip", r.max_connections_per_ip as u64, MAX_CONNECTIONS),
            ("max_sessions_per_connection", r.max_sessions_per_connection as u64, 1000),
            ("read_buffer", r.read_buffer as u64, 64 * MIB),
            ("max_chunk", r.max_chunk as u64, 64 * MIB),
            ("max_auth_failures", u64::from(r.max_auth_failures), 1000),
        ];
        at_most("relay", &caps).map_err(ConfigError::Invalid)?;
        let db = &self.database;
        if db.pool_size == 0 || db.connect_timeout_ms == 0 || db.query_timeout_ms == 0 {
            return bad("database.pool_size, connect_timeout_ms and query_timeout_ms must be positive".into());
        }
        let caps = [
            ("cache_seconds", db.cache_seconds, DAY),
            ("pool_size", u64::from(db.pool_size), 1000),
            ("connect_timeout_ms", db.connect_timeout_ms, 600_000),
            ("query_timeout_ms", db.query_timeout_ms, 600_000),
        ];
        at_most("database", &caps).map_err(ConfigError::Invalid)?;
        self.auth.validate().map_err(ConfigError::Invalid)?;
        self.relay.limits.validate().map_err(ConfigError::Invalid)?;
        self.chat.validate().map_err(ConfigError::Invalid)?;
        if let Some(url) = &self.database.url
            && crate::store::Backend::of(url).is_none()
        {
            let url = crate::store::redact(url);
            return bad(format!("database.url {url:?}: expected sqlite://, postgres:// or mysql://"));
        }
        crate::store::AccountTable::resolve(&self.accounts, crate::store::Backend::of(&self.database_url()))
            .map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The database URL, defaulting to a file in `data_dir`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("msrpd.sqlite").display()),
        }
    }

    /// The effective configuration as TOML (for `msrpd check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.relay.listen, vec![Listen::try_from("msrps://127.0.0.1:2855".to_owned()).unwrap()]);
        assert_eq!((c.relay.min_expires, c.relay.default_expires, c.relay.max_expires), (60, 600, 3600));
        assert_eq!(c.database_url(), "sqlite://msrpd-data/msrpd.sqlite");
    }

    #[test]
    fn keys_parse_and_print_back() {
        let c = Config::parse(
            r#"
            data_dir = "/var/lib/msrpd"
            [relay]
            listen = ["msrps://0.0.0.0:2855", "msrp://[::1]:2856"]
            hostname = "relay.example.com"
            domains = ["example.com", "example.org"]
            max_expires = 7200
            "#,
        )
        .unwrap();
        assert_eq!(c.relay.listen[1].to_string(), "msrp://[::1]:2856");
        assert!(!c.relay.listen[1].tls);
        let again = Config::parse(&c.to_toml()).unwrap();
        assert_eq!(again.relay.domains, c.relay.domains);
        assert_eq!(again.relay.max_expires, 7200);
    }

    #[test]
    fn the_container_configuration_is_valid() {
        let c = Config::parse(include_str!("../../../contrib/docker/msrpd.toml")).unwrap();
        assert!(c.relay.listen[0].addr.ip().is_unspecified() && c.metrics.listen.is_some());
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        let example = Config::parse(include_str!("../../../msrpd.example.toml")).unwrap();
        assert_eq!(example.to_toml(), Config::default().to_toml());
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(Config::parse("[relay]\nlisten = [\"tcp://1.2.3.4:5\"]").is_err());
        assert!(Config::parse("[relay]\nlistne = []").is_err(), "unknown keys are refused");
        assert!(Config::parse("[relay]\nmin_expires = 700").is_err());
        assert!(Config::parse("[tls]\ncertificate = \"a.pem\"").is_err());
        assert!(Config::parse("[relay]\ndomains = []").is_err());
        assert!(Config::parse("[database]\nurl = \"oracle://x\"").is_err());
        assert!(Config::parse("[database]\nurl = \"mysql://u:p@localhost/kamailio\"").is_ok());
        assert!(Config::parse("[accounts]\ntable = \"subscriber; DROP TABLE x\"").is_err());
        assert!(Config::parse("[accounts]\nschema = \"kamailio\"\nha1 = \"\"\npassword = \"\"\nha1b = \"\"").is_err());
        assert!(Config::parse("[chat]\nsip_listen = [\"ws://1.2.3.4:5\"]").is_err());
        assert!(Config::parse("[chat]\nrooms = \"some\"").is_err());
        assert!(Config::parse("[chat]\ntrusted_networks = [\"10.0.0.0/33\"]").is_err());
        assert!(Config::parse("[chat]\nmsrp_listen = [\"msrp://0.0.0.0:2857\"]").is_err(), "needs msrp_host");
        assert!(Config::parse("[chat]\nhistory_size = 5000").is_err());
        assert!(Config::parse("[chat.conference]\nmin_expires = 7200").is_err(), "above max_expires");
        assert!(Config::parse("[chat.conference]\nmax_per_room = 0").is_err());
        assert!(Config::parse("[chat.conference]\nnotify_timeout = 86400").is_err());
        let c = Config::parse("[chat.conference]\nmax_per_user = 2\nfull_state_agents = []").unwrap();
        let o = c.chat.conference.options();
        assert_eq!((o.max_per_user, o.wants_full_state(Some("Blink 6"))), (2, false));
        assert!(Config::parse("[chat]\nmax_file_size = 0").is_err());
        assert!(Config::parse("[chat]\nmax_head_bytes = 10").is_err());
        assert!(Config::parse("[chat]\nnonce_lifetime = 0").is_err());
        let own = Config::parse("[relay]\nmax_headers = 16\nnonce_lifetime = 60\n[chat]\nmax_headers = 32").unwrap();
        assert_eq!((own.chat.limits().max_headers, own.chat.nonce_lifetime), (32, 300), "chat's own, not [relay]'s");
        assert!(Config::parse("[chat]\nmax_file_size = 2000000000\nmax_room_file_bytes = 1000000000").is_err());
        let c = Config::parse("[chat]\nfile_retention = 0\npush_files = false").unwrap();
        let f = c.chat.file_options("/tmp/x".into());
        assert_eq!((f.retention, f.push, f.dir.is_some()), (None, false, true));
        let off = Config::parse("[chat]\nfile_sharing = false").unwrap();
        assert_eq!(off.chat.file_options("/tmp/x".into()).dir, None);
        assert!(Config::parse("[chat.refer]\nmax_pending = 0").is_err());
        assert!(Config::parse("[chat.refer]\nallow = \"everyone\"").is_err());
        assert!(Config::parse("[chat.refer]\ntimeout = 86400").is_err());
        let plain_only = "[chat]\nmsrp_listen = [\"msrp://127.0.0.1:2857\"]\n[chat.refer]\ntransport = \"tls\"";
        assert!(Config::parse(plain_only).is_err(), "no TLS listener to offer");
        assert!(Config::parse("[chat]\noutbound_proxy = \"proxy.example.com\"").is_err(), "not a SIP URI");
        let c = Config::parse(
            "[chat]\noutbound_proxy = \"sip:127.0.0.1:5070;transport=tcp\"\n[chat.refer]\nallow = \"none\"\n\
             transport = \"tcp\"\n[chat.room.lobby]\nrefer = \"participants\"",
        )
        .unwrap();
        let o = c.chat.refer.options();
        assert_eq!((o.policy, o.transport), (msrp_chat::ReferPolicy::Nobody, msrp_chat::InviteTransport::Tcp));
        assert_eq!(c.chat.room_settings()["lobby"].refer, Some(msrp_chat::ReferPolicy::Participants));
        assert!(Config::parse("[chat]\noutbound_username = \"focus\"").is_err(), "a name without a password");
        let quoted =
            "[chat]\noutbound_username = \"fo\\\"cus\"\noutbound_password = \"x\"\noutbound_proxy = \"sip:127.0.0.1\"";
        assert!(Config::parse(quoted).is_err(), "a quote in the name");
        let account = "[chat]\noutbound_username = \"focus\"\noutbound_password = \"s3cret\"";
        assert!(Config::parse(account).is_err(), "an account without the proxy it is for");
        let c = Config::parse(&format!("{account}\noutbound_proxy = \"sip:127.0.0.1:5070\"")).unwrap();
        assert_eq!((c.chat.outbound_username.as_str(), c.chat.outbound_password.0.as_str()), ("focus", "s3cret"));
        assert!(!format!("{:?}", c.chat).contains("s3cret"), "Debug keeps the password out");
        assert!(!c.chat.outbound_password.masked().0.contains("s3cret"));
    }

    #[test]
    fn absurd_numbers_are_refused_with_their_bound() {
        let e = Config::parse("[chat]\nmax_connections = 4611686018427387904").unwrap_err().to_string();
        assert!(e.contains("chat.max_connections") && e.contains("10000000"), "{e}");
        let e = Config::parse("[relay]\ntransaction_timeout = 18446744073709551615").unwrap_err().to_string();
        assert!(e.contains("relay.transaction_timeout"), "{e}");
        let e = Config::parse("[relay]\nread_buffer = 1000000000000").unwrap_err().to_string();
        assert!(e.contains("relay.read_buffer"), "{e}");
        let e = Config::parse("[relay]\noutput_buffer = 100").unwrap_err().to_string();
        assert!(e.contains("relay.output_buffer") && e.contains("16384"), "{e}");
        let e = Config::parse("[auth]\naccount_failures = 0").unwrap_err().to_string();
        assert!(e.contains("auth.account_failures"), "{e}");
        let e = Config::parse("[chat]\nsip_rate = 0").unwrap_err().to_string();
        assert!(e.contains("chat.sip_rate"), "{e}");
        assert!(Config::parse("[database]\ncache_seconds = 999999999").is_err());
        assert!(Config::parse("[chat]\nqueue_messages = 1000000").is_ok(), "the bound itself is allowed");
        let e = Config::parse("[relay]\nmax_auth_failures = 0").unwrap_err().to_string();
        assert!(e.contains("relay.max_auth_failures"), "{e}");
        assert!(Config::parse("[relay]\nmax_head_bytes = 10").is_err());
    }

    #[test]
    fn limits_with_domain_overrides() {
        let c = Config::parse(
            "[relay.limits]\nsession_rate = 1000000\nuser_sessions = 4\n\
             [relay.limits.domain.\"Partners.example\"]\nsession_rate = 250000\nmessage_rate = 3\n",
        )
        .unwrap();
        let t = c.relay.limits.throttle();
        assert_eq!(t.for_realm("partners.example").session_rate, Some(250_000));
        assert_eq!(t.for_realm("partners.example").user_sessions, Some(4), "the rest from the global table");
        assert_eq!(t.for_realm("other.example").session_rate, Some(1_000_000));
        assert_eq!(Config::parse(&c.to_toml()).unwrap().relay.limits, c.relay.limits);
        let e = Config::parse("[relay.limits]\nauth_rate = 0").unwrap_err().to_string();
        assert!(e.contains("relay.limits.auth_rate"), "{e}");
        assert!(Config::parse("[relay.limits]\nsesion_rate = 5").is_err(), "typos are refused");
    }

    #[test]
    fn room_policies() {
        let c = Config::parse(
            "[chat.room.Staff]\nallow = [\"example.com\", \"sip:guest@other.org\", \"*.corp.example\"]\n\
             deny = [\"sip:mallory@example.com\"]\nmax_participants = 20\nhistory_size = 10\nsubject = \"Staff\"\n",
        )
        .unwrap();
        let s = &c.chat.room_settings()["staff"];
        assert_eq!((s.max_participants, s.history_size, s.subject.as_deref()), (Some(20), Some(10), Some("Staff")));
        assert!(s.admits("bob@example.com") && s.admits("x@a.corp.example") && !s.admits("mallory@example.com"));
        assert_eq!(Config::parse(&c.to_toml()).unwrap().chat.room, c.chat.room);
        for bad in [
            "[chat.room.x]\nallow = [\"sip:nouser\"]",
            "[chat.room.x]\nmax_participants = 0",
            "[chat.room.x]\nhistory_size = 51",
            "[chat.room.x]\nmembers = 3",
            "[chat]\nrooms = [\"lobby\"]\n[chat.room.other]\nsubject = \"s\"",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chat_keys() {
        let c = Config::parse(
            "[chat]\nrooms = [\"lobby\", \"dev\"]\ntrusted_networks = [\"10.1.0.0/16\", \"::1\"]\n\
             sip_listen = [\"tls://[::1]:5061\"]\n",
        )
        .unwrap();
        assert_eq!(c.chat.room_policy(), msrp_chat::RoomPolicy::Only(vec!["lobby".into(), "dev".into()]));
        let net = c.chat.trusted_networks[0];
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.1".parse().unwrap()), "v4-mapped addresses count");
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(c.chat.trusted_networks[1].contains("::1".parse().unwrap()));
        assert_eq!(c.chat.sip_listen[0].to_string(), "tls://[::1]:5061");
        assert_eq!(Config::parse(&c.to_toml()).unwrap().chat.trusted_networks, c.chat.trusted_networks);
    }
}
