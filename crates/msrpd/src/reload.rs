//! SIGHUP: the configuration file is read again and what can change while serving changes:
//! the server certificate and key (new handshakes get the new one; connections already up
//! keep theirs), the trust for outgoing TLS, the log filter, and `[relay.limits]` (for new
//! sessions, AUTHs and chat participants). All of it or none: a file
//! that does not load, a certificate that does not match its key or does not name
//! `relay.hostname`, or a filter that does not parse leave the running configuration as it
//! was, and the log says why. Settings that only a restart applies (listen addresses, the
//! database, limits) are named in the log when they differ from the running ones.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::config::Config;
use crate::logging::{self, SetFilter};
use crate::tls::{self, CertSlot, TrustSlot};

/// Keys a reload applies (a key or a table of keys); every other key needs a restart.
const RELOADABLE: [&str; 7] = [
    "tls.certificate",
    "tls.private_key",
    "tls.trusted_certificates",
    "tls.system_roots",
    "log.filter",
    "relay.limits",
    // Room policies: who may join, subscribe and refer at once; a room already open keeps
    // its caps, history size and subject until it closes.
    "chat.room",
];

pub struct Reloader {
    /// The file given with `-c` (else `$MSRPD_CONFIG`, as at start).
    path: Option<PathBuf>,
    /// The configuration the daemon started with: what the restart-only keys still are.
    started: Config,
    cert: Arc<CertSlot>,
    trust: Arc<TrustSlot>,
    set_filter: SetFilter,
    /// The services whose limits a reload changes.
    relay: Option<msrp_relay::Relay>,
    chat: Option<msrp_chat::Chat>,
    /// One reload at a time (a second SIGHUP during one waits).
    busy: Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").field("path", &self.path).finish_non_exhaustive()
    }
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub fingerprint: String,
    /// Keys whose new value waits for a restart.
    pub need_restart: Vec<String>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        started: Config,
        cert: Arc<CertSlot>,
        trust: Arc<TrustSlot>,
        set_filter: SetFilter,
        relay: Option<msrp_relay::Relay>,
        chat: Option<msrp_chat::Chat>,
    ) -> Reloader {
        Reloader { path, started, cert, trust, set_filter, relay, chat, busy: Mutex::new(()) }
    }

    /// Reads the configuration again and applies it, or changes nothing and says why.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let _one = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let config = Config::load(self.path.as_deref()).map_err(|e| e.to_string())?;
        // Everything is checked before anything is swapped.
        let identity = tls::identity(&config).map_err(|e| e.to_string())?;
        if config.relay.enabled && config.relay.listen.iter().any(|l| l.tls) {
            tls::check_hostname(&identity, &config.relay.hostname).map_err(|e| e.to_string())?;
        }
        let key = tls::certified(&identity).map_err(|e| e.to_string())?;
        let verifier = tls::verifier(&config, &identity).map_err(|e| e.to_string())?;
        let filter = match logging::env_filter() {
            Some(_) => None, // RUST_LOG wins over the file, as at start.
            None => Some(config.log.filter.clone()),
        };
        if let Some(f) = &filter {
            tracing_subscriber::EnvFilter::try_new(f).map_err(|e| format!("log.filter {f:?}: {e}"))?;
        }
        self.cert.set(key);
        self.trust.set(verifier);
        if let Some(f) = &filter {
            (self.set_filter)(f).map_err(|e| format!("log.filter {f:?}: {e}"))?;
        }
        let limits = &config.relay.limits;
        if let Some(relay) = &self.relay {
            relay.set_limits(limits.throttle());
        }
        let mut need_restart = restart_only_changes(&self.started, &config);
        if let Some(chat) = &self.chat {
            chat.set_message_rates(limits.global.message_rate, limits.message_rate_domains());
            // Room policies go with the list of rooms they were checked against: with
            // `chat.rooms` changed (restart-only), a room still served could lose its access
            // lists (its table gone from the file) and open to everyone.
            if config.chat.rooms == self.started.chat.rooms {
                chat.set_room_settings(config.chat.room_settings());
            } else {
                need_restart.push("chat.room (with chat.rooms)".into());
            }
        }
        Ok(Reloaded { fingerprint: identity.fingerprint, need_restart })
    }

    /// Reloads on every SIGHUP until the process ends.
    pub async fn on_sighup(self: Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                warn!("cannot listen for SIGHUP: reloading is off");
                return;
            };
            while hup.recv().await.is_some() {
                let me = self.clone();
                // File reads and certificate parsing: off the runtime's worker threads.
                let result = tokio::task::spawn_blocking(move || me.reload()).await;
                match result {
                    Ok(Ok(done)) => {
                        info!(fingerprint = %done.fingerprint, "configuration reloaded (SIGHUP): certificate, trust, log filter, limits and room policies");
                        if !done.need_restart.is_empty() {
                            warn!(keys = ?done.need_restart, "these settings changed and take effect only after a restart");
                        }
                    }
                    Ok(Err(why)) => {
                        warn!(error = %why, "reload refused (SIGHUP): the running configuration is unchanged")
                    }
                    Err(e) => warn!(error = %e, "reload failed"),
                }
            }
        }
    }
}

/// `section.key` → value, for every leaf of the configuration.
fn flatten(config: &Config) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(value) = toml::Value::try_from(config) {
        walk("", &value, &mut out);
    }
    out
}

/// The keys, other than the reloadable ones, whose value differs between `a` and `b`.
fn restart_only_changes(a: &Config, b: &Config) -> Vec<String> {
    let (a, b) = (flatten(a), flatten(b));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| !RELOADABLE.iter().any(|r| k == r || k.starts_with(&format!("{r}."))))
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_are_named() {
        let a = Config::parse("[relay]\nhostname = \"a.example\"\n").unwrap();
        let b = Config::parse(
            "[relay]\nhostname = \"a.example\"\nlisten = [\"msrps://0.0.0.0:2855\"]\n[log]\nfilter = \"debug\"\n\
             [database]\ncache_seconds = 5\n",
        )
        .unwrap();
        assert_eq!(restart_only_changes(&a, &b), ["database.cache_seconds", "relay.listen"]);
        assert!(restart_only_changes(&a, &a).is_empty());
        // Room policies reload; the list of rooms does not.
        let c = Config::parse("[chat]\nrooms = [\"lobby\"]\n[chat.room.lobby]\ndeny = [\"example.org\"]\n").unwrap();
        let d = Config::parse("[chat]\nrooms = [\"lobby\", \"staff\"]\n[chat.room.lobby]\ndeny = []\n").unwrap();
        assert_eq!(restart_only_changes(&c, &d), ["chat.rooms"]);
    }
}
