//! Sending a subscription's NOTIFYs (RFC 6665 §4.2.2) on the focus's own client transactions
//! rather than through rsipstack's dialog, for one reason: the transport. A conference-info
//! document of a large room does not fit in a UDP datagram (500 users are ~150 KB), and
//! rsipstack sends every in-dialog request over the transport of the remote target. Here, as
//! RFC 3261 §18.1.1 asks, a NOTIFY larger than 1300 bytes to a subscriber that came over UDP
//! goes over TCP to the same address (where SIP UAs listen too); if that cannot be dialled it
//! falls back to UDP while it fits in a datagram. A subscriber that came over TCP or TLS gets
//! its NOTIFYs on that connection.
//!
//! The dialog (Call-ID, tags, remote target, route set) is still rsipstack's, which matches
//! the subscriber's refreshes; only the CSeq of the NOTIFYs is counted here.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Method, Request, SipMessage, Transport};
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{SipAddr, SipConnection};

/// Largest request sent over UDP when the path MTU is unknown (RFC 3261 §18.1.1).
const UDP_PREFERRED: usize = 1300;
/// Largest UDP datagram payload over IPv4 (65,535 minus the IP and UDP headers); beyond it
/// only a stream transport can carry the request.
const UDP_MAX: usize = 65_507;

/// Where a subscription's NOTIFYs go, and the dialog they belong to.
pub(crate) struct Target {
    call_id: String,
    /// The focus's side: `sip:room@domain` with its tag.
    from: rsipstack::sip::typed::From,
    /// The subscriber's side, with its tag.
    to: rsipstack::sip::typed::To,
    /// The remote target: the subscriber's Contact (a refresh may change it).
    pub contact: Mutex<rsipstack::sip::Uri>,
    /// Route headers from the SUBSCRIBE's Record-Route, in order (RFC 3261 §12.1.1).
    routes: Vec<Header>,
    /// The TCP/TLS connection the SUBSCRIBE came over, if it did not come over UDP.
    flow: Option<SipConnection>,
    /// The focus's address the SUBSCRIBE came to (the Via of NOTIFYs over UDP).
    origin: SipAddr,
    /// Our TCP listener, for the Via of a NOTIFY moved to TCP (none: no moving).
    tcp_local: Option<SocketAddr>,
    local_contact: String,
    cseq: AtomicU32,
    /// The TCP connection the focus dialled to move large NOTIFYs off UDP, and a second
    /// handle on its socket to close it with the subscription.
    tcp: tokio::sync::Mutex<Option<SipConnection>>,
    tcp_socket: Mutex<Option<std::net::TcpStream>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(s) = self.tcp_socket.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// How long dialling a subscriber over TCP may take before its NOTIFY goes over UDP.
const TCP_DIAL: Duration = Duration::from_secs(2);

impl Target {
    /// The target of the subscription the SUBSCRIBE `req` (arrived over `conn`) set up, with
    /// `local_tag` as the focus's tag.
    pub fn new(
        req: &Request,
        conn: &SipConnection,
        local_tag: &str,
        local_contact: &str,
        tcp_local: Option<SocketAddr>,
    ) -> Option<Target> {
        let subscriber = req.from_header().ok()?.typed().ok()?;
        let room = req.to_header().ok()?.typed().ok()?;
        let contact = req.contact_header().ok()?.typed().ok()?.uri;
        let routes = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::RecordRoute(rr) => Some(Header::Route(rr.value().to_owned().into())),
                _ => None,
            })
            .collect();
        Some(Target {
            call_id: req.call_id_header().ok()?.value().to_owned(),
            from: rsipstack::sip::typed::From { display_name: None, uri: room.uri, params: vec![] }
                .with_tag(local_tag.into()),
            to: rsipstack::sip::typed::To {
                display_name: subscriber.display_name,
                uri: subscriber.uri,
                params: subscriber.params,
            },
            contact: Mutex::new(contact),
            routes,
            flow: conn.is_reliable().then(|| conn.clone()),
            origin: conn.get_addr().clone(),
            tcp_local,
            local_contact: local_contact.to_owned(),
            cseq: AtomicU32::new(1),
            tcp: tokio::sync::Mutex::new(None),
            tcp_socket: Mutex::new(None),
        })
    }

    /// Sends one NOTIFY with `headers` and `body`; returns the subscriber's final status, or
    /// why there was none within `timeout`.
    pub async fn notify(
        &self,
        ep: &std::sync::Arc<EndpointInner>,
        headers: Vec<Header>,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<u16, String> {
        let uri = self.contact.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let seq = self.cseq.fetch_add(1, Ordering::Relaxed);
        let build = |via_addr: Option<SipAddr>| -> Result<Request, String> {
            let via = ep.get_via(via_addr, None).map_err(|e| e.to_string())?;
            let mut req =
                ep.make_request(Method::Notify, uri.clone(), via, self.from.clone(), self.to.clone(), seq, None);
            req.headers.unique_push(Header::CallId(self.call_id.clone().into()));
            req.headers.extend(self.routes.clone());
            req.headers.push(Header::Contact(format!("<{}>", self.local_contact).into()));
            req.headers.extend(headers.clone());
            if let Some(b) = &body {
                req.body = b.clone();
            }
            req.headers.push(Header::ContentLength((req.body.len() as u32).into()));
            Ok(req)
        };
        let exchange = async {
            if let Some(flow) = &self.flow {
                return send(ep, build(Some(flow.get_addr().clone()))?, Some(flow.clone()), None).await;
            }
            let udp = build(Some(self.origin.clone()))?;
            let size = udp.to_string().len();
            if size > UDP_PREFERRED
                && let Some(local) = self.tcp_local
                && let Some(dest) = self.next_hop(&uri)
            {
                let tcp = build(Some(SipAddr { r#type: Some(Transport::Tcp), addr: local.into() }))?;
                match self.tcp_to(ep, local, dest).await {
                    Ok(conn) => match send(ep, tcp, Some(conn), None).await {
                        // A local 503: the connection broke; the next NOTIFY dials again.
                        Ok(503) | Err(_) if size <= UDP_MAX => {
                            *self.tcp.lock().await = None;
                        }
                        done => return done,
                    },
                    Err(e) => tracing::debug!(%dest, error = %e, "subscriber not reachable over TCP: NOTIFY over UDP"),
                }
            }
            if size > UDP_MAX {
                return Err(format!("a NOTIFY of {size} bytes does not fit in UDP and TCP was not possible"));
            }
            send(ep, udp, None, None).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs())))
    }

    /// The TCP connection to `dest`, dialled now if there is none.
    async fn tcp_to(
        &self,
        ep: &std::sync::Arc<EndpointInner>,
        local: SocketAddr,
        dest: SocketAddr,
    ) -> Result<SipConnection, String> {
        let mut slot = self.tcp.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let stream = match tokio::time::timeout(TCP_DIAL, tokio::net::TcpStream::connect(dest)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timed out".into()),
        };
        let (stream, keep) = super::second_handle(stream).map_err(|e| e.to_string())?;
        let local = SipAddr { r#type: Some(Transport::Tcp), addr: local.into() };
        let conn = rsipstack::transport::tcp::TcpConnection::from_stream(stream, local, None)
            .map(SipConnection::Tcp)
            .map_err(|e| e.to_string())?;
        ep.transport_layer.add_connection(conn.clone());
        *self.tcp_socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(keep);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// The address the request goes to first: the first route, else the remote target.
    fn next_hop(&self, uri: &rsipstack::sip::Uri) -> Option<SocketAddr> {
        let hop = match self.routes.first() {
            Some(Header::Route(r)) => {
                let v = r.value();
                let inner = v.split('<').nth(1).and_then(|s| s.split('>').next()).unwrap_or(v);
                rsipstack::sip::Uri::try_from(inner).ok()?
            }
            _ => uri.clone(),
        };
        let addr = SipAddr::try_from(&hop).ok()?;
        addr.get_socketaddr().ok()
    }
}

/// Runs one client transaction to its final response.
async fn send(
    ep: &std::sync::Arc<EndpointInner>,
    req: Request,
    conn: Option<SipConnection>,
    dest: Option<SipAddr>,
) -> Result<u16, String> {
    let key = TransactionKey::from_request(&req, TransactionRole::Client).map_err(|e| e.to_string())?;
    let mut tx = Transaction::new_client(key, req, ep.clone(), conn);
    tx.destination = dest;
    tx.send().await.map_err(|e| e.to_string())?;
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(r) = msg
            && r.status_code.code() >= 200
        {
            return Ok(r.status_code.code());
        }
    }
    Err("the transaction ended without an answer".into())
}
