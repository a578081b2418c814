//! The relay's shared state, accept loop and housekeeping (the tokio driver around the plain
//! decisions of `route`, `sessions` and `digest`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use crate::CredentialStore;
use crate::conn::{self, Conn};
use crate::digest::{NonceCounts, NonceKey};
use crate::guard::AuthGuard;
use crate::log_throttle::LogThrottle;
use crate::options::RelayOptions;
use crate::sessions::{ConnId, Sessions};
use crate::stats::Stats;

/// Nonce-counts remembered for replay detection (RFC 7616 §3.4); bounded.
const NONCE_COUNT_CAPACITY: usize = 100_000;

/// The relay: cheap to clone, shared by every listener and connection.
#[derive(Clone)]
pub struct Relay {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("hostname", &self.shared.opts.hostname).finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub opts: RelayOptions,
    pub store: Arc<dyn CredentialStore>,
    pub nonce_key: NonceKey,
    pub nonce_counts: Mutex<NonceCounts>,
    /// Sent in every challenge (field clients require it); fixed per process.
    pub opaque: String,
    pub sessions: Mutex<Sessions>,
    /// `Sessions::epoch`, read by every read batch without the table's lock.
    pub(crate) epoch: Arc<AtomicU64>,
    pub conns: Mutex<HashMap<ConnId, Arc<Conn>>>,
    /// Outgoing connections by (TLS, host, port), reused for later requests to the same hop.
    /// One slot per hop: its lock is held while that hop is dialled (one dial per hop),
    /// never the table's, so a dead next hop delays only requests for it.
    pub outbound: Mutex<HashMap<HopKey, HopSlot>>,
    pub connector: Option<TlsConnector>,
    pub next_id: AtomicU64,
    pub admitted: Mutex<Admitted>,
    /// Failed AUTHs per account, address and nonce (shared with the chat's SIP Digest).
    pub guard: Arc<AuthGuard>,
    /// AUTHs refused unchecked because the account or address is blocked (logged throttled).
    pub blocked: LogThrottle,
    /// AUTHs refused after checking (a peer can cause them at will: logged throttled).
    pub refused_auth: LogThrottle,
    /// Malformed frames and refused requests (likewise).
    pub malformed: LogThrottle,
    pub refused_requests: LogThrottle,
    pub unreachable: LogThrottle,
    pub reports: LogThrottle,
    /// Connections closed for their behaviour (AUTH deadline, failures).
    pub closed_conns: LogThrottle,
    pub shutdown: watch::Receiver<bool>,
    /// Frames handled by the fast path (`fast`), added once per read batch.
    pub fast_frames: AtomicU64,
    pub stats: Stats,
    /// Connections refused over each cap (logged at most once a second per cap).
    pub refused_total: LogThrottle,
    pub refused_per_ip: LogThrottle,
    /// Rates and quotas, and their buckets.
    pub throttle: crate::throttle::Throttle,
}

impl Relay {
    /// `connector` is the TLS client used for outgoing `msrps` hops (None: only `msrp`).
    pub fn new(
        opts: RelayOptions,
        store: Arc<dyn CredentialStore>,
        connector: Option<TlsConnector>,
        shutdown: watch::Receiver<bool>,
    ) -> Relay {
        let opts_guard = opts.guard.clone();
        let throttle = crate::throttle::Throttle::new(opts.throttle.clone());
        let sessions = Sessions::default();
        let shared = Shared {
            opts,
            store,
            nonce_key: NonceKey::random(),
            nonce_counts: Mutex::new(NonceCounts::new(NONCE_COUNT_CAPACITY)),
            opaque: msrp::id::random_ident(),
            epoch: sessions.epoch_handle(),
            sessions: Mutex::new(sessions),
            conns: Mutex::new(HashMap::new()),
            outbound: Mutex::new(HashMap::new()),
            connector,
            next_id: AtomicU64::new(1),
            admitted: Mutex::new(Admitted::default()),
            guard: opts_guard,
            blocked: LogThrottle::default(),
            refused_auth: LogThrottle::default(),
            malformed: LogThrottle::default(),
            refused_requests: LogThrottle::default(),
            unreachable: LogThrottle::default(),
            reports: LogThrottle::default(),
            closed_conns: LogThrottle::default(),
            shutdown,
            fast_frames: AtomicU64::new(0),
            stats: Stats::default(),
            refused_total: LogThrottle::default(),
            refused_per_ip: LogThrottle::default(),
            throttle,
        };
        let relay = Relay { shared: Arc::new(shared) };
        tokio::spawn(housekeeping(Arc::downgrade(&relay.shared)));
        relay
    }

    /// Accepts connections on `listener` until shutdown; `tls` makes it an `msrps` listener.
    pub async fn serve(&self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        let local = listener.local_addr().ok();
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(guard) = self.admit(peer) else { continue };
            let _ = stream.set_nodelay(true);
            let port = local.map_or(0, |l| l.port());
            let shared = self.shared.clone();
            // Two spawns, not one task with a match: a task is as large as its largest state,
            // and plain connections should not carry room for a TLS stream and its handshake
            // (memory per idle session, issue 5).
            match tls.clone() {
                Some(acceptor) => {
                    tokio::spawn(async move {
                        let _guard = guard;
                        match tokio::time::timeout(shared.opts.auth_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => conn::run(shared, s, peer, (true, port), false).await,
                            Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
                None => {
                    tokio::spawn(async move {
                        let _guard = guard;
                        conn::run(shared, stream, peer, (false, port), false).await
                    });
                }
            }
        }
        info!(listener = ?local, "listener stopped");
    }

    /// Applies the connection caps; `None` (and a log line) when the peer is over one.
    fn admit(&self, peer: SocketAddr) -> Option<ConnGuard> {
        let opts = &self.shared.opts;
        // One lock for both caps, and a running total: summing the per-address counts on every
        // accept made accepting O(addresses), which overflowed the listen queue at 10k clients.
        let mut admitted = crate::lock(&self.shared.admitted);
        if admitted.total >= opts.max_connections {
            if let Some(n) = self.shared.refused_total.note() {
                warn!(%peer, limit = opts.max_connections, refused_so_far = n, "connection refused: max_connections reached");
            }
            return None;
        }
        // Looked up before inserting: a refused address leaves no entry behind.
        if admitted.per_ip.get(&peer.ip()).copied().unwrap_or(0) >= opts.max_connections_per_ip {
            if let Some(n) = self.shared.refused_per_ip.note() {
                warn!(%peer, limit = opts.max_connections_per_ip, refused_so_far = n, "connection refused: max_connections_per_ip reached");
            }
            return None;
        }
        *admitted.per_ip.entry(peer.ip()).or_insert(0) += 1;
        admitted.total += 1;
        Some(ConnGuard { shared: self.shared.clone(), ip: peer.ip() })
    }

    /// Settles everything in flight before a shutdown: every transaction still waiting for
    /// the next hop is reported to its sender as a 408 failure (as Failure-Report allows),
    /// while the senders' connections are still open.
    pub async fn drain(&self) {
        let conns: Vec<Arc<Conn>> = crate::lock(&self.shared.conns).values().cloned().collect();
        for c in conns {
            conn::fail_all(&self.shared, &c).await;
        }
    }

    /// Live relay sessions (for logs and tests).
    pub fn session_count(&self) -> usize {
        crate::lock(&self.shared.sessions).len()
    }

    /// Frames (SENDs and responses) that took the fast path so far: the share of the traffic
    /// that did tells whether clients send what it expects.
    pub fn fast_path_frames(&self) -> u64 {
        self.shared.fast_frames.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        crate::lock(&self.shared.conns).len()
    }

    /// Open connections over (plain TCP, TLS), accepted and dialled alike.
    pub fn connections_by_transport(&self) -> (usize, usize) {
        let c = crate::lock(&self.shared.conns);
        let tls = c.values().filter(|c| c.is_tls()).count();
        (c.len() - tls, tls)
    }

    /// Sessions by the transport of their client's connection: (plain TCP, TLS).
    pub fn sessions_by_transport(&self) -> (usize, usize) {
        let per_conn: Vec<(ConnId, usize)> = crate::lock(&self.shared.sessions).per_connection().collect();
        let conns = crate::lock(&self.shared.conns);
        per_conn.iter().fold((0, 0), |(tcp, tls), (id, n)| match conns.get(id) {
            Some(c) if c.is_tls() => (tcp, tls + n),
            _ => (tcp + n, tls),
        })
    }

    /// New rates and quotas (a configuration reload): new sessions and AUTH requests take
    /// them; connections already throttled keep their buckets until they close.
    pub fn set_limits(&self, limits: crate::throttle::ThrottleOptions) {
        self.shared.throttle.set(limits);
    }

    /// The counters (AUTH outcomes, forwarded chunks and bytes, responses and REPORTs).
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

/// A next hop: (TLS, host, port).
pub type HopKey = (bool, String, u16);

/// A next hop's connection, if any, and its last failed dial; locked while that hop is dialled.
pub type HopSlot = Arc<tokio::sync::Mutex<Hop>>;

#[derive(Default)]
pub struct Hop {
    conn: Option<Arc<Conn>>,
    /// When a dial last failed, and why: requests that waited on the slot meanwhile, and
    /// those within `dial_backoff` after, fail at once instead of each dialling a dead hop
    /// again for up to `transaction_timeout`.
    failed: Option<(Instant, std::io::ErrorKind, String)>,
}

/// Accepted connections: in all, and per source address (`max_connections`,
/// `max_connections_per_ip`).
#[derive(Default)]
pub(crate) struct Admitted {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Releases a connection's slot in the per-address count when the connection ends.
struct ConnGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut admitted = crate::lock(&self.shared.admitted);
        if let Some(n) = admitted.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                admitted.per_ip.remove(&self.ip);
            }
            admitted.total -= 1;
        }
    }
}

impl Shared {
    pub fn next_conn_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn conn(&self, id: ConnId) -> Option<Arc<Conn>> {
        crate::lock(&self.conns).get(&id).cloned()
    }

    /// Where the client of session `sid` reaches the next hop `uri`: over the connection that
    /// hop opened to us when it delivered into the session (a far end behind NAT or without a
    /// listener, another relay; AG's relay does the same), else over one we dial.
    pub async fn next_hop(self: &Arc<Self>, sid: &str, uri: &msrp::Uri) -> std::io::Result<Arc<Conn>> {
        let known = crate::lock(&self.sessions).peer_conn(sid, uri);
        if let Some(conn) = known.and_then(|id| self.conn(id)).filter(|c| !c.is_closed()) {
            return Ok(conn);
        }
        let conn = self.connect(uri).await?;
        // Remembered for this session, so its end can close a connection dialled for it alone.
        crate::lock(&self.sessions).note_peer(sid, uri, conn.id);
        Ok(conn)
    }

    /// The dialling slot of hop `key`, created when missing; slots of hops with no open
    /// connection and no dial in progress are dropped meanwhile (the table stays as large as
    /// the hops in use).
    fn hop_slot(&self, key: &HopKey) -> HopSlot {
        let mut table = self.outbound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = table.get(key) {
            return slot.clone();
        }
        let backoff = self.opts.dial_backoff;
        table.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot.try_lock().is_ok_and(|h| {
                    h.conn.as_ref().is_some_and(|c| !c.is_closed())
                        || h.failed.as_ref().is_some_and(|(at, _, _)| at.elapsed() < backoff)
                })
        });
        table.entry(key.clone()).or_default().clone()
    }

    /// An open connection to the hop `uri` names, made when there is none.
    pub async fn connect(self: &Arc<Self>, uri: &msrp::Uri) -> std::io::Result<Arc<Conn>> {
        let port = uri.port().unwrap_or(2855);
        let key = (uri.is_secure(), uri.host_unbracketed().to_ascii_lowercase(), port);
        let slot = self.hop_slot(&key);
        let mut hop = slot.lock().await;
        if let Some(c) = hop.conn.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        if let Some((at, kind, why)) = &hop.failed
            && at.elapsed() < self.opts.dial_backoff
        {
            return Err(std::io::Error::new(*kind, format!("{why} (dialled {} ms ago)", at.elapsed().as_millis())));
        }
        match self.dial(uri, &key).await {
            Ok(conn) => {
                *hop = Hop { conn: Some(conn.clone()), failed: None };
                Ok(conn)
            }
            Err(e) => {
                hop.failed = Some((Instant::now(), e.kind(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Dials `uri` (TCP, then TLS for `msrps`) and starts the connection.
    async fn dial(self: &Arc<Self>, uri: &msrp::Uri, key: &HopKey) -> std::io::Result<Arc<Conn>> {
        let port = key.2;
        let timeout = self.opts.transaction_timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((key.1.as_str(), port)))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr()?;
        let conn = if uri.is_secure() {
            let connector = self.connector.clone().ok_or_else(|| std::io::Error::other("no TLS client configured"))?;
            let name = rustls_pki_types::ServerName::try_from(key.1.clone()).map_err(std::io::Error::other)?;
            let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            conn::start(self.clone(), tls, peer, (true, 0), true)
        } else {
            conn::start(self.clone(), tcp, peer, (false, 0), true)
        };
        Ok(conn)
    }
}

/// Once a second: expire sessions, time out transactions, forget old AUTH failures.
async fn housekeeping(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        let expired = crate::lock(&shared.sessions).expire(now);
        for s in expired {
            info!(session = %s.id, user = %s.user, realm = %s.realm, "session expired");
        }
        let conns: Vec<Arc<Conn>> = crate::lock(&shared.conns).values().cloned().collect();
        for c in conns {
            conn::expire_pending(&shared, &c, now);
        }
        shared.guard.sweep(now);
    }
}
