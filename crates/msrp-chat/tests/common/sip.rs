//! A SIP user agent client for tests (rsipstack), and a chat service with its SIP front end
//! on 127.0.0.1 port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use msrp_chat::sip::auth::{Authenticator, TrustFn};
use msrp_chat::sip::{SipListeners, SipServer};
use msrp_chat::{Chat, ChatOptions};
use rsipstack::EndpointBuilder;
use rsipstack::dialog::DialogId;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, DialogStateSender};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Response, StatusCode, Transport};
use rsipstack::transaction::endpoint::{Endpoint, EndpointOption};
use rsipstack::transport::TransportLayer;
use rsipstack::transport::udp::UdpConnection;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

pub struct SipChat {
    pub chat: Chat,
    pub sip: SipServer,
    pub token: CancellationToken,
}

impl SipChat {
    pub fn addr(&self, t: Transport) -> SocketAddr {
        self.sip.addrs().iter().find(|(x, _)| *x == t).unwrap().1
    }

    /// The room's URI as reached over `t`.
    pub fn target(&self, room: &str, t: Transport) -> String {
        let a = self.addr(t);
        match t {
            Transport::Tcp => format!("sip:{room}@{a};transport=tcp"),
            Transport::Tls => format!("sip:{room}@{a};transport=tls"),
            _ => format!("sip:{room}@{a}"),
        }
    }
}

/// A chat service (plain MSRP on port 0) with SIP on UDP and TCP; loopback is trusted when
/// `trusted`, else everyone is challenged against [`users`].
pub async fn start_sip_chat(opts: ChatOptions, trusted: bool) -> SipChat {
    start_sip_chat_tls(opts, trusted, None).await
}

/// The same, plus SIP over TLS and MSRP over TLS with `tls`.
pub async fn start_sip_chat_tls(opts: ChatOptions, trusted: bool, tls: Option<Arc<rustls::ServerConfig>>) -> SipChat {
    let listeners = SipListeners {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        tcp: vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
        ..SipListeners::default()
    };
    start_sip_chat_on(opts, trusted, tls, listeners).await
}

/// The same on the given SIP listeners (TLS added when `tls` is given).
pub async fn start_sip_chat_on(
    opts: ChatOptions,
    trusted: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    listeners: SipListeners,
) -> SipChat {
    let chat = super::start_chat_tls(opts, tls.clone()).await;
    with_sip(chat, trusted, tls, listeners).await
}

/// A chat service keeping its history in `history`, with SIP on UDP and TCP (loopback
/// trusted).
pub async fn start_sip_chat_history(opts: ChatOptions, history: Arc<dyn msrp_chat::History>) -> SipChat {
    let chat = super::start_chat_with(opts, None, history).await;
    let listeners = SipListeners {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        tcp: vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
        ..SipListeners::default()
    };
    with_sip(chat, true, None, listeners).await
}

async fn with_sip(
    chat: Chat,
    trusted: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut listeners: SipListeners,
) -> SipChat {
    let token = CancellationToken::new();
    let trust: TrustFn = Arc::new(move |ip: std::net::IpAddr| trusted && ip.is_loopback());
    // Over UDP too: the tests call from 127.0.0.1 over both transports.
    let auth = Authenticator::new(trust, true, Some(super::relay::users("example.com")), Duration::from_secs(60));
    if tls.is_some() {
        listeners.tls.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        listeners.tls_config = tls;
    }
    let sip = SipServer::start(chat.clone(), auth, listeners, token.clone()).await.unwrap();
    SipChat { chat, sip, token }
}

pub struct Uac {
    pub endpoint: Endpoint,
    pub dialogs: Arc<DialogLayer>,
    pub udp: SocketAddr,
    state_tx: DialogStateSender,
    terminated: Mutex<mpsc::UnboundedReceiver<(DialogId, String)>>,
}

const T: Duration = Duration::from_secs(10);

/// A UAC on UDP (TCP connections are dialled on demand) that answers the server's BYE.
pub async fn start_uac(token: &CancellationToken) -> Uac {
    start_uac_tls(token, None).await
}

/// The same, dialling TLS to a server whose certificate is `ca_pem` (for `localhost`).
pub async fn start_uac_tls(token: &CancellationToken, ca_pem: Option<String>) -> Uac {
    let tl = TransportLayer::new(token.child_token());
    if let Some(pem) = ca_pem {
        tl.set_tls_config(rsipstack::transport::TlsConfig {
            ca_certs: Some(pem.into_bytes()),
            sni_hostname: Some("localhost".into()),
            ..Default::default()
        });
    }
    let udp = UdpConnection::create_connection("127.0.0.1:0".parse().unwrap(), None, Some(token.child_token()))
        .await
        .unwrap();
    let udp_addr = udp.get_addr().get_socketaddr().unwrap();
    tl.add_transport(udp.into());
    let option = EndpointOption { t1: Duration::from_millis(100), t1x64: Duration::from_secs(6), ..Default::default() };
    let endpoint = EndpointBuilder::new()
        .with_user_agent("test-uac")
        .with_transport_layer(tl)
        .with_cancel_token(token.child_token())
        .with_option(option)
        .build();
    let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let mut incoming = endpoint.incoming_transactions().unwrap();
    let inner = endpoint.inner.clone();
    tokio::spawn(async move { inner.serve().await });
    let (d, stop) = (dialogs.clone(), token.clone());
    tokio::spawn(async move {
        loop {
            let mut tx = tokio::select! {
                _ = stop.cancelled() => break,
                t = incoming.recv() => match t { Some(t) => t, None => break },
            };
            match d.match_dialog(&tx) {
                Some(mut dlg) => {
                    tokio::spawn(async move { dlg.handle(&mut tx).await.ok() });
                }
                None => {
                    let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                }
            }
        }
    });
    let (state_tx, mut state_rx) = mpsc::unbounded_channel::<DialogState>();
    let (term_tx, term_rx) = mpsc::unbounded_channel();
    let d = dialogs.clone();
    tokio::spawn(async move {
        while let Some(st) = state_rx.recv().await {
            match st {
                DialogState::Terminated(id, reason) => {
                    d.remove_dialog(&id);
                    let _ = term_tx.send((id, format!("{reason:?}")));
                }
                DialogState::Options(_, _, h) | DialogState::Updated(_, _, h) | DialogState::Message(_, _, h) => {
                    let _ = h.reply(StatusCode::OK).await;
                }
                _ => {}
            }
        }
    });
    Uac { endpoint, dialogs, udp: udp_addr, state_tx, terminated: Mutex::new(term_rx) }
}

impl Uac {
    /// INVITE `target` as `from` (`sip:user@domain`) with `sdp`; returns the dialog (when
    /// answered 200) and the final response.
    pub async fn invite(
        &self,
        target: &str,
        from: &str,
        sdp: Option<String>,
        credential: Option<(&str, &str)>,
    ) -> (InviteDialog, Response) {
        let contact = format!("sip:{}@{}", from.trim_start_matches("sip:").split('@').next().unwrap(), self.udp);
        let opt = InviteOption {
            caller: from.try_into().unwrap(),
            callee: target.try_into().unwrap(),
            contact: contact.as_str().try_into().unwrap(),
            content_type: sdp.as_ref().map(|_| "application/sdp".into()),
            offer: sdp.map(String::into_bytes),
            credential: credential.map(|(u, p)| Credential {
                username: u.into(),
                password: p.into(),
                realm: None,
                auth_username: None,
            }),
            ..Default::default()
        };
        let (dlg, resp) = tokio::time::timeout(T, self.dialogs.do_invite(opt, self.state_tx.clone()))
            .await
            .expect("INVITE answered in time")
            .expect("INVITE sent");
        (dlg, resp.expect("a final response"))
    }

    /// The next dialog that ended, and why (`UasBye` when the server hung up).
    pub async fn terminated(&self) -> (DialogId, String) {
        tokio::time::timeout(T, self.terminated.lock().await.recv()).await.expect("a dialog ended in time").unwrap()
    }

    /// Sends `method` outside any dialog; returns the final status.
    pub async fn request(&self, method: rsipstack::sip::Method, target: &str, body: Option<(&str, &[u8])>) -> u16 {
        use rsipstack::transaction::key::{TransactionKey, TransactionRole};
        use rsipstack::transaction::transaction::Transaction;
        let ep = &self.endpoint.inner;
        let via = ep.get_via(None, None).unwrap();
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: format!("sip:alice@{}", self.udp).as_str().try_into().unwrap(),
            params: vec![],
        }
        .with_tag(rsipstack::transaction::make_tag());
        let to = rsipstack::sip::typed::To { display_name: None, uri: target.try_into().unwrap(), params: vec![] };
        let mut req = ep.make_request(method, target.try_into().unwrap(), via, from, to, 1, None);
        if let Some((ctype, b)) = body {
            req.headers.push(Header::ContentType(ctype.into()));
            req.body = b.to_vec();
        }
        let key = TransactionKey::from_request(&req, TransactionRole::Client).unwrap();
        let mut tx = Transaction::new_client(key, req, ep.clone(), None);
        tx.send().await.unwrap();
        tokio::time::timeout(T, async {
            while let Some(msg) = tx.receive().await {
                if let rsipstack::sip::SipMessage::Response(r) = msg
                    && r.status_code.code() >= 200
                {
                    return r.status_code.code();
                }
            }
            0
        })
        .await
        .expect("answered in time")
    }
}
