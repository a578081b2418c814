//! A conference-info subscriber written from SIP's text (not rsipstack, which the server
//! uses): SUBSCRIBE (or REFER) over UDP, TCP or TLS, answering the focus's NOTIFYs, with
//! Digest.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use msrp::header::Challenge;
use msrp_auth::digest::DigestResponse;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

use super::WAIT;

/// A SIP message as read off the wire.
#[derive(Debug, Clone)]
pub struct Msg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Msg {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn status(&self) -> Option<u16> {
        self.start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    pub fn is_notify(&self) -> bool {
        self.start.starts_with("NOTIFY ")
    }

    pub fn parse(head: &str, body: String) -> Msg {
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or("").to_owned();
        let headers =
            lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
        Msg { start, headers, body }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Wire {
    Udp(UdpSocket, SocketAddr),
    Stream(BufReader<Box<dyn Stream>>, &'static str),
}

pub struct Subscriber {
    wire: Wire,
    local: SocketAddr,
    user: String,
    room_uri: String,
    request_uri: String,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    user_agent: String,
    password: Option<String>,
    stash: VecDeque<Msg>,
    /// Whether NOTIFYs get a 200 (false: the subscriber stops answering).
    pub answering: bool,
}

impl Subscriber {
    /// A subscriber `user` (`sip:carol@example.com`) of `room` (`sip:lobby@chat.test`) at
    /// the focus's `server` address, over UDP.
    pub async fn udp(server: SocketAddr, user: &str, room: &str) -> Subscriber {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        Subscriber::new(Wire::Udp(sock, server), local, server, user, room)
    }

    /// Over UDP, and listening on TCP at the same port (as SIP UAs do), where the focus sends
    /// the NOTIFYs too large for a datagram (RFC 3261 §18.1.1): those arrive on [`Self::tcp_notify`].
    pub async fn udp_and_tcp(server: SocketAddr, user: &str, room: &str) -> (Subscriber, tokio::net::TcpListener) {
        loop {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let local = sock.local_addr().unwrap();
            if let Ok(l) = tokio::net::TcpListener::bind(local).await {
                return (Subscriber::new(Wire::Udp(sock, server), local, server, user, room), l);
            }
        }
    }

    /// The next NOTIFY on a connection the focus opened to `listener` (answered 200 there).
    pub async fn tcp_notify(conn: &mut BufReader<TcpStream>) -> Msg {
        let m = read_stream(conn).await;
        assert!(m.is_notify(), "{}", m.start);
        let ok = ok_for(&m);
        conn.get_mut().write_all(ok.as_bytes()).await.unwrap();
        m
    }

    /// The same over TCP.
    pub async fn tcp(server: SocketAddr, user: &str, room: &str) -> Subscriber {
        let tcp = TcpStream::connect(server).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let wire = Wire::Stream(BufReader::new(Box::new(tcp)), "TCP");
        Subscriber::new(wire, local, server, user, room)
    }

    /// The same over TLS, trusting `client` for the name `localhost`.
    pub async fn tls(server: SocketAddr, client: Arc<rustls::ClientConfig>, user: &str, room: &str) -> Subscriber {
        let tcp = TcpStream::connect(server).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await.unwrap();
        let wire = Wire::Stream(BufReader::new(Box::new(tls)), "TLS");
        Subscriber::new(wire, local, server, user, room)
    }

    fn new(wire: Wire, local: SocketAddr, server: SocketAddr, user: &str, room: &str) -> Subscriber {
        let room_user = room.trim_start_matches("sip:").split('@').next().unwrap();
        let param = match &wire {
            Wire::Udp(..) => "",
            Wire::Stream(_, "TLS") => ";transport=tls",
            Wire::Stream(..) => ";transport=tcp",
        };
        Subscriber {
            wire,
            local,
            user: user.to_owned(),
            room_uri: room.to_owned(),
            request_uri: format!("sip:{room_user}@{server}{param}"),
            call_id: format!("{}@test", msrp::id::random_ident()),
            from_tag: msrp::id::random_ident(),
            to_tag: None,
            cseq: 0,
            user_agent: "conference-test/1".into(),
            password: None,
            stash: VecDeque::new(),
            answering: true,
        }
    }

    pub fn with_user_agent(mut self, ua: &str) -> Subscriber {
        self.user_agent = ua.to_owned();
        self
    }

    /// Answers a Digest challenge with this password.
    pub fn with_password(mut self, pw: &str) -> Subscriber {
        self.password = Some(pw.to_owned());
        self
    }

    fn transport(&self) -> &'static str {
        match &self.wire {
            Wire::Udp(..) => "UDP",
            Wire::Stream(_, t) => t,
        }
    }

    /// SUBSCRIBE (a new one, or a refresh once subscribed) with `expires` (none: no Expires
    /// header) and `event`; returns the final answer. NOTIFYs that come first are kept for
    /// [`Self::notify`].
    pub async fn subscribe_event(&mut self, expires: Option<u32>, event: &str) -> Msg {
        let mut extra = format!("Event: {event}\r\nAccept: application/conference-info+xml\r\n");
        if let Some(e) = expires {
            extra.push_str(&format!("Expires: {e}\r\n"));
        }
        self.request("SUBSCRIBE", &extra).await
    }

    /// REFER to the room (outside any dialog the first time) with `Refer-To: refer_to` and the
    /// header lines `extra`; returns the final answer (its 2xx starts the dialog).
    pub async fn refer(&mut self, refer_to: &str, extra: &str) -> Msg {
        self.request("REFER", &format!("Refer-To: {refer_to}\r\n{extra}")).await
    }

    /// Sends `method` with the header lines `extra`, answering a Digest challenge once.
    async fn request(&mut self, method: &str, extra: &str) -> Msg {
        let mut auth = None;
        loop {
            self.cseq += 1;
            let to_tag = self.to_tag.as_ref().map(|t| format!(";tag={t}")).unwrap_or_default();
            let user_part = self.user.trim_start_matches("sip:").split('@').next().unwrap().to_owned();
            let mut req = format!(
                "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{branch};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <{user}>;tag={ftag}\r\nTo: <{room}>{to_tag}\r\nCall-ID: {cid}\r\n\
                 CSeq: {cseq} {method}\r\nContact: <sip:{user_part}@{local}{param}>\r\n{extra}\
                 User-Agent: {ua}\r\n",
                ruri = self.request_uri,
                t = self.transport(),
                local = self.local,
                branch = msrp::id::random_ident(),
                user = self.user,
                ftag = self.from_tag,
                room = self.room_uri,
                cid = self.call_id,
                cseq = self.cseq,
                param = if self.transport() == "UDP" {
                    String::new()
                } else {
                    format!(";transport={}", self.transport().to_lowercase())
                },
                ua = self.user_agent,
            );
            if let Some(a) = &auth {
                req.push_str(&format!("Authorization: {a}\r\n"));
            }
            req.push_str("Content-Length: 0\r\n\r\n");
            self.send(&req).await;
            let resp = loop {
                let m = self.recv().await;
                if m.is_notify() {
                    self.answer_notify(&m).await;
                    self.stash.push_back(m);
                } else if m.status().is_some_and(|s| s >= 200) {
                    break m;
                }
            };
            if resp.status() == Some(401) && auth.is_none() && self.password.is_some() {
                let challenge = resp.header("WWW-Authenticate").unwrap().to_owned();
                auth = Some(self.digest(method, &challenge, &user_part));
                continue;
            }
            if resp.status().is_some_and(|s| (200..300).contains(&s)) && self.to_tag.is_none() {
                let to = resp.header("To").unwrap();
                self.to_tag = to.split(";tag=").nth(1).map(|t| t.split(';').next().unwrap().to_owned());
                if let Some(c) = resp.header("Contact") {
                    self.request_uri = c.trim_start_matches('<').split('>').next().unwrap().to_owned();
                }
            }
            return resp;
        }
    }

    pub async fn subscribe(&mut self, expires: Option<u32>) -> Msg {
        self.subscribe_event(expires, "conference").await
    }

    fn digest(&self, method: &str, challenge: &str, user: &str) -> String {
        let c = Challenge::parse(challenge).unwrap();
        let password = self.password.as_deref().unwrap();
        DigestResponse::answer(&c, user, password, method, &self.request_uri, 1, "0a4f113b").unwrap().header_value(true)
    }

    /// The next NOTIFY (answered 200 while `answering`).
    pub async fn notify(&mut self) -> Msg {
        if let Some(m) = self.stash.pop_front() {
            return m;
        }
        loop {
            let m = self.recv().await;
            if m.is_notify() {
                self.answer_notify(&m).await;
                return m;
            }
        }
    }

    /// Whether a NOTIFY arrives within `ms`.
    pub async fn notify_within(&mut self, ms: u64) -> Option<Msg> {
        tokio::time::timeout(std::time::Duration::from_millis(ms), self.notify()).await.ok()
    }

    async fn answer_notify(&mut self, m: &Msg) {
        if !self.answering {
            return;
        }
        self.send(&ok_for(m)).await;
    }

    async fn send(&mut self, text: &str) {
        match &mut self.wire {
            Wire::Udp(s, to) => {
                s.send_to(text.as_bytes(), *to).await.unwrap();
            }
            Wire::Stream(s, _) => {
                s.get_mut().write_all(text.as_bytes()).await.unwrap();
                s.get_mut().flush().await.unwrap();
            }
        }
    }

    async fn recv(&mut self) -> Msg {
        tokio::time::timeout(WAIT, self.recv_any()).await.expect("a SIP message in time")
    }

    async fn recv_any(&mut self) -> Msg {
        match &mut self.wire {
            Wire::Udp(s, to) => loop {
                let mut buf = vec![0u8; 65536];
                let (n, from) = s.recv_from(&mut buf).await.unwrap();
                // NOTIFYs come from the port the focus sends from; answers go back there.
                *to = from;
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                return Msg::parse(head, body.to_owned());
            },
            Wire::Stream(r, _) => read_stream(r).await,
        }
    }
}

/// The 200 to a request: its Via, From, To, Call-ID and CSeq echoed.
fn ok_for(m: &Msg) -> String {
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for (n, v) in &m.headers {
        if ["via", "from", "to", "call-id", "cseq"].contains(&n.to_ascii_lowercase().as_str()) {
            resp.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    resp
}

/// One SIP message off a stream (framed by Content-Length).
async fn read_stream<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Msg {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).await.unwrap() > 0, "the focus closed the connection");
        if line == "\r\n" {
            if head.is_empty() {
                continue; // keep-alive CRLF
            }
            break;
        }
        head.push_str(&line);
    }
    let head = head.trim_end().to_owned();
    let msg = Msg::parse(&head, String::new());
    let len: usize = msg.header("Content-Length").or(msg.header("l")).map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.unwrap();
    Msg { body: String::from_utf8(body).unwrap(), ..msg }
}
