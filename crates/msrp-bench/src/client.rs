//! Connections to the relay (or, in `direct` mode, to the far endpoint): TCP or TLS, frame
//! reading with the project's codec, and the Digest AUTH handshake (RFC 4976 §5).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use msrp::header::{Header, Path};
use msrp::message::TransactionId;
use msrp::{Continuation, Decoder, Event, Message, Method, Request, Response, StatusCode, Uri};
use msrp_relay::digest::DigestResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where to connect and how.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub tls: Option<TlsConnector>,
}

impl Target {
    /// From `msrp://HOST:PORT` or `msrps://HOST:PORT` (optionally with `;tcp`).
    pub async fn parse(uri: &str) -> Result<(Target, Uri), Error> {
        let text = if uri.contains(";") { uri.to_owned() } else { format!("{uri};tcp") };
        let uri: Uri = text.parse()?;
        let port = uri.port().unwrap_or(2855);
        let addr = tokio::net::lookup_host((uri.host_unbracketed(), port)).await?.next().ok_or("host not found")?;
        let tls = uri.is_secure().then(insecure_tls);
        Ok((Target { addr, host: uri.host_unbracketed().to_owned(), tls }, uri))
    }
}

/// A TLS client that does not verify the server: the bench measures relays on loopback with
/// throw-away certificates (msrpd's own, Kamailio's openssl one).
fn insecure_tls() -> TlsConnector {
    #[derive(Debug)]
    struct NoVerify(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One MSRP connection with a URI of its own.
pub struct Conn {
    pub uri: Uri,
    pub rd: BoxRead,
    pub wr: BoxWrite,
    pub dec: Decoder,
    pub buf: BytesMut,
}

/// A received frame (its body is not needed by any workload and is skipped).
pub struct Frame {
    pub head: Message,
}

impl Conn {
    /// Connects, from `source` when given (many loopback sources lift the ephemeral-port
    /// limit for tens of thousands of sessions).
    pub async fn connect(target: &Target, name: &str, source: Option<IpAddr>) -> Result<Conn, Error> {
        let socket = if target.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp: TcpStream = socket.connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let secure = target.tls.is_some();
        let uri = Uri::new(secure, &format!("{name}.bench.invalid"), Some(9), Some(&msrp::id::random_session_id()))?;
        let (rd, wr): (BoxRead, BoxWrite) = match &target.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())?;
                let (r, w) = tokio::io::split(tls.connect(name, tcp).await?);
                (Box::new(r), Box::new(w))
            }
            None => {
                let (r, w) = tcp.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        Ok(Conn { uri, rd, wr, dec: Decoder::default(), buf: BytesMut::with_capacity(256 * 1024) })
    }

    pub fn path(&self) -> Path {
        Path::single(self.uri.clone())
    }

    pub async fn send_request(&mut self, req: &Request) -> Result<(), Error> {
        let mut out = BytesMut::new();
        msrp::encode::encode_request(req, None, Continuation::Complete, &mut out)?;
        self.wr.write_all(&out).await?;
        Ok(())
    }

    /// The next whole frame, None at end of stream.
    pub async fn frame(&mut self) -> Result<Option<Frame>, Error> {
        let mut head = None;
        loop {
            while let Some(ev) = self.dec.decode(&mut self.buf)? {
                match ev {
                    Event::Head(h) => head = Some(h),
                    Event::Body(_) => {}
                    Event::End(_) => {
                        let head = head.take().ok_or("end before head")?;
                        return Ok(Some(Frame { head }));
                    }
                }
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next response; an error after 10 s (a relay out of memory stops answering).
    async fn response(&mut self) -> Result<Response, Error> {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match self.frame().await?.ok_or("relay closed the connection during AUTH")?.head {
                    Message::Response(r) => return Ok(r),
                    Message::Request(_) => continue,
                }
            }
        })
        .await
        .map_err(|_| Error::from("no answer to AUTH within 10 s"))?
    }

    /// AUTH with Digest to `relay` (its URI without session-id); returns the Use-Path.
    pub async fn authenticate(&mut self, relay: &Uri, user: &str, password: &str) -> Result<Path, Error> {
        let req = Request::new(TransactionId::random(), Method::Auth)
            .with(Header::ToPath(Path::single(relay.clone())))
            .with(Header::FromPath(self.path()));
        self.send_request(&req).await?;
        let challenge = self.response().await?;
        if challenge.status != StatusCode::UNAUTHORIZED {
            return Err(format!("AUTH: expected 401, got {}", challenge.status.0).into());
        }
        // Prefer SHA-256 when offered; Kamailio offers MD5 only.
        let c = challenge
            .headers
            .challenges()
            .find(|c| c.algorithm().eq_ignore_ascii_case("SHA-256"))
            .or_else(|| challenge.headers.challenges().next())
            .ok_or("401 without WWW-Authenticate")?
            .clone();
        let cnonce = msrp::id::random_ident();
        let answer = DigestResponse::answer(&c, user, password, "AUTH", relay.as_str(), 1, &cnonce)
            .ok_or("challenge without realm or nonce, or with an unsupported algorithm")?;
        let creds = answer.header_value(true);
        let mut second = req.clone();
        second.tid = TransactionId::random();
        second.headers.set(Header::Authorization(Box::new(msrp::header::Credentials::parse(&creds)?)));
        self.send_request(&second).await?;
        let ok = self.response().await?;
        if ok.status != StatusCode::OK {
            return Err(format!("AUTH refused: {} {}", ok.status.0, ok.comment.as_deref().unwrap_or("")).into());
        }
        Ok(ok.headers.use_path().ok_or("200 without Use-Path")?.clone())
    }
}
