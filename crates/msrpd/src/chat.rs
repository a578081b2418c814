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
    warn_relay_keys_left_behind(config);
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
        outbound_auth: (!c.outbound_username.is_empty()).then(|| msrp_chat::OutboundAuth {
            username: c.outbound_username.clone(),
            password: c.outbound_password.0.clone(),
        }),
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

/// The chat once took its Digest nonce lifetime and MSRP decoder limits from `[relay]`; it has
/// keys of its own now. A deployment that tuned the relay's for the chat's sake is told once
/// at start rather than silently getting the chat's defaults.
fn warn_relay_keys_left_behind(config: &Config) {
    let (r, c) = (&config.relay, &config.chat);
    let (rd, cd) = (crate::config::RelayConfig::default(), crate::config::ChatConfig::default());
    let pairs = [
        ("nonce_lifetime", r.nonce_lifetime != rd.nonce_lifetime, c.nonce_lifetime == cd.nonce_lifetime),
        ("max_start_line", r.max_start_line != rd.max_start_line, c.max_start_line == cd.max_start_line),
        ("max_header_line", r.max_header_line != rd.max_header_line, c.max_header_line == cd.max_header_line),
        ("max_headers", r.max_headers != rd.max_headers, c.max_headers == cd.max_headers),
        ("max_head_bytes", r.max_head_bytes != rd.max_head_bytes, c.max_head_bytes == cd.max_head_bytes),
        ("max_non_send_body", r.max_non_send_body != rd.max_non_send_body, c.max_non_send_body == cd.max_non_send_body),
    ];
    for (key, relay_tuned, chat_default) in pairs {
        if relay_tuned && chat_default {
            warn!(key, "relay.{key} is set but the chat no longer follows it: set chat.{key} too if the chat needs it");
        }
    }
}
