//! The SIP front door: everything a stranger can send is answered here without lasting state,
//! and only requests that merit a transaction reach rsipstack's transaction layer.
//!
//! rsipstack 0.7.14 keeps every server transaction it answers, a failure included, waiting for
//! its ACK, and its cleanup rescans the whole waiting-for-ACK table on every expiry: 63k
//! unauthenticated INVITEs in 3 s took 1.4 GB and the process's timers went quadratic (issue
//! 11). So, as a stateless UAS does (RFC 3261 §8.2.7), this door — a `TransportEventInspector`,
//! which sees each message before the transaction layer — answers on its own:
//! - an INVITE (or a conference SUBSCRIBE) that must be challenged, or whose credentials
//!   fail: 401/403/400, with a To-tag
//!   derived from the transaction (a retransmission gets the same answer); its ACK matches no
//!   transaction and rsipstack drops it;
//! - OPTIONS (200), other methods outside a dialog (405), requests for unknown dialogs (481);
//! - nothing at all beyond a per-source request rate (`SipLimits::rate`), counted and logged at
//!   most once a second; trusted proxies are exempt.
//!
//! An INVITE with credentials is checked in a task of its own (the user store may be slow),
//! at most `max_checks` at once (503 beyond); once admitted it is handed to the transaction
//! layer with its identity, which [`Door::take_admitted`] gives to the INVITE handler.
//! Retransmissions and requests of known transactions and dialogs pass straight through.
//!
//! SIP over TCP and TLS is capped in all and per source address, and a flow that carries no
//! call is closed after `idle_timeout` without a message.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use msrp_auth::log_throttle::LogThrottle;
use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Method, Request, SipMessage, StatusCode};
use rsipstack::transaction::endpoint::{EndpointInner, TransportEventInspector};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transport::{SipAddr, SipConnection, TransportEvent};
use tracing::{debug, warn};

use super::auth::Verdict;
use super::{ACCEPT, ALLOW, State, claims_of};
use crate::identity::Identity;

/// Limits of the SIP front door (`[chat]` keys `sip_*` in msrpd).
#[derive(Debug, Clone)]
pub struct SipLimits {
    /// Requests per second from one source address (trusted networks exempt); twice as many
    /// may come in a burst. Beyond, requests are dropped unanswered.
    pub rate: u32,
    /// INVITEs whose credentials are being checked at once (503 beyond).
    pub max_checks: usize,
    /// SIP TCP/TLS connections at once, and per source address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// A TCP/TLS flow that carries no call is closed after this long without a message.
    pub idle_timeout: Duration,
}

impl Default for SipLimits {
    fn default() -> Self {
        SipLimits {
            rate: 50,
            max_checks: 256,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Source addresses whose request rate is followed at once; beyond, untracked sources share
/// one budget (a flood from spoofed UDP addresses cannot grow the table).
const MAX_SOURCES: usize = 100_000;
/// Admitted INVITEs waiting for their handler; older entries are forgotten.
const ADMITTED_TTL: Duration = Duration::from_secs(32);
/// Seconds a 503 asks the caller to wait (RFC 3261 §20.33), when checks are full or the user
/// store does not answer.
pub(crate) const RETRY_AFTER: &str = "5";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let burst = 2.0 * rate;
        self.tokens = (self.tokens + rate * now.saturating_duration_since(self.at).as_secs_f64()).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Sources {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
}

/// A TCP/TLS flow: (local listener address, remote address). The remote address alone is not
/// enough: one client port may reach both the TCP and the TLS listener.
pub(crate) type FlowKey = (SocketAddr, SocketAddr);

/// An admitted TCP/TLS flow.
struct Flow {
    last: Instant,
    /// A second handle on its socket: `shutdown` on it ends rsipstack's read loop for good
    /// (rsipstack's own `close` shuts the write half only, and its loop reads on).
    socket: Option<std::net::TcpStream>,
    /// When it was shut down; its slot is given back at rsipstack's Closed event (or, if that
    /// never comes, by the sweep 10 s later).
    closing: Option<Instant>,
}

#[derive(Default)]
struct Streams {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    flows: HashMap<FlowKey, Flow>,
}

pub(crate) struct Door {
    limits: SipLimits,
    endpoint: OnceLock<Weak<EndpointInner>>,
    state: OnceLock<Weak<State>>,
    sources: Mutex<Sources>,
    streams: Mutex<Streams>,
    checking: Mutex<HashSet<TransactionKey>>,
    checks: Arc<tokio::sync::Semaphore>,
    admitted: Mutex<HashMap<TransactionKey, (Identity, Instant)>>,
    /// Keys the To-tags of stateless answers (the same request, the same tag).
    salt: RandomState,
    dropped: LogThrottle,
    busy: LogThrottle,
    /// Requests answered here (without a transaction), and dropped over the rate, for metrics.
    pub(crate) answered: std::sync::atomic::AtomicU64,
    pub(crate) rate_dropped: std::sync::atomic::AtomicU64,
    refused_conns: LogThrottle,
}

impl Door {
    pub(crate) fn new(limits: SipLimits) -> Arc<Door> {
        Arc::new(Door {
            checks: Arc::new(tokio::sync::Semaphore::new(limits.max_checks.max(1))),
            limits,
            endpoint: OnceLock::new(),
            state: OnceLock::new(),
            sources: Mutex::default(),
            streams: Mutex::default(),
            checking: Mutex::default(),
            admitted: Mutex::default(),
            salt: RandomState::new(),
            dropped: LogThrottle::default(),
            busy: LogThrottle::default(),
            answered: std::sync::atomic::AtomicU64::new(0),
            rate_dropped: std::sync::atomic::AtomicU64::new(0),
            refused_conns: LogThrottle::default(),
        })
    }

    /// Completes the door once the endpoint and the server state exist.
    pub(crate) fn attach(&self, endpoint: &Arc<EndpointInner>, state: &Arc<State>) {
        let _ = self.endpoint.set(Arc::downgrade(endpoint));
        let _ = self.state.set(Arc::downgrade(state));
    }

    /// The identity the door admitted an INVITE transaction with, once.
    pub(crate) fn take_admitted(&self, key: &TransactionKey) -> Option<Identity> {
        lock(&self.admitted).remove(key).map(|(id, _)| id)
    }

    /// Whether an accepted TCP/TLS connection from `peer` to `local` may be kept (counted if
    /// so).
    pub(crate) fn admit_stream(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        let mut s = lock(&self.streams);
        if s.flows.contains_key(&(local, peer)) {
            return false; // the same four-tuple twice: the old one has not ended yet
        }
        let n = s.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if s.total >= self.limits.max_connections || n >= self.limits.max_connections_per_ip {
            drop(s);
            if let Some(count) = self.refused_conns.note() {
                let (max, per_ip) = (self.limits.max_connections, self.limits.max_connections_per_ip);
                warn!(%peer, max, per_ip, refused_so_far = count, "SIP connection refused: too many");
            }
            return false;
        }
        s.total += 1;
        *s.per_ip.entry(peer.ip()).or_default() += 1;
        s.flows.insert((local, peer), Flow { last: Instant::now(), socket: None, closing: None });
        true
    }

    /// Gives back the slot of a flow that ended (once: a second call finds nothing).
    pub(crate) fn release_stream(&self, key: FlowKey) {
        let mut s = lock(&self.streams);
        Self::release_locked(&mut s, key);
    }

    fn release_locked(s: &mut Streams, (local, peer): FlowKey) {
        if s.flows.remove(&(local, peer)).is_none() {
            return;
        }
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&peer.ip()) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&peer.ip());
            }
        }
    }

    /// Keeps a second handle on an admitted flow's socket, to end it when idle.
    pub(crate) fn track_stream(&self, key: FlowKey, socket: std::net::TcpStream) {
        if let Some(flow) = lock(&self.streams).flows.get_mut(&key) {
            flow.socket = Some(socket);
        }
    }

    /// Ends a flow: both directions of its socket are shut down, so rsipstack's read loop
    /// ends and reports it closed (which gives its slot back).
    pub(crate) fn end_stream(&self, key: FlowKey) {
        let mut s = lock(&self.streams);
        if let Some(flow) = s.flows.get_mut(&key)
            && flow.closing.is_none()
        {
            if let Some(sock) = &flow.socket {
                let _ = sock.shutdown(std::net::Shutdown::Both);
            }
            flow.closing = Some(Instant::now());
        }
    }

    /// How long a new TCP/TLS connection may stay silent before it is closed unserved: the
    /// idle timeout, at most 10 s (an honest client speaks at once).
    pub(crate) fn first_bytes_timeout(&self) -> Duration {
        self.limits.idle_timeout.min(Duration::from_secs(10))
    }

    /// Stream connections open now (for tests and metrics).
    pub(crate) fn stream_count(&self) -> usize {
        lock(&self.streams).total
    }

    /// Ends flows idle past `idle_timeout` that carry no call; gives back the slots of ended
    /// flows whose Closed event never came; forgets stale admissions.
    pub(crate) fn sweep(&self, busy_flows: &HashSet<FlowKey>, now: Instant) {
        let mut s = lock(&self.streams);
        let mut gone = Vec::new();
        for (key, flow) in s.flows.iter_mut() {
            match flow.closing {
                Some(at) if now.saturating_duration_since(at) >= Duration::from_secs(10) => gone.push(*key),
                Some(_) => {}
                None if flow.socket.is_some()
                    && now.saturating_duration_since(flow.last) >= self.limits.idle_timeout
                    && !busy_flows.contains(key) =>
                {
                    debug!(remote = %key.1, "ending an idle SIP connection that carries no call");
                    if let Some(sock) = &flow.socket {
                        let _ = sock.shutdown(std::net::Shutdown::Both);
                    }
                    flow.closing = Some(now);
                }
                None => {}
            }
        }
        for key in gone {
            Self::release_locked(&mut s, key);
        }
        drop(s);
        lock(&self.admitted).retain(|_, (_, at)| now.saturating_duration_since(*at) < ADMITTED_TTL);
        let mut sources = lock(&self.sources);
        let rate = f64::from(self.limits.rate);
        // A bucket full again is as good as none.
        sources.buckets.retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() * rate < 2.0 * rate);
    }

    /// Takes a token for a request from `ip`; false when it is over its rate.
    fn within_rate(&self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.limits.rate.max(1));
        let mut s = lock(&self.sources);
        if let Some(b) = s.buckets.get_mut(&ip) {
            return b.take(rate, now);
        }
        if s.buckets.len() < MAX_SOURCES {
            return s.buckets.entry(ip).or_insert(Bucket { tokens: 2.0 * rate, at: now }).take(rate, now);
        }
        // Untracked sources share one budget of a single source's size times ten.
        s.overflow.get_or_insert(Bucket { tokens: 20.0 * rate, at: now }).take(10.0 * rate, now)
    }

    fn endpoint(&self) -> Option<Arc<EndpointInner>> {
        self.endpoint.get()?.upgrade()
    }

    fn state(&self) -> Option<Arc<State>> {
        self.state.get()?.upgrade()
    }

    /// Decides on one incoming request; `None` when it was answered (or dropped) here.
    async fn request(self: &Arc<Self>, req: Request, conn: SipConnection, from: SipAddr) -> Option<TransportEvent> {
        let pass = |req: Request, conn: SipConnection, from: SipAddr| {
            Some(TransportEvent::Incoming(SipMessage::Request(req), conn, from))
        };
        let (Some(ep), Some(st)) = (self.endpoint(), self.state()) else { return pass(req, conn, from) };
        let source = from.get_socketaddr().ok();
        let now = Instant::now();
        if let Some(key) = flow_key(&conn)
            && let Some(flow) = lock(&self.streams).flows.get_mut(&key)
        {
            flow.last = now;
        }
        if let Some(src) = source
            && !st.auth.trusts(src.ip(), conn.is_reliable())
            && !self.within_rate(src.ip(), now)
        {
            self.rate_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(n) = self.dropped.note() {
                warn!(source = %src, rate = self.limits.rate, dropped_so_far = n, "SIP requests over the per-source rate dropped");
            }
            return None;
        }
        // ACK and CANCEL are stateless in rsipstack when they match nothing.
        if matches!(req.method, Method::Ack | Method::Cancel) {
            return pass(req, conn, from);
        }
        let Ok(key) = TransactionKey::from_request(&req, TransactionRole::Server) else {
            debug!(source = ?source, "SIP request without a usable Via: dropped");
            return None;
        };
        if ep.transactions.contains_key(&key) || ep.finished_transactions.contains_key(&key) {
            return pass(req, conn, from);
        }
        let in_dialog = req.to_header().ok().and_then(|t| t.tag().ok().flatten()).is_some();
        if in_dialog {
            let known = DialogId::try_from((&req, TransactionRole::Server))
                .ok()
                .is_some_and(|id| st.dialogs.get_dialog(&id).is_some());
            if known {
                return pass(req, conn, from);
            }
            self.reply(&ep, &req, &conn, &from, StatusCode::CallTransactionDoesNotExist, vec![]).await;
            return None;
        }
        match req.method {
            Method::Invite => self.authenticate(ep, st, req, conn, from, key).await,
            Method::Subscribe => match super::subscribe::bad_event(&req) {
                None => self.authenticate(ep, st, req, conn, from, key).await,
                Some(headers) => {
                    self.reply(&ep, &req, &conn, &from, StatusCode::BadEvent, headers).await;
                    None
                }
            },
            Method::Refer => self.authenticate(ep, st, req, conn, from, key).await,
            Method::Options => {
                let headers = vec![Header::Allow(ALLOW.into()), Header::Accept(ACCEPT.into())];
                self.reply(&ep, &req, &conn, &from, StatusCode::OK, headers).await;
                None
            }
            Method::Bye => {
                self.reply(&ep, &req, &conn, &from, StatusCode::CallTransactionDoesNotExist, vec![]).await;
                None
            }
            _ => {
                // MESSAGE included: chat messages travel over MSRP (RFC 7701), not SIP.
                let headers = vec![Header::Allow(ALLOW.into())];
                self.reply(&ep, &req, &conn, &from, StatusCode::MethodNotAllowed, headers).await;
                None
            }
        }
    }

    /// A new INVITE or SUBSCRIBE: challenged or refused here; checked in a task when it has
    /// credentials.
    async fn authenticate(
        self: &Arc<Self>,
        ep: Arc<EndpointInner>,
        st: Arc<State>,
        req: Request,
        conn: SipConnection,
        from: SipAddr,
        key: TransactionKey,
    ) -> Option<TransportEvent> {
        let Some(source) = from.get_socketaddr().ok() else {
            self.reply(&ep, &req, &conn, &from, StatusCode::BadRequest, vec![]).await;
            return None;
        };
        let reliable = conn.is_reliable();
        let has_credentials = req.authorization_header().is_some();
        if !has_credentials && !st.auth.trusts(source.ip(), reliable) {
            // Answered at once: no store lookup, nothing kept.
            let verdict = st.auth.check(&claims_of(&req, source, reliable)).await;
            self.answer(&ep, &req, &conn, &from, verdict).await;
            return None;
        }
        if !lock(&self.checking).insert(key.clone()) {
            return None; // A retransmission while its original is being checked.
        }
        let Ok(permit) = self.checks.clone().try_acquire_owned() else {
            lock(&self.checking).remove(&key);
            if let Some(n) = self.busy.note() {
                warn!(
                    max_checks = self.limits.max_checks,
                    refused_so_far = n,
                    "request refused (503): too many being checked"
                );
            }
            let headers = vec![Header::Other("Retry-After".into(), RETRY_AFTER.into())];
            self.reply(&ep, &req, &conn, &from, StatusCode::ServiceUnavailable, headers).await;
            return None;
        };
        let door = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let verdict = st.auth.check(&claims_of(&req, source, reliable)).await;
            match verdict {
                Verdict::Admit(identity) => {
                    lock(&door.admitted).insert(key.clone(), (identity, Instant::now()));
                    if let Err(e) = ep.on_received_message(SipMessage::Request(req), conn, &from).await {
                        debug!(error = %e, "admitted INVITE not taken by the transaction layer");
                        lock(&door.admitted).remove(&key);
                    }
                }
                other => door.answer(&ep, &req, &conn, &from, other).await,
            }
            lock(&door.checking).remove(&key);
        });
        None
    }

    /// Sends the stateless answer a refusing verdict calls for.
    async fn answer(
        self: &Arc<Self>,
        ep: &EndpointInner,
        req: &Request,
        conn: &SipConnection,
        from: &SipAddr,
        v: Verdict,
    ) {
        match v {
            Verdict::Admit(_) => {}
            Verdict::Challenge(values) => {
                let headers = values.into_iter().map(|v| Header::WwwAuthenticate(v.into())).collect();
                self.reply(ep, req, conn, from, StatusCode::Unauthorized, headers).await;
            }
            Verdict::Forbid(why) => {
                debug!(source = %from, why, method = %req.method, "refused (403)");
                self.reply(ep, req, conn, from, StatusCode::Forbidden, vec![]).await;
            }
            Verdict::Malformed(why) => {
                debug!(source = %from, why, method = %req.method, "refused (400)");
                self.reply(ep, req, conn, from, StatusCode::BadRequest, vec![]).await;
            }
            Verdict::Unavailable(why) => {
                debug!(source = %from, why, method = %req.method, "refused (503)");
                let headers = vec![Header::Other("Retry-After".into(), RETRY_AFTER.into())];
                self.reply(ep, req, conn, from, StatusCode::ServiceUnavailable, headers).await;
            }
        }
    }

    /// A response sent without a transaction: over the request's flow, or for UDP where its
    /// Via says (as rsipstack sends its own), with a To-tag of our own on a final answer.
    async fn reply(
        self: &Arc<Self>,
        ep: &EndpointInner,
        req: &Request,
        conn: &SipConnection,
        from: &SipAddr,
        status: StatusCode,
        headers: Vec<Header>,
    ) {
        self.answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut resp = ep.make_response(req, status.clone(), None);
        if !matches!(status.kind(), rsipstack::sip::StatusCodeKind::Provisional)
            && let Ok(to) = req.to_header()
            && to.tag().ok().flatten().is_none()
        {
            let tag = format!("d{:016x}", self.salt.hash_one(req.call_id_header().map(|c| c.value()).unwrap_or("")));
            resp.headers.unique_push(to.clone().with_tag(tag.into()).into());
        }
        resp.headers.extend(headers);
        if let Some(key) = flow_key(conn) {
            // Over TCP/TLS the write may wait for a peer that does not read: not in rsipstack's
            // event loop (every SIP request waits behind it), and not for ever.
            let (conn, door) = (conn.clone(), self.clone());
            tokio::spawn(async move {
                let sent = tokio::time::timeout(STATELESS_WRITE, conn.send(resp.into(), None)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    debug!(remote = %key.1, "stateless SIP answer not taken: ending the connection");
                    door.end_stream(key);
                }
            });
            return;
        }
        let dest = Some(ep.get_destination_from_request(req).await.unwrap_or_else(|| from.clone()));
        if let Err(e) = conn.send(resp.into(), dest.as_ref()).await {
            debug!(error = %e, "stateless SIP answer not sent");
        }
    }
}

/// How long a stateless answer over TCP/TLS may take to be written.
const STATELESS_WRITE: Duration = Duration::from_secs(5);

/// The flow a TCP/TLS connection is (None for UDP).
pub(crate) fn flow_key(conn: &SipConnection) -> Option<FlowKey> {
    if !conn.is_reliable() {
        return None;
    }
    let local = conn.get_addr().get_socketaddr().ok()?;
    let remote = conn.get_remote_addr()?.get_socketaddr().ok()?;
    Some((local, remote))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The inspector rsipstack calls with every transport event.
pub(crate) struct DoorInspector(pub(crate) Arc<Door>);

#[async_trait::async_trait]
impl TransportEventInspector for DoorInspector {
    async fn handle(&self, event: TransportEvent) -> Option<TransportEvent> {
        match event {
            TransportEvent::Incoming(SipMessage::Request(req), conn, from) => self.0.request(req, conn, from).await,
            TransportEvent::Closed(conn) => {
                if let Some(key) = flow_key(&conn) {
                    self.0.release_stream(key);
                }
                Some(TransportEvent::Closed(conn))
            }
            other => Some(other),
        }
    }
}

impl std::fmt::Debug for Door {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door").field("limits", &self.limits).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_rate_with_a_burst_of_twice_that() {
        let mut b = Bucket { tokens: 20.0, at: Instant::now() };
        let t = b.at;
        assert_eq!((0..30).filter(|_| b.take(10.0, t)).count(), 20, "the burst");
        assert!(!b.take(10.0, t));
        assert_eq!((0..30).filter(|_| b.take(10.0, t + Duration::from_millis(500))).count(), 5, "then the rate");
    }

    #[test]
    fn untracked_sources_share_one_budget() {
        let door = Door::new(SipLimits { rate: 1, ..SipLimits::default() });
        let t = Instant::now();
        {
            let mut s = lock(&door.sources);
            for i in 0..MAX_SOURCES as u32 {
                s.buckets.insert(IpAddr::from(i.to_be_bytes()), Bucket { tokens: 0.0, at: t });
            }
        }
        let admitted = (0..100u32).filter(|i| door.within_rate(IpAddr::from((i + (1 << 30)).to_be_bytes()), t)).count();
        assert_eq!(admitted, 20, "ten sources' burst, whatever the number of addresses");
    }
}
