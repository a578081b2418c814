//! Starts the chat service from `[chat]`: MSRP listeners for participants, the SIP front end,
//! history in the user database, Digest against the same accounts as the relay.

use std::sync::Arc;
use std::time::Duration;

use msrp_chat::sip::auth::{Authenticator, TrustFn};
use msrp_chat::sip::{SipListeners, SipServer};
use msrp_chat::{Chat, ChatOptions};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::AnyError;
use crate::config::{Config, SipTransport};
use crate::store::{CachedCredentials, Store};

/// The running chat service.
pub struct ChatService {
    pub chat: Chat,
    pub sip: Arc<SipServer>,
    token: CancellationToken,
}

impl ChatService {
    /// Hangs up every participant (BYE), then stops listening.
    pub async fn shutdown(&self) {
        self.sip.shutdown().await;
        self.token.cancel();
    }
}

pub async fn start(
    config: &Config,
    store: &Store,
    credentials: Arc<CachedCredentials>,
    server_tls: Arc<rustls::ServerConfig>,
    client_tls: Arc<rustls::ClientConfig>,
    guard: Arc<msrp_relay::guard::AuthGuard>,
) -> Result<ChatService, AnyError> {
    let c = &config.chat;
    let token = CancellationToken::new();
    let mut msrp = Vec::new();
    let (mut plain, mut secure) = (None, None);
    for l in &c.msrp_listen {
        let listener = crate::listen::bind(l.addr).map_err(|e| format!("cannot listen on {l}: {e}"))?;
        let port = listener.local_addr()?.port();
        *(if l.tls { &mut secure } else { &mut plain }) = Some(port);
        msrp.push((listener, l.tls));
        info!(listen = %l, "chat MSRP listening");
    }
    let host = if c.msrp_host.is_empty() { c.msrp_listen[0].addr.ip().to_string() } else { c.msrp_host.clone() };
    let defaults = ChatOptions::default();
    let opts = ChatOptions {
        domain: c.domain.clone(),
        rooms: c.room_policy(),
        history_size: c.history_size,
        private_messages: c.private_messages,
        welcome: c.welcome,
        room_settings: c.room_settings(),
        conference: c.conference.options(),
        refer: c.refer.options(),
        files: c.file_options(config.data_dir.join("chat-files")),
        outbound_proxy: (!c.outbound_proxy.is_empty()).then(|| c.outbound_proxy.clone()),
        max_message_size: c.max_message_size,
        chunk_size: c.chunk_size,
        queue_messages: c.queue_messages,
        queue_bytes: c.queue_bytes,
        connect_timeout: Duration::from_secs(c.connect_timeout),
        write_timeout: Duration::from_secs(c.write_timeout),
        max_sessions: c.max_sessions,
        max_connections: c.max_connections,
        msrp_host: host,
        msrp_port: plain,
        msrps_port: secure,
        limits: c.limits(),
        client_tls: Some(client_tls),
        message_rate: config.relay.limits.global.message_rate,
        message_rate_domains: config.relay.limits.message_rate_domains(),
        ..defaults
    };
    let chat = Chat::new(opts, Arc::new(store.clone()));
    for (listener, tls) in msrp {
        let chat = chat.clone();
        let acceptor = tls.then(|| tokio_rustls::TlsAcceptor::from(server_tls.clone()));
        tokio::spawn(async move { chat.serve_msrp(listener, acceptor).await });
    }
    let mut listeners = SipListeners {
        limits: c.sip_limits(),
        tls_config: Some(server_tls.clone()),
        advertised_host: (!c.msrp_host.is_empty()).then(|| c.msrp_host.clone()),
        ..SipListeners::default()
    };
    for l in &c.sip_listen {
        let bind = || async { crate::listen::bind(l.addr).map_err(|e| format!("cannot listen on {l}: {e}")) };
        match l.transport {
            SipTransport::Udp => listeners.udp.push(l.addr),
            SipTransport::Tcp => listeners.tcp.push(bind().await?),
            SipTransport::Tls => listeners.tls.push(bind().await?),
        }
    }
    let networks = c.trusted_networks.clone();
    let trust: TrustFn = Arc::new(move |ip| networks.iter().any(|n| n.contains(ip)));
    if c.trusted_networks.is_empty() {
        info!("chat: every caller is challenged (no trusted_networks)");
    } else {
        warn!(networks = ?c.trusted_networks, "chat: callers from these networks are admitted without a challenge");
    }
    let lifetime = Duration::from_secs(c.nonce_lifetime);
    let auth = Authenticator::new(trust, c.trusted_over_udp, Some(credentials), lifetime).with_guard(guard);
    let sip = SipServer::start(chat.clone(), auth, listeners, token.clone())
        .await
        .map_err(|e| format!("cannot start SIP: {e}"))?;
    info!(domain = %c.domain, "chat rooms are sip:ROOM@{}", c.domain);
    Ok(ChatService { chat, sip: Arc::new(sip), token })
}
