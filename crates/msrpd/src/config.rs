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
    pub relay: RelayConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("msrpd-data"),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            database: DatabaseConfig::default(),
            relay: RelayConfig::default(),
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
    /// `sqlite://PATH`. Empty: `sqlite://<data_dir>/msrpd.sqlite`.
    pub url: Option<String>,
    /// Seconds an account's HA1 is remembered after a lookup (0: ask the database every
    /// time). Password changes and removals take effect within this time.
    pub cache_seconds: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, cache_seconds: 10 }
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
    /// Domains where `Authorization: Basic` is accepted over TLS (off everywhere by default).
    pub basic_auth_domains: Vec<String>,
    /// Methods forwarded besides SEND, REPORT and NICKNAME (others get 501).
    pub extra_methods: Vec<String>,
    /// Bytes read from a connection at once: also the most body bytes held per connection and
    /// direction (a forwarded body is written on before more is read, so a slow receiver
    /// holds back only its own sender).
    pub read_buffer: usize,
    /// Largest chunk the relay sends before interrupting it with `+` so that other messages
    /// to the same peer can pass (RFC 4975 §7.1, bytes).
    pub max_chunk: usize,
    /// Decoder limits (RFC 4975 framing): start line, header line, header count, head bytes,
    /// body of a non-SEND request.
    pub max_start_line: usize,
    pub max_header_line: usize,
    pub max_headers: usize,
    pub max_head_bytes: usize,
    pub max_non_send_body: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        let limits = msrp::Limits::default();
        RelayConfig {
            enabled: true,
            listen: vec![Listen { tls: true, addr: SocketAddr::from(([127, 0, 0, 1], 2855)) }],
            hostname: "localhost".into(),
            domains: vec!["localhost".into()],
            min_expires: 60,
            default_expires: 600,
            max_expires: 3600,
            nonce_lifetime: 300,
            max_auth_failures: 3,
            auth_timeout: 30,
            transaction_timeout: 30,
            max_connections: 100_000,
            max_connections_per_ip: 1000,
            basic_auth_domains: Vec::new(),
            extra_methods: Vec::new(),
            read_buffer: 256 * 1024,
            max_chunk: 256 * 1024,
            max_start_line: limits.max_start_line,
            max_header_line: limits.max_header_line,
            max_headers: limits.max_headers,
            max_head_bytes: limits.max_head_bytes,
            max_non_send_body: limits.max_non_send_body,
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
        for (name, v) in [("max_chunk", r.max_chunk), ("read_buffer", r.read_buffer)] {
            if v == 0 {
                return bad(format!("relay.{name} must be positive"));
            }
        }
        if r.max_connections == 0 || r.max_connections_per_ip == 0 {
            return bad("relay.max_connections and max_connections_per_ip must be positive".into());
        }
        if let Some(url) = &self.database.url
            && !url.starts_with("sqlite:")
        {
            return bad(format!("database.url {url:?}: only sqlite:// is supported in this build"));
        }
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
        assert!(Config::parse("[database]\nurl = \"mysql://x\"").is_err());
    }
}
