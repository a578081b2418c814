//! A small MSRP endpoint for tests, built from the project's own codec.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use msrp::encode::{encode_request, encode_response};
use msrp::header::{ByteRange, Header, MessageId, Path};
use msrp::message::TransactionId;
use msrp::{Continuation, Decoder, Event, Message, Method, Request, Response, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{TestRelay, credentials};

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub head: Message,
    pub body: Vec<u8>,
    pub flag: Continuation,
}

impl Frame {
    pub fn request(&self) -> &Request {
        match &self.head {
            Message::Request(r) => r,
            Message::Response(r) => panic!("expected a request, got response {} {:?}", r.status.0, r.comment),
        }
    }

    pub fn response(&self) -> &Response {
        match &self.head {
            Message::Response(r) => r,
            Message::Request(r) => panic!("expected a response, got {} request", r.method),
        }
    }
}

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// An MSRP endpoint with a URI of its own: the project's one test client. Read frame by frame
/// (the relay's tests, which answer as they please), or handed to [`Endpoint::into_auto`]
/// (the chat's tests: SENDs answered, chunks gathered, events on a channel).
pub struct Endpoint {
    pub uri: Uri,
    rx: ReadSide,
    wr: BoxWrite,
}

/// The reading half: the socket, the decoder and what was read but not decoded yet.
pub(crate) struct ReadSide {
    rd: BoxRead,
    dec: Decoder,
    buf: BytesMut,
}

impl ReadSide {
    /// The next complete frame; `None` when the connection ends.
    pub(crate) async fn frame(&mut self) -> Option<Frame> {
        let mut head = None;
        let mut body = Vec::new();
        loop {
            while let Some(ev) = self.dec.decode(&mut self.buf).expect("the peer sends valid frames") {
                match ev {
                    Event::Head(h) => head = Some(h),
                    Event::Body(b) => body.extend_from_slice(&b),
                    Event::End(flag) => {
                        return Some(Frame { head: head.take().unwrap(), body: std::mem::take(&mut body), flag });
                    }
                }
            }
            if self.rd.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }
}

/// How long a frame read waits, as the relay's tests always had (the automatic mode's events
/// wait [`crate::WAIT`], as the chat's tests had).
const FRAME_WAIT: Duration = Duration::from_secs(10);

impl Endpoint {
    pub async fn connect(relay: &TestRelay, name: &str, tls: Option<&TlsConnector>) -> Endpoint {
        Endpoint::connect_to(relay.addr, &relay.hostname, name, tls).await
    }

    /// Connects to a relay at `addr` (TLS when `tls` is given, verifying `hostname`).
    pub async fn connect_to(addr: SocketAddr, hostname: &str, name: &str, tls: Option<&TlsConnector>) -> Endpoint {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let secure = tls.is_some();
        let uri =
            Uri::new(secure, &format!("{name}.example.com"), Some(7000), Some(&msrp::id::random_session_id())).unwrap();
        match tls {
            Some(t) => {
                let sn = rustls::pki_types::ServerName::try_from(hostname.to_owned()).unwrap();
                let s = t.connect(sn, tcp).await.unwrap();
                let (rd, wr) = tokio::io::split(s);
                Endpoint::from_halves(uri, Box::new(rd), Box::new(wr))
            }
            None => {
                let (rd, wr) = tokio::io::split(tcp);
                Endpoint::from_halves(uri, Box::new(rd), Box::new(wr))
            }
        }
    }

    fn from_halves<R, W>(uri: Uri, rd: Box<ReadHalf<R>>, wr: Box<WriteHalf<W>>) -> Endpoint
    where
        R: AsyncRead + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        Endpoint::over(uri, rd, wr)
    }

    /// An endpoint on a connection made elsewhere (TLS, a listener's accept).
    pub fn over(uri: Uri, rd: BoxRead, wr: BoxWrite) -> Endpoint {
        let rx = ReadSide { rd, dec: Decoder::default(), buf: BytesMut::with_capacity(65536) };
        Endpoint { uri, rx, wr }
    }

    /// Its halves, for [`crate::auto`].
    pub(crate) fn into_parts(self) -> (Uri, ReadSide, BoxWrite) {
        (self.uri, self.rx, self.wr)
    }

    pub fn path(&self) -> Path {
        Path::single(self.uri.clone())
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    pub async fn send_request(&mut self, req: &Request, body: Option<&[u8]>) {
        let mut out = BytesMut::new();
        encode_request(req, body, Continuation::Complete, &mut out).unwrap();
        self.write(&out).await;
    }

    pub async fn send_response(&mut self, resp: &Response) {
        let mut out = BytesMut::new();
        encode_response(resp, &mut out);
        self.write(&out).await;
    }

    /// The next complete frame; panics after [`FRAME_WAIT`].
    pub async fn frame(&mut self) -> Frame {
        tokio::time::timeout(FRAME_WAIT, self.frame_inner())
            .await
            .expect("no frame within the wait")
            .expect("connection closed")
    }

    /// The next frame, or None if the connection closes or nothing comes within `wait`.
    pub async fn try_frame(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, self.frame_inner()).await.ok().flatten()
    }

    async fn frame_inner(&mut self) -> Option<Frame> {
        self.rx.frame().await
    }

    /// The next frame's bytes exactly as received, start line to end-line (for comparing
    /// what the relay wrote byte for byte). Do not mix with a half-read decoded frame.
    pub async fn raw_frame(&mut self) -> Vec<u8> {
        let read = async {
            loop {
                if let Some(n) = raw_frame_len(&self.rx.buf) {
                    return self.rx.buf.split_to(n).to_vec();
                }
                assert!(self.rx.rd.read_buf(&mut self.rx.buf).await.unwrap() > 0, "connection closed");
            }
        };
        tokio::time::timeout(FRAME_WAIT, read).await.expect("no frame within the wait")
    }

    /// Reads until the received bytes hold `needle` and returns a copy of them, leaving them
    /// to be decoded by the next [`Endpoint::frame`] (to see a frame's head before its end).
    pub async fn peek_until(&mut self, needle: &[u8]) -> Vec<u8> {
        let read = async {
            while !self.rx.buf.windows(needle.len()).any(|w| w == needle) {
                assert!(self.rx.rd.read_buf(&mut self.rx.buf).await.unwrap() > 0, "connection closed");
            }
            self.rx.buf.to_vec()
        };
        tokio::time::timeout(FRAME_WAIT, read).await.expect("not seen within the wait")
    }

    /// True when the peer closed the connection (EOF) within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut scratch = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.rd.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    /// How the peer ended the connection within `wait`: `Some(true)` for a clean end (over
    /// TLS: close_notify), `Some(false)` for a truncation or error, `None` when still open.
    pub async fn closed_cleanly_within(&mut self, wait: Duration) -> Option<bool> {
        let mut scratch = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.rd.read(&mut scratch)).await {
                Ok(Ok(0)) => return Some(true),
                Ok(Err(_)) => return Some(false),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    /// AUTH request to `relay_uri`.
    pub fn auth_request(&self, relay_uri: &Uri) -> Request {
        Request::new(TransactionId::random(), Method::Auth)
            .with(Header::ToPath(Path::single(relay_uri.clone())))
            .with(Header::FromPath(self.path()))
    }

    /// Full Digest handshake; returns the 200 response (or panics with what came instead).
    pub async fn authenticate(&mut self, relay_uri: &Uri, user: &str, password: &str) -> Response {
        let resp = self.try_authenticate(relay_uri, user, password, None, true).await;
        assert_eq!(resp.status, StatusCode::OK, "AUTH failed: {:?}", resp);
        resp
    }

    /// AUTH, 401, AUTH with credentials; returns the final response.
    pub async fn try_authenticate(
        &mut self,
        relay_uri: &Uri,
        user: &str,
        password: &str,
        expires: Option<u32>,
        with_uri: bool,
    ) -> Response {
        let mut req = self.auth_request(relay_uri);
        if let Some(e) = expires {
            req.headers.set(Header::Expires(e));
        }
        self.send_request(&req, None).await;
        let challenge = self.frame().await.response().clone();
        assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
        let c = challenge.headers.challenges().next().unwrap().clone();
        let mut second = req.clone();
        second.tid = TransactionId::random();
        second.headers.set(Header::Authorization(Box::new(credentials(&c, user, password, relay_uri, 1, with_uri))));
        self.send_request(&second, None).await;
        self.frame().await.response().clone()
    }

    /// A SEND to `to` carrying `body`, with a fresh Message-ID.
    pub fn send(&self, to: Path, body: &[u8]) -> Request {
        Request::new(TransactionId::random(), Method::Send)
            .with(Header::ToPath(to))
            .with(Header::FromPath(self.path()))
            .with(Header::MessageId(MessageId::random()))
            .with(Header::ByteRange(ByteRange::whole(body.len() as u64)))
            .with(Header::ContentType("text/plain".parse().unwrap()))
    }

    /// Answers a received request with 200 (as an endpoint must, hop by hop).
    pub async fn ok(&mut self, req: &Request) {
        let resp = Response::new(req.tid, StatusCode::OK)
            .with(Header::ToPath(Path::single(req.headers.from_path().unwrap().first().clone())))
            .with(Header::FromPath(self.path()));
        self.send_response(&resp).await;
    }
}

/// Length of the complete frame at the front of `buf`: up to `\n-------<tid><flag>\r\n`.
fn raw_frame_len(buf: &[u8]) -> Option<usize> {
    let line = &buf[..buf.iter().position(|&b| b == b'\n')?];
    let tid = line.split(|&b| b == b' ').nth(1)?;
    let needle = [&b"\n-------"[..], tid].concat();
    let at = buf.windows(needle.len()).position(|w| w == needle)?;
    let end = at + needle.len() + 3;
    (buf.len() >= end && &buf[end - 2..end] == b"\r\n").then_some(end)
}
