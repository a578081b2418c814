//! A chat participant's MSRP side, the test kit's client run by itself (`msrp_testkit::Auto`):
//! connects to the server (or takes the server's connection), answers its SENDs and hands
//! complete messages to the test; and the chat service on 127.0.0.1 port 0.

#![allow(dead_code)]

pub mod callee;
pub mod sip;
pub mod subscriber;

/// The workspace's test kit: a relay on port 0, its accounts, Digest credentials.
pub use msrp_testkit as relay;
#[allow(unused_imports)]
pub use msrp_testkit::until;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msrp::header::{ByteRange, ContentType, MessageId, Path, UseNickname};
use msrp::message::TransactionId;
use msrp::{ByteString, Continuation, Header, Method, Request, StatusCode, Uri};
use msrp_chat::{Chat, ChatOptions, Identity, JoinRequest, MemoryHistory};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

pub const DOMAIN: &str = "chat.test";

/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(5);

/// What the participant got from the server (the test kit's events).
pub use msrp_testkit::Got;

/// Starts a chat service with a plain MSRP listener on 127.0.0.1 port 0.
pub async fn start_chat(opts: ChatOptions) -> Chat {
    start_chat_tls(opts, None).await
}

/// The same, plus an MSRP-over-TLS listener when `tls` is given.
pub async fn start_chat_tls(opts: ChatOptions, tls: Option<Arc<rustls::ServerConfig>>) -> Chat {
    start_chat_with(opts, tls, Arc::new(MemoryHistory::default())).await
}

/// The same, keeping history in `history`.
pub async fn start_chat_with(
    mut opts: ChatOptions,
    tls: Option<Arc<rustls::ServerConfig>>,
    history: Arc<dyn msrp_chat::History>,
) -> Chat {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    opts.msrp_port = Some(listener.local_addr().unwrap().port());
    let secure = match &tls {
        Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        None => None,
    };
    opts.msrps_port = secure.as_ref().map(|l| l.local_addr().unwrap().port());
    opts.domain = DOMAIN.into();
    let chat = Chat::new(opts, history);
    let server = chat.clone();
    tokio::spawn(async move { server.serve_msrp(listener, None).await });
    if let (Some(l), Some(config)) = (secure, tls) {
        let server = chat.clone();
        tokio::spawn(async move { server.serve_msrp(l, Some(tokio_rustls::TlsAcceptor::from(config))).await });
    }
    chat
}

/// A self-signed certificate for `name`: the server side, a client trusting it, its PEM and
/// DER forms.
#[allow(unused_imports)]
pub use msrp_testkit::tls_configs as tls_for;

/// A chat stream offer for `path` with `setup`.
pub fn offer(path: &str, setup: &str) -> String {
    format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message 9 TCP/MSRP *\r\na=accept-types:message/cpim\r\na=accept-wrapped-types:*\r\n\
         a=path:{path}\r\na=setup:{setup}\r\n"
    )
}

/// The `a=path` of an SDP answer.
pub fn answer_path(sdp: &str) -> Path {
    let line = sdp.lines().find_map(|l| l.strip_prefix("a=path:")).expect("answer has a=path");
    let uris = line.split_ascii_whitespace().map(|u| Uri::parse(ByteString::from(u.trim())).unwrap()).collect();
    Path::new(uris).unwrap()
}

/// A chat participant's MSRP side: the test kit's client, run by itself (it answers the
/// server's SENDs and gathers messages), with who it is and its paths.
pub struct Participant {
    pub identity: String,
    pub local: Uri,
    pub remote: Path,
    pub session_id: String,
    auto: msrp_testkit::Auto,
}

impl Participant {
    /// Joins `room` as `user` (an address like `sip:alice@example.com`) without SIP, through
    /// [`Chat::join`], and connects to the server (setup active).
    pub async fn join(chat: &Chat, room: &str, user: &str) -> Participant {
        let sid = msrp::id::random_session_id();
        let local = Uri::parse(ByteString::from(format!("msrp://127.0.0.1:9/{sid};tcp"))).unwrap();
        let joined = chat
            .join(JoinRequest {
                room: room.into(),
                identity: Identity::new(user, None).unwrap(),
                offer: Bytes::from(offer(local.as_str(), "active")),
                device: None,
                on_end: Box::new(|| {}),
            })
            .await
            .expect("join accepted");
        Participant::answered(user, local, &joined.answer, joined.session_id).await
    }

    /// A fresh local URI for an offer.
    pub fn local_uri() -> Uri {
        Uri::parse(ByteString::from(format!("msrp://127.0.0.1:9/{};tcp", msrp::id::random_session_id()))).unwrap()
    }

    /// Connects to the path of an SDP answer (setup active) and binds with an empty SEND, as
    /// clients do before their first message.
    pub async fn answered(user: &str, local: Uri, answer: &str, session_id: String) -> Participant {
        let remote = answer_path(answer);
        let p = Participant::connect(user, local, remote, session_id).await;
        p.bind().await;
        p
    }

    /// An empty SEND: binds the connection to the session (RFC 4975 §5.4).
    pub async fn bind(&self) {
        let req = Request::new(TransactionId::random(), Method::Send).with(Header::MessageId(MessageId::random()));
        self.send_raw(req, None).await;
    }

    /// The same participant, sending along another To-Path from now on.
    pub fn rerouted(mut self, remote: Path) -> Participant {
        self.remote = remote;
        self
    }

    pub async fn connect(user: &str, local: Uri, remote: Path, session_id: String) -> Participant {
        let first = remote.first();
        let tcp = TcpStream::connect((first.host_unbracketed(), first.port().unwrap())).await.unwrap();
        let (r, w) = tcp.into_split();
        Participant::over(user, local, remote, session_id, Box::new(r), Box::new(w))
    }

    pub fn over(
        user: &str,
        local: Uri,
        remote: Path,
        session_id: String,
        r: Box<dyn AsyncRead + Send + Unpin>,
        w: Box<dyn AsyncWrite + Send + Unpin>,
    ) -> Participant {
        let auto = msrp_testkit::Endpoint::over(local.clone(), r, w).into_auto();
        Participant { identity: user.to_owned(), local, remote, session_id, auto }
    }

    /// Stops reading from the socket (the server's writes back up in the kernel).
    pub fn stall(&self) {
        self.auto.stall();
    }

    /// Answers the server's SENDs with `status` from now on (200 when `None`).
    pub fn answer_with(&self, status: Option<StatusCode>) {
        self.auto.answer_with(status);
    }

    /// Sends one chunk of a message (`last`: `$`, else `+`).
    pub async fn send_chunk(&self, mut req: Request, ctype: &str, piece: &[u8], last: bool) {
        req.headers.set(Header::ToPath(self.remote.clone()));
        req.headers.set(Header::FromPath(Path::single(self.local.clone())));
        req.headers.set(Header::ContentType(ContentType::parse(&ByteString::from(ctype)).unwrap()));
        let flag = if last { Continuation::Complete } else { Continuation::More };
        let mut out = BytesMut::new();
        msrp::encode::encode_request(&req, Some(piece), flag, &mut out).unwrap();
        self.write(out.freeze()).await;
    }

    /// Reads again.
    pub fn resume(&self) {
        self.auto.resume();
    }

    /// True when the server closes the connection within `within` (what was sent before is
    /// read and dropped).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        self.auto.closed_within(within).await
    }

    pub async fn send_raw(&self, mut req: Request, body: Option<(&str, &[u8])>) {
        req.headers.set(Header::ToPath(self.remote.clone()));
        req.headers.set(Header::FromPath(Path::single(self.local.clone())));
        let mut out = BytesMut::new();
        match body {
            Some((ctype, b)) => {
                req.headers.set(Header::ContentType(ContentType::parse(&ByteString::from(ctype)).unwrap()));
                if req.headers.byte_range().is_none() {
                    req.headers.set(Header::ByteRange(ByteRange::whole(b.len() as u64)));
                }
                msrp::encode::encode_request(&req, Some(b), Continuation::Complete, &mut out).unwrap();
            }
            None => msrp::encode::encode_request(&req, None, Continuation::Complete, &mut out).unwrap(),
        }
        self.write(out.freeze()).await;
    }

    pub async fn write(&self, data: Bytes) {
        self.auto.write(data);
    }

    /// A CPIM message from this participant to `to` (the room when `None`).
    pub fn cpim(&self, to: Option<&str>, ctype: &str, text: &[u8]) -> Vec<u8> {
        let to = to.map_or_else(|| format!("sip:lobby@{DOMAIN}"), str::to_owned);
        let mut v =
            format!("From: <{}>\r\nTo: <{to}>\r\n\r\nContent-Type: {ctype}\r\n\r\n", self.identity).into_bytes();
        v.extend_from_slice(text);
        v
    }

    /// Sends a text message to the room; returns its transaction id.
    pub async fn say(&self, text: &str) -> TransactionId {
        let body = self.cpim(None, "text/plain", text.as_bytes());
        self.send_body("message/cpim", &body).await
    }

    pub async fn send_body(&self, ctype: &str, body: &[u8]) -> TransactionId {
        let req = Request::new(TransactionId::random(), Method::Send).with(Header::MessageId(MessageId::random()));
        let tid = req.tid;
        self.send_raw(req, Some((ctype, body))).await;
        tid
    }

    pub async fn nickname(&self, value: Option<&str>) -> TransactionId {
        let mut req = Request::new(TransactionId::random(), Method::Nickname);
        if let Some(v) = value {
            req.headers.set(Header::UseNickname(UseNickname(v.to_owned())));
        }
        let tid = req.tid;
        self.send_raw(req, None).await;
        tid
    }

    /// The next event, within 5 s.
    pub async fn next(&mut self) -> Got {
        self.auto.next().await
    }

    /// The status of the response to `tid`, skipping messages.
    pub async fn status_of(&mut self, tid: TransactionId) -> StatusCode {
        loop {
            if let Got::Response(r) = self.next().await
                && r.tid == tid
            {
                return r.status;
            }
        }
    }

    /// The next complete message whose CPIM body is not a join/leave notice from the room.
    pub async fn message(&mut self) -> (Request, Bytes) {
        loop {
            if let Got::Send { req, body, .. } = self.next().await
                && !is_notice(&body)
            {
                return (req, body);
            }
        }
    }

    /// The next complete message, notices included.
    pub async fn message_or_notice(&mut self) -> (Request, Bytes) {
        loop {
            if let Got::Send { req, body, .. } = self.next().await {
                return (req, body);
            }
        }
    }

    /// True when nothing but notices arrives within `ms`.
    pub async fn quiet_for(&mut self, ms: u64) -> bool {
        let end = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(end, self.auto.got.recv()).await {
                Err(_) => return true,
                Ok(None) => return true,
                Ok(Some(Got::Send { body, .. })) if !is_notice(&body) => return false,
                Ok(Some(_)) => {}
            }
        }
    }
}

/// A notice from the room itself (its CPIM From is the room).
pub fn is_notice(body: &[u8]) -> bool {
    body.starts_with(format!("From: <sip:lobby@{DOMAIN}>").as_bytes())
}
