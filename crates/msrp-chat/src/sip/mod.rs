//! The SIP side of the chat focus: a UAS on UDP, TCP and TLS (rsipstack for parsing,
//! transactions and dialogs) that turns an INVITE to `sip:ROOM@domain` into a room
//! membership and a BYE into leaving it (RFC 7701; offer/answer per RFC 3264).
//!
//! - INVITE: 100, who is calling ([`auth`]), then [`Chat::join`]; 200 with the SDP answer and
//!   a Contact with `;isfocus`, or 401/403/404/486/488/503. A re-INVITE keeps, moves, drops
//!   or adds the chat stream (`reinvite`).
//! - BYE, CANCEL and an ACK that never comes end the session; a session the server ends
//!   (participant too slow, MSRP connection gone) sends BYE.
//! - SUBSCRIBE with `Event: conference`: the room's roster (`subscribe`, RFC 4575).
//! - REFER to the room: a participant invites someone in or removes someone (`refer`,
//!   RFC 4579); the focus then sends INVITEs of its own.
//! - OPTIONS: 200 with Allow/Accept. MESSAGE: 405 (chat happens over MSRP).

pub mod auth;
mod door;
mod notify;
mod outgoing;
mod push;
mod refer;
mod reinvite;
mod subscribe;

pub use door::SipLimits;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver, DialogStateSender};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Method, StatusCode, Transport};
use rsipstack::transaction::endpoint::{Endpoint, EndpointInnerRef, EndpointOption};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::tls::TlsConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::server::{Chat, JoinRequest};
use auth::{Authenticator, Claims, Verdict};

/// Methods the focus answers (Allow).
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE, REFER";
/// Bodies it takes (Accept).
const ACCEPT: &str = "application/sdp";
/// How long the server waits for a participant's answer to its BYE at shutdown.
const BYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where to listen for SIP. TCP and TLS listeners are bound by the caller (so tests can use
/// port 0 and read the port back); UDP sockets are bound here.
#[derive(Default)]
pub struct SipListeners {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    /// Needed when `tls` is not empty.
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    /// Host for the Contact of answers when a listener is bound to `0.0.0.0` or `::`.
    pub advertised_host: Option<String>,
    /// The front door's limits (per-source rate, connections, idle flows).
    pub limits: SipLimits,
}

impl std::fmt::Debug for SipListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipListeners").field("udp", &self.udp).finish_non_exhaustive()
    }
}

/// A running SIP front end.
pub struct SipServer {
    endpoint: Endpoint,
    state: Arc<State>,
    token: CancellationToken,
    addrs: Vec<(Transport, SocketAddr)>,
}

impl std::fmt::Debug for SipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipServer").field("addrs", &self.addrs).finish_non_exhaustive()
    }
}

/// What a dialog maps to.
#[derive(Clone)]
struct Call {
    /// The chat session, while the call has a chat stream.
    session_id: Option<String>,
    /// The last answer, repeated for a re-INVITE without an offer.
    answer: String,
    contact: String,
    /// The TCP/TLS flow the INVITE came over (kept open while the call lasts).
    flow: Option<door::FlowKey>,
    /// Who joined which room from where, for a re-INVITE that joins again.
    room: String,
    identity: crate::identity::Identity,
    device: Option<String>,
    /// Files this call carries beside its chat (streams added by re-INVITE).
    files: Vec<reinvite::FileLeg>,
    /// A re-INVITE is being answered (another one gets 491).
    renegotiating: bool,
}

/// The hook that hangs up call `id` when the server ends its chat session.
fn hangup_for(st: &State, id: &DialogId) -> Box<dyn FnOnce() + Send> {
    let (dialogs, id) = (st.dialogs.clone(), id.clone());
    Box::new(move || {
        tokio::spawn(async move {
            if let Some(Dialog::Invite(d)) = dialogs.get_dialog(&id) {
                let _ = d.bye().await;
            }
        });
    })
}

struct State {
    chat: Chat,
    advertised_host: Option<String>,
    /// (IPv4?, port) of UDP listeners bound to a wildcard address: rsipstack reports such a
    /// socket under an interface address it picked, so the wildcard is not visible on it later.
    udp_wildcards: Vec<(bool, u16)>,
    auth: Authenticator,
    dialogs: Arc<DialogLayer>,
    calls: Mutex<HashMap<DialogId, Call>>,
    /// Conference-info subscriptions, by their dialog.
    subs: Mutex<HashMap<DialogId, Arc<subscribe::Sub>>>,
    /// Referrals whose referrer follows them, by the REFER's dialog.
    refers: Mutex<HashMap<DialogId, Arc<refer::Referral>>>,
    /// Referrals in progress, per referrer (identity key).
    refer_pending: Mutex<HashMap<String, usize>>,
    /// The SIP listeners, for the Contact of requests the focus sends.
    listeners: Vec<(Transport, SocketAddr)>,
    /// What to do once an in-dialog request is answered (by its transaction).
    after_answer: Mutex<HashMap<TransactionKey, subscribe::Then>>,
    /// For the NOTIFYs' own transactions.
    endpoint: EndpointInnerRef,
    /// The first TCP listener: the Via of NOTIFYs moved off UDP.
    tcp_local: Option<SocketAddr>,
    state_tx: DialogStateSender,
    door: Arc<door::Door>,
}

impl SipServer {
    /// Starts the UAS for `chat`. Stops when `token` is cancelled.
    pub async fn start(
        chat: Chat,
        auth: Authenticator,
        listeners: SipListeners,
        token: CancellationToken,
    ) -> std::io::Result<SipServer> {
        let io = |e: rsipstack::Error| std::io::Error::other(e.to_string());
        let layer = TransportLayer::new(token.child_token());
        // A chat lasts long without SIP traffic; the participant's TCP/TLS flow must stay
        // open for the BYE (RFC 5923-style connection reuse), so no idle timeout.
        layer.set_stream_idle_timeout(Duration::ZERO);
        let mut addrs = Vec::new();
        let mut udp_wildcards = Vec::new();
        for addr in &listeners.udp {
            let udp = UdpConnection::create_connection(*addr, None, Some(token.child_token())).await.map_err(io)?;
            let bound = udp.get_addr().get_socketaddr().map_err(io)?;
            if addr.ip().is_unspecified() {
                udp_wildcards.push((addr.is_ipv4(), bound.port()));
            }
            addrs.push((Transport::Udp, bound));
            layer.add_transport(udp.into());
        }
        let option = EndpointOption { callid_suffix: Some(chat.options().domain.clone()), ..Default::default() };
        let door = door::Door::new(listeners.limits.clone());
        let endpoint = EndpointBuilder::new()
            .with_user_agent("msrpd")
            .with_transport_layer(layer)
            .with_cancel_token(token.child_token())
            .with_option(option)
            .with_transport_inspector(Box::new(door::DoorInspector(door.clone())))
            .with_inspector(Box::new(FocusContact))
            .build();
        for l in &listeners.tcp {
            addrs.push((Transport::Tcp, l.local_addr()?));
        }
        for l in &listeners.tls {
            addrs.push((Transport::Tls, l.local_addr()?));
        }
        let handshake = chat.options().connect_timeout;
        for l in listeners.tcp {
            tokio::spawn(accept_loop(l, None, endpoint.inner.clone(), door.clone(), token.clone(), handshake));
        }
        if !listeners.tls.is_empty() {
            let config = listeners
                .tls_config
                .clone()
                .ok_or_else(|| std::io::Error::other("SIP over TLS needs a certificate"))?;
            for l in listeners.tls {
                tokio::spawn(accept_loop(
                    l,
                    Some(config.clone()),
                    endpoint.inner.clone(),
                    door.clone(),
                    token.clone(),
                    handshake,
                ));
            }
        }
        let mut incoming = endpoint.incoming_transactions().map_err(io)?;
        let serving = endpoint.inner.clone();
        tokio::spawn(async move { serving.serve().await });
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (state_tx, state_rx) = tokio::sync::mpsc::unbounded_channel();
        let state = Arc::new(State {
            chat,
            advertised_host: listeners.advertised_host.clone(),
            udp_wildcards,
            auth,
            dialogs,
            calls: Mutex::default(),
            subs: Mutex::default(),
            refers: Mutex::default(),
            refer_pending: Mutex::default(),
            listeners: addrs.clone(),
            after_answer: Mutex::default(),
            endpoint: endpoint.inner.clone(),
            tcp_local: addrs.iter().find(|(t, _)| *t == Transport::Tcp).map(|(_, a)| *a),
            state_tx,
            door: door.clone(),
        });
        door.attach(&endpoint.inner, &state);
        push::install(&state);
        tokio::spawn(dialog_states(state.clone(), state_rx));
        tokio::spawn(sweep(Arc::downgrade(&state), token.clone()));
        let (st, stop) = (state.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let tx = tokio::select! {
                    _ = stop.cancelled() => break,
                    t = incoming.recv() => match t { Some(t) => t, None => break },
                };
                let st = st.clone();
                tokio::spawn(async move { on_transaction(st, tx).await });
            }
        });
        for (t, a) in &addrs {
            info!(transport = %t, addr = %a, "SIP listening");
        }
        Ok(SipServer { endpoint, state, token, addrs })
    }

    /// The bound addresses, per transport.
    pub fn addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.addrs
    }

    /// Conference-info subscriptions in force.
    pub fn subscription_count(&self) -> usize {
        self.state.subs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.state.calls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Server transactions the SIP stack holds, live or finished (the front door keeps
    /// unauthenticated requests out of this count).
    pub fn transaction_count(&self) -> usize {
        self.endpoint.inner.transactions.len() + self.endpoint.inner.finished_transactions.len()
    }

    /// Requests the front door answered without a transaction, and requests it dropped over
    /// their source's rate, so far.
    pub fn door_counters(&self) -> (u64, u64) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        (load(&self.state.door.answered), load(&self.state.door.rate_dropped))
    }

    /// SIP TCP/TLS connections open now.
    pub fn connection_count(&self) -> usize {
        self.state.door.stream_count()
    }

    /// Hangs up every call (BYE, answered or not within 2 s), then stops.
    pub async fn shutdown(&self) {
        let ids: Vec<DialogId> = self.state.calls.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        let byes = ids.into_iter().filter_map(|id| match self.state.dialogs.get_dialog(&id) {
            Some(Dialog::Invite(d)) => Some(async move {
                let _ = tokio::time::timeout(BYE_TIMEOUT, d.bye()).await;
            }),
            _ => None,
        });
        for sub in self.state.subs.lock().unwrap_or_else(|e| e.into_inner()).values() {
            sub.end("noresource");
        }
        futures_join_all(byes).await;
        self.token.cancel();
        self.endpoint.shutdown();
    }
}

/// The Contact of an answer carrying `sdp`: marked `;isfocus` (RFC 4579 §3.3) when the call
/// is a room's chat, not when it only carries a file. AG's SDK subscribes to conference-info
/// on every call with a focus, and crashed now and then when such a short call ended (its
/// subscription being torn down as the application stopped).
fn focus_contact_value(contact: &str, sdp: &str) -> String {
    if carries_file(sdp.as_bytes()) { format!("<{contact}>") } else { format!("<{contact}>;isfocus") }
}

/// Whether an SDP body is a file stream's (RFC 5547).
fn carries_file(sdp: &[u8]) -> bool {
    sdp.windows(16).any(|w| w.eq_ignore_ascii_case(b"a=file-selector:"))
}

/// Marks the Contact of the INVITEs the focus sends for a room's chat (after a REFER) with
/// `;isfocus` (RFC 4579 §3.3), by which AG's SDK and Blink know the call is a conference:
/// rsipstack writes that Contact itself and takes no header parameters for it. The INVITEs
/// that offer a file are left alone (see [`focus_contact_value`]).
struct FocusContact;

impl rsipstack::transaction::endpoint::MessageInspector for FocusContact {
    fn before_send(&self, msg: rsipstack::sip::SipMessage, _: Option<&SipAddr>) -> rsipstack::sip::SipMessage {
        let rsipstack::sip::SipMessage::Request(mut req) = msg else { return msg };
        if req.method == Method::Invite && !carries_file(&req.body) {
            for h in req.headers.iter_mut() {
                if let Header::Contact(c) = h
                    && !c.value().contains("isfocus")
                {
                    let v = c.value().trim();
                    let bracketed = if v.contains('<') { v.to_owned() } else { format!("<{v}>") };
                    *h = Header::Contact(format!("{bracketed};isfocus").into());
                }
            }
        }
        rsipstack::sip::SipMessage::Request(req)
    }

    fn after_received(&self, msg: rsipstack::sip::SipMessage, _: Option<&SipAddr>) -> rsipstack::sip::SipMessage {
        msg
    }
}

/// Whether `uri` can be the focus's outbound proxy: a `sip:`/`sips:` URI naming a host.
pub fn is_proxy_uri(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    (lower.starts_with("sip:") || lower.starts_with("sips:"))
        && rsipstack::sip::Uri::try_from(uri).ok().is_some_and(|u| SipAddr::try_from(&u).is_ok())
}

/// Runs futures concurrently to completion (a few lines instead of the `futures` crate).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(futs: impl Iterator<Item = F>) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

/// Once a second: closes idle flows that carry no call, forgets stale admissions.
async fn sweep(state: std::sync::Weak<State>, token: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(st) = state.upgrade() else { return };
        let mut busy: std::collections::HashSet<door::FlowKey> =
            st.calls.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(|c| c.flow).collect();
        busy.extend(st.subs.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(|s| s.flow));
        busy.extend(refer::flows(&st));
        st.door.sweep(&busy, std::time::Instant::now());
    }
}

/// What a request that needs an identity (INVITE, SUBSCRIBE) says about its sender, for
/// [`Authenticator::check`].
fn claims_of(req: &rsipstack::sip::Request, source: SocketAddr, reliable: bool) -> Claims<'static> {
    Claims {
        source: source.ip(),
        reliable,
        method: match req.method {
            Method::Subscribe => "SUBSCRIBE",
            Method::Refer => "REFER",
            _ => "INVITE",
        },
        from: req.from_header().map(|h| name_addr(h.value())).unwrap_or_default(),
        asserted: req.header_value("P-Asserted-Identity").map(|v| name_addr(&v)),
        authorization: req.authorization_header().map(|h| h.value().to_owned()),
        request_uri: req.uri.to_string(),
    }
}

/// Accepts SIP over TCP (or TLS) and hands each flow to the transport layer, within the
/// door's connection caps.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    endpoint: EndpointInnerRef,
    door: Arc<door::Door>,
    token: CancellationToken,
    handshake: Duration,
) {
    let Ok(local) = listener.local_addr() else { return };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "SIP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !door.admit_stream(local, peer) {
            drop(stream);
            continue;
        }
        let (acceptor, endpoint, token, door) = (acceptor.clone(), endpoint.clone(), token.clone(), door.clone());
        let fut = async move {
            // rsipstack gives each flow two 64 KiB buffers, and the handshake and hand-over
            // futures are large: a flow is handed over only once its first bytes arrive (this
            // task stays small until then: the rest is boxed), and one that sends nothing is
            // closed, costing a socket and this task (10,000 silent connections took 730 MB).
            // `peek`, not `readable`: a fresh socket may report ready with nothing to read.
            let first = door.first_bytes_timeout();
            let mut probe = [0u8; 1];
            if !matches!(tokio::time::timeout(first, stream.peek(&mut probe)).await, Ok(Ok(1))) {
                debug!(%peer, "SIP connection sent nothing: closed");
                door.release_stream((local, peer));
                return;
            }
            Box::pin(hand_over(stream, peer, local, acceptor, endpoint, door, token, handshake)).await;
        };
        tokio::spawn(fut);
    }
}

/// Completes a SIP flow that has spoken (TLS handshake when asked) and gives it to rsipstack.
#[allow(clippy::too_many_arguments)]
async fn hand_over(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    endpoint: EndpointInnerRef,
    door: Arc<door::Door>,
    token: CancellationToken,
    handshake: Duration,
) {
    // A second handle on the socket, so that the door can end the flow for good
    // (`Door::end_stream`).
    let stream = match second_handle(stream) {
        Ok((stream, keep)) => {
            door.track_stream((local, peer), keep);
            stream
        }
        Err(e) => {
            debug!(%peer, error = %e, "SIP connection not usable");
            door.release_stream((local, peer));
            return;
        }
    };
    let conn = match acceptor {
        None => {
            let local = SipAddr { r#type: Some(Transport::Tcp), addr: local.into() };
            TcpConnection::from_stream(stream, local, Some(token.child_token())).map(SipConnection::Tcp)
        }
        Some(acceptor) => {
            let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "SIP TLS handshake failed");
                    door.release_stream((local, peer));
                    return;
                }
                Err(_) => {
                    debug!(%peer, "SIP TLS handshake not completed in time");
                    door.release_stream((local, peer));
                    return;
                }
            };
            let local = SipAddr { r#type: Some(Transport::Tls), addr: local.into() };
            let remote = SipAddr { r#type: Some(Transport::Tls), addr: peer.into() };
            TlsConnection::from_server_stream(tls, local, remote, Some(token.child_token()))
                .await
                .map(SipConnection::Tls)
        }
    };
    match conn {
        Ok(c) => endpoint.transport_layer.add_connection(c),
        Err(e) => {
            debug!(%peer, error = %e, "SIP connection not usable");
            door.release_stream((local, peer));
        }
    }
}

/// The stream back, and a duplicate of its socket (a std handle: `shutdown` needs no await).
fn second_handle(stream: tokio::net::TcpStream) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let keep = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, keep))
}

/// `(display name, URI)` of a name-addr header value such as `"Alice" <sip:a@x>;tag=1`.
fn name_addr(value: &str) -> (Option<String>, String) {
    match (value.find('<'), value.find('>')) {
        (Some(l), Some(r)) if l < r => {
            let name = value[..l].trim().trim_matches('"').trim();
            ((!name.is_empty()).then(|| name.to_owned()), value[l + 1..r].trim().to_owned())
        }
        _ => (None, value.split(';').next().unwrap_or("").trim().to_owned()),
    }
}

async fn on_transaction(st: Arc<State>, mut tx: Transaction) {
    let method = tx.original.method;
    let in_dialog = tx.original.to_header().ok().and_then(|t| t.tag().ok().flatten()).is_some();
    if in_dialog {
        match st.dialogs.match_dialog(&tx) {
            Some(mut d) => {
                if let Err(e) = d.handle(&mut tx).await {
                    debug!(error = %e, "in-dialog request failed");
                }
                let then = st.after_answer.lock().unwrap_or_else(|e| e.into_inner()).remove(&tx.key);
                if let Some(then) = then {
                    then.run();
                }
            }
            None if method == Method::Ack => {}
            None => {
                let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
            }
        }
        return;
    }
    match method {
        Method::Invite => on_invite(st, tx).await,
        Method::Subscribe => {
            if let Some(headers) = subscribe::bad_event(&tx.original) {
                return refuse(tx, 489, headers).await;
            }
            if let Some(identity) = identify(&st, &mut tx).await {
                subscribe::on_subscribe(st, tx, identity).await;
            }
        }
        Method::Refer => {
            if let Some(identity) = identify(&st, &mut tx).await {
                refer::on_refer(st, tx, identity).await;
            }
        }
        Method::Options => {
            let headers = vec![Header::Allow(ALLOW.into()), Header::Accept(ACCEPT.into())];
            let _ = tx.reply_with(StatusCode::OK, headers, None).await;
        }
        Method::Ack => {}
        Method::Bye | Method::Cancel => {
            let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
        }
        _ => {
            // MESSAGE included: chat messages travel over MSRP (RFC 7701), not as SIP MESSAGE.
            let _ = tx.reply_with(StatusCode::MethodNotAllowed, vec![Header::Allow(ALLOW.into())], None).await;
        }
    }
}

/// The server side of a subscription `tx` starts (a SUBSCRIBE, or the implicit one of a REFER,
/// RFC 3515 §2.4.4), with `contact` as the focus's Contact, and where its NOTIFYs go. `None`
/// when either cannot be made (nothing is left behind): the caller answers 400.
fn open_subscription(
    st: &State,
    tx: &Transaction,
    conn: &SipConnection,
    contact: &str,
) -> Option<(rsipstack::dialog::subscription::ServerSubscriptionDialog, notify::Target)> {
    let method = tx.original.method;
    let contact_uri: Option<rsipstack::sip::Uri> = contact.try_into().ok();
    let dialog = match st.dialogs.get_or_create_server_subscription(tx, st.state_tx.clone(), None, contact_uri) {
        Ok(d) => d,
        Err(e) => {
            debug!(error = %e, %method, "cannot start a subscription dialog: 400");
            return None;
        }
    };
    let id = dialog.id();
    let Some(target) = notify::Target::new(&tx.original, conn, &id.local_tag, contact, st.tcp_local) else {
        debug!(%method, "no usable From, To or Contact: 400");
        st.dialogs.remove_dialog(&id);
        return None;
    };
    Some((dialog, target))
}

/// Answers `tx` with a final failure and keeps the transaction alive to absorb the ACK (and,
/// over UDP, to retransmit).
async fn refuse(mut tx: Transaction, code: u16, headers: Vec<Header>) {
    refuse_in_place(&mut tx, code, headers).await;
}

/// Who sent `tx` (an INVITE or SUBSCRIBE): admitted by the front door, or checked here. On
/// refusal the transaction is answered (and absorbed) and `None` returned.
async fn identify(st: &State, tx: &mut Transaction) -> Option<crate::identity::Identity> {
    let req = &tx.original;
    let method = req.method.to_string();
    let source = tx.connection.as_ref().and_then(|c| c.get_remote_addr()).and_then(|a| a.get_socketaddr().ok());
    let Some(source) = source else {
        refuse_in_place(tx, 400, vec![]).await;
        return None;
    };
    let reliable = tx.connection.as_ref().is_some_and(|c| c.transport() != Transport::Udp);
    let claims = claims_of(req, source, reliable);
    let from = claims.from.clone();
    // Admitted by the front door (which checked the credentials); checked here otherwise.
    let verdict = match st.door.take_admitted(&tx.key) {
        Some(id) => Verdict::Admit(id),
        None => st.auth.check(&claims).await,
    };
    let (code, headers) = match verdict {
        Verdict::Admit(id) => return Some(id),
        Verdict::Challenge(values) => {
            debug!(%source, from = %from.1, "challenging the {method}");
            (401, values.into_iter().map(|v| Header::WwwAuthenticate(v.into())).collect())
        }
        Verdict::Forbid(why) => {
            info!(%source, from = %from.1, "{method} refused (403): {why}");
            (403, vec![])
        }
        Verdict::Malformed(why) => {
            info!(%source, "{method} refused (400): {why}");
            (400, vec![])
        }
        Verdict::Unavailable(why) => {
            info!(%source, from = %from.1, "{method} refused (503): {why}");
            (503, vec![Header::Other("Retry-After".into(), door::RETRY_AFTER.into())])
        }
    };
    refuse_in_place(tx, code, headers).await;
    None
}

/// [`refuse`] for a transaction the caller keeps.
async fn refuse_in_place(tx: &mut Transaction, code: u16, headers: Vec<Header>) {
    let _ = tx.reply_with(StatusCode::from(code), headers, None).await;
    while tx.receive().await.is_some() {}
}

/// The Contact the focus gives in its answers for `room`, as reached over `conn`.
fn local_contact(st: &State, conn: &SipConnection, room: &str) -> String {
    let transport = conn.transport();
    match conn.get_addr().get_socketaddr() {
        Ok(a) => {
            let wildcard = a.ip().is_unspecified()
                || (transport == Transport::Udp && st.udp_wildcards.contains(&(a.is_ipv4(), a.port())));
            focus_uri(st, room, transport, a, wildcard, "")
        }
        Err(_) => {
            let (scheme, param) = focus_uri_parts(transport, "");
            format!("{scheme}:{room}@{}{param}", conn.get_addr().addr)
        }
    }
}

/// `scheme:room@host:port;transport` of the focus at `addr` over `transport` (`udp_param` for
/// UDP, which needs none in an answer): the advertised host when `addr` is a wildcard.
fn focus_uri(
    st: &State,
    room: &str,
    transport: Transport,
    addr: SocketAddr,
    wildcard: bool,
    udp_param: &str,
) -> String {
    let host = match (&st.advertised_host, wildcard) {
        (Some(h), true) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{}", addr.port()),
        (Some(h), true) => format!("{h}:{}", addr.port()),
        _ => addr.to_string(),
    };
    let (scheme, param) = focus_uri_parts(transport, udp_param);
    format!("{scheme}:{room}@{host}{param}")
}

fn focus_uri_parts(transport: Transport, udp_param: &str) -> (&'static str, &str) {
    match transport {
        Transport::Tcp => ("sip", ";transport=tcp"),
        Transport::Tls => ("sips", ";transport=tls"),
        _ => ("sip", udp_param),
    }
}

async fn on_invite(st: Arc<State>, mut tx: Transaction) {
    // Joining may wait for the database (the room's history): a 100 stops the caller's
    // retransmissions meanwhile and lets it CANCEL (RFC 3261 §17.2.1).
    let _ = tx.send_trying().await;
    let Some(identity) = identify(&st, &mut tx).await else { return };
    let req = &tx.original;
    let source = tx.connection.as_ref().and_then(|c| c.get_remote_addr()).and_then(|a| a.get_socketaddr().ok());
    let Some(source) = source else { return };
    let room = req.uri.user().map(str::to_owned);
    let Some(room) = room else {
        return refuse(tx, 404, vec![]).await;
    };
    let sdp = req.header_value("Content-Type").is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
    if !sdp || req.body.is_empty() {
        info!(%source, "INVITE without an SDP offer: 488");
        return refuse(tx, 488, vec![Header::Accept(ACCEPT.into())]).await;
    }
    let Some(conn) = tx.connection.clone() else { return };
    let flow = door::flow_key(&conn);
    let contact = local_contact(&st, &conn, &room);
    let contact_uri: Option<rsipstack::sip::Uri> = contact.as_str().try_into().ok();
    let dialog = match st.dialogs.get_or_create_server_invite(&tx, st.state_tx.clone(), None, contact_uri) {
        Ok(d) => d,
        Err(e) => {
            info!(%source, error = %e, "INVITE cannot start a dialog: 400");
            return refuse(tx, 400, vec![]).await;
        }
    };
    let id = dialog.id();
    let device = req.contact_header().ok().map(|c| name_addr(c.value()).1).filter(|u| !u.is_empty());
    let join = JoinRequest {
        room: room.clone(),
        identity: identity.clone(),
        offer: Bytes::from(req.body.clone()),
        device: device.clone(),
        on_end: hangup_for(&st, &id),
    };
    match st.chat.join(join).await {
        Ok(joined) => {
            let headers = vec![
                Header::Contact(focus_contact_value(&contact, &joined.answer).into()),
                Header::ContentType("application/sdp".into()),
                Header::Allow(ALLOW.into()),
            ];
            st.calls.lock().unwrap_or_else(|e| e.into_inner()).insert(
                id.clone(),
                Call {
                    session_id: Some(joined.session_id),
                    answer: joined.answer.clone(),
                    contact,
                    flow,
                    room,
                    identity,
                    device,
                    files: Vec::new(),
                    renegotiating: false,
                },
            );
            let _ = dialog.accept(Some(headers), Some(joined.answer.into_bytes()));
        }
        Err(e) => {
            info!(%source, error = %e, "join refused");
            let _ = dialog.reject(Some(StatusCode::from(e.sip_status())), Some(e.to_string()));
        }
    }
    let mut d = Dialog::Invite(dialog);
    if let Err(e) = d.handle(&mut tx).await {
        debug!(error = %e, "INVITE transaction ended with an error");
    }
}

/// Follows every dialog: answers re-INVITEs and in-dialog requests, and ends the chat
/// session when the dialog ends.
async fn dialog_states(st: Arc<State>, mut rx: DialogStateReceiver) {
    while let Some(state) = rx.recv().await {
        match state {
            DialogState::Updated(id, req, handle) => {
                if req.method == Method::Subscribe
                    && let Some((code, headers)) = refer::on_refresh(&st, &id, &req)
                {
                    let _ = handle.respond(code, Some(headers), None).await;
                    continue;
                }
                if req.method == Method::Subscribe {
                    let (code, headers, then) = subscribe::on_refresh(&st, &id, &req);
                    // Run by the transaction's task once the answer is sent: the NOTIFY it
                    // sets off follows it.
                    if let Ok(key) = TransactionKey::from_request(&req, TransactionRole::Server) {
                        st.after_answer.lock().unwrap_or_else(|e| e.into_inner()).insert(key, then);
                    }
                    let _ = handle.respond(code, Some(headers), None).await;
                    continue;
                }
                let contact = st.calls.lock().unwrap_or_else(|e| e.into_inner()).get(&id).map(|c| c.contact.clone());
                match (req.method, contact) {
                    (Method::Invite, Some(contact)) => {
                        // A join may wait for the database: not in this loop, which every
                        // dialog's events go through.
                        let st = st.clone();
                        tokio::spawn(async move {
                            match reinvite::answer(&st, &id, &req.body).await {
                                Ok(answer) => {
                                    let headers = vec![
                                        Header::Contact(focus_contact_value(&contact, &answer).into()),
                                        Header::ContentType("application/sdp".into()),
                                    ];
                                    let body = Some(answer.into_bytes());
                                    let _ = handle.respond(StatusCode::OK, Some(headers), body).await;
                                }
                                Err(code) => {
                                    let _ = handle.reply(StatusCode::from(code)).await;
                                }
                            }
                        });
                    }
                    _ => {
                        let _ = handle.reply(StatusCode::MethodNotAllowed).await;
                    }
                }
            }
            DialogState::Options(_, _, handle) => {
                let headers = vec![Header::Allow(ALLOW.into()), Header::Accept(ACCEPT.into())];
                let _ = handle.respond(StatusCode::OK, Some(headers), None).await;
            }
            DialogState::Message(_, _, handle)
            | DialogState::Info(_, _, handle)
            | DialogState::Notify(_, _, handle) => {
                let _ =
                    handle.respond(StatusCode::MethodNotAllowed, Some(vec![Header::Allow(ALLOW.into())]), None).await;
            }
            DialogState::Refer(_, _, handle) => {
                // RFC-NOTES: a REFER inside a participant's dialog is refused.
                let _ = handle.reply(StatusCode::Forbidden).await;
            }
            DialogState::Confirmed(id, _) => {
                // The session may have ended before its 200 was even sent (e.g. the server
                // could not connect to the participant): hang up now that the dialog is up.
                let sid =
                    st.calls.lock().unwrap_or_else(|e| e.into_inner()).get(&id).and_then(|c| c.session_id.clone());
                if let Some(sid) = sid
                    && !st.chat.has_session(&sid)
                    && let Some(Dialog::Invite(d)) = st.dialogs.get_dialog(&id)
                {
                    tokio::spawn(async move {
                        let _ = d.bye().await;
                    });
                }
            }
            DialogState::Terminated(id, reason) => {
                if let Some(sub) = st.subs.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                    sub.end("noresource");
                    continue;
                }
                st.dialogs.remove_dialog(&id);
                let call = st.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(call) = call {
                    debug!(dialog = %id, ?reason, "call ended");
                    if let Some(sid) = &call.session_id {
                        st.chat.leave(sid);
                    }
                    for leg in &call.files {
                        st.chat.leave(&leg.sid);
                    }
                }
            }
            _ => {}
        }
    }
}
