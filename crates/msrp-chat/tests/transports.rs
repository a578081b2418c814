//! Who connects to whom, and over what (RFC 4975 §5.4, RFC 6135, RFC 6714, RFC 4976):
//! SIP and MSRP over TLS, a participant that waits to be called, one behind the project's own
//! relay, session matching by session-id, success REPORTs.

mod common;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::sip::{start_sip_chat_tls, start_uac_tls};
use common::{Got, Participant, answer_path, offer, start_chat, tls_for};
use msrp::header::{Header, Path};
use msrp::message::TransactionId;
use msrp::{ByteString, Method, Request, StatusCode, Uri};
use msrp_chat::cpim::Cpim;
use msrp_chat::{ChatOptions, Identity, JoinRequest};
use rsipstack::sip::{StatusCode as Sip, Transport};
use tokio::net::TcpListener;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";

#[tokio::test]
async fn sip_over_tls_and_msrp_over_tls() {
    let (server_tls, client_tls, pem, _) = tls_for("localhost");
    let server = start_sip_chat_tls(ChatOptions::default(), true, Some(server_tls)).await;
    let uac = start_uac_tls(&server.token, Some(pem)).await;
    let target = server.target("lobby", Transport::Tls);
    let mut joined = Vec::new();
    for user in [ALICE, BOB] {
        let sid = msrp::id::random_session_id();
        let local = Uri::parse(ByteString::from(format!("msrps://127.0.0.1:9/{sid};tcp"))).unwrap();
        let sdp = offer(local.as_str(), "active").replace("TCP/MSRP", "TCP/TLS/MSRP");
        let (dlg, resp) = uac.invite(&target, user, Some(sdp), None).await;
        assert_eq!(resp.status_code, Sip::OK);
        let answer = String::from_utf8(resp.body.clone()).unwrap();
        assert!(answer.contains("TCP/TLS/MSRP") && answer.contains("a=path:msrps://"), "{answer}");
        let remote = answer_path(&answer);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", remote.first().port().unwrap())).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client_tls.clone()).connect(name, tcp).await.unwrap();
        let (r, w) = tokio::io::split(tls);
        let p = Participant::over(user, local, remote, String::new(), Box::new(r), Box::new(w));
        p.bind().await;
        joined.push((dlg, p));
    }
    let (_, mut b) = joined.pop().unwrap();
    let (_, mut a) = joined.pop().unwrap();
    let tid = a.say("over TLS").await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    assert!(b.message().await.1.ends_with(b"over TLS"));
}

#[tokio::test]
async fn a_tls_connection_ends_with_close_notify() {
    // Without close_notify, clients see a truncation (msrplib logs "non-properly terminated").
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server_tls, client_tls, _, _) = tls_for("localhost");
    let chat = common::start_chat_tls(ChatOptions::default(), Some(server_tls)).await;
    let sid = msrp::id::random_session_id();
    let local = Uri::parse(ByteString::from(format!("msrps://127.0.0.1:9/{sid};tcp"))).unwrap();
    let sdp = offer(local.as_str(), "active").replace("TCP/MSRP", "TCP/TLS/MSRP");
    let joined = chat
        .join(JoinRequest {
            room: "lobby".into(),
            identity: Identity::new(ALICE, None).unwrap(),
            offer: Bytes::from(sdp),
            device: None,
            on_end: Box::new(|| {}),
        })
        .await
        .unwrap();
    let remote = answer_path(&joined.answer);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", remote.first().port().unwrap())).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_tls).connect(name, tcp).await.unwrap();
    let bind = Request::new(TransactionId::random(), Method::Send)
        .with(Header::ToPath(remote))
        .with(Header::FromPath(Path::single(local)))
        .with(Header::MessageId(msrp::header::MessageId::random()));
    let mut out = BytesMut::new();
    msrp::encode::encode_request(&bind, None, msrp::Continuation::Complete, &mut out).unwrap();
    tls.write_all(&out).await.unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(tls.read(&mut buf).await.unwrap() > 0, "the binding 200");
    chat.leave(&joined.session_id);
    let end = tokio::time::timeout(common::WAIT, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("closed in time");
    end.expect("a clean TLS close (close_notify), not a truncation");
}

#[tokio::test]
async fn a_participant_that_waits_is_called_by_the_server() {
    let chat = start_chat(ChatOptions::default()).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let local = Uri::parse(ByteString::from(format!("msrp://127.0.0.1:{port}/waiting1;tcp"))).unwrap();
    let joined = chat
        .join(JoinRequest {
            room: "lobby".into(),
            identity: Identity::new(BOB, None).unwrap(),
            offer: Bytes::from(offer(local.as_str(), "actpass")),
            device: None,
            on_end: Box::new(|| {}),
        })
        .await
        .unwrap();
    assert!(joined.answer.contains("a=setup:active"), "{}", joined.answer);
    let (tcp, _) = tokio::time::timeout(common::WAIT, listener.accept()).await.unwrap().unwrap();
    let (r, w) = tcp.into_split();
    let mut b = Participant::over(BOB, local, answer_path(&joined.answer), joined.session_id, Box::new(r), Box::new(w));
    // The server speaks first, with an empty SEND that binds the connection.
    let Got::Send { req, body, .. } = b.next().await else { panic!("expected the binding SEND") };
    assert!(body.is_empty() && req.headers.content_type().is_none());
    a.say("to the one who waited").await;
    assert!(b.message().await.1.ends_with(b"to the one who waited"));
    let tid = b.say("and back").await;
    assert_eq!(b.status_of(tid).await, StatusCode::OK);
}

#[tokio::test]
async fn session_id_matching_survives_a_rewritten_address() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let offered = Participant::local_uri();
    let joined = chat
        .join(JoinRequest {
            room: "lobby".into(),
            identity: Identity::new(BOB, None).unwrap(),
            offer: Bytes::from(offer(offered.as_str(), "active")),
            device: None,
            on_end: Box::new(|| {}),
        })
        .await
        .unwrap();
    // A NAT or proxy changed host and port; the session-id is what matches (RFC 6714).
    let seen = offered.with_session_id(offered.session_id()).unwrap();
    let seen = Uri::parse(ByteString::from(seen.as_str().replace("127.0.0.1:9", "192.0.2.7:40000"))).unwrap();
    let b = Participant::answered(BOB, seen, &joined.answer, joined.session_id.clone()).await;
    let tid = b.say("rewritten").await;
    assert!(a.message().await.1.ends_with(b"rewritten"));
    let _ = tid;
    // A different session-id is somebody else: 481.
    let joined = chat
        .join(JoinRequest {
            room: "lobby".into(),
            identity: Identity::new("sip:carol@example.com", None).unwrap(),
            offer: Bytes::from(offer(Participant::local_uri().as_str(), "active")),
            device: None,
            on_end: Box::new(|| {}),
        })
        .await
        .unwrap();
    let mut stranger = Participant::connect(
        "sip:carol@example.com",
        Participant::local_uri(),
        answer_path(&joined.answer),
        String::new(),
    )
    .await;
    let tid = stranger.say("not my session").await;
    assert_eq!(stranger.status_of(tid).await, StatusCode::SESSION_DOES_NOT_EXIST);
}

#[tokio::test]
async fn a_success_report_when_asked() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let body = a.cpim(None, "text/plain", b"report me");
    let req = Request::new(TransactionId::random(), Method::Send)
        .with(Header::MessageId(msrp::header::MessageId::random()))
        .with(Header::SuccessReport(msrp::header::SuccessReport::Yes));
    let id = req.headers.message_id().unwrap().clone();
    a.send_raw(req, Some(("message/cpim", &body))).await;
    loop {
        if let Got::Report(rep) = a.next().await {
            assert_eq!(rep.headers.message_id(), Some(&id));
            assert_eq!(rep.headers.status().unwrap().code, StatusCode::OK);
            assert_eq!(rep.headers.byte_range().unwrap().end, Some(body.len() as u64));
            break;
        }
    }
}

#[tokio::test]
async fn a_participant_behind_the_projects_relay() {
    // The relay connects to the server's msrps listener, so it trusts the server's certificate.
    let (chat_tls, _, _, chat_cert) = tls_for("127.0.0.1");
    let (relay_tls, relay_cert) = common::relay::tls_for(&["127.0.0.1"], &[chat_cert]);
    let relay =
        common::relay::start_relay(common::relay::options("127.0.0.1", "example.com"), Some(&relay_tls), "example.com")
            .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(relay_cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let opts = ChatOptions { client_tls: Some(Arc::new(client)), ..ChatOptions::default() };
    let chat = common::start_chat_tls(opts, Some(chat_tls)).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;

    // Bob authenticates to the relay over TLS and gets his Use-Path.
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = relay_tls.connector.connect(name, tcp).await.unwrap();
    let (r, w) = tokio::io::split(tls);
    let local = Uri::new(true, "bob.example.com", Some(7000), Some(&msrp::id::random_session_id())).unwrap();
    let relay_uri = relay.uri();
    let mut b =
        Participant::over(BOB, local.clone(), Path::single(relay_uri.clone()), String::new(), Box::new(r), Box::new(w));
    let auth = |creds: Option<msrp::header::Credentials>| {
        let mut req = Request::new(TransactionId::random(), Method::Auth)
            .with(Header::ToPath(Path::single(relay_uri.clone())))
            .with(Header::FromPath(Path::single(local.clone())));
        if let Some(c) = creds {
            req.headers.set(Header::Authorization(Box::new(c)));
        }
        let mut out = BytesMut::new();
        msrp::encode::encode_request(&req, None, msrp::Continuation::Complete, &mut out).unwrap();
        (req.tid, out.freeze())
    };
    let (tid, frame) = auth(None);
    b.write(frame).await;
    let challenge = loop {
        if let Got::Response(r) = b.next().await
            && r.tid == tid
        {
            break r.headers.challenges().next().unwrap().clone();
        }
    };
    let (tid, frame) = auth(Some(common::relay::credentials(&challenge, "bob", "bobpw", &relay_uri, 1, true)));
    b.write(frame).await;
    let use_path = loop {
        if let Got::Response(r) = b.next().await
            && r.tid == tid
        {
            assert_eq!(r.status, StatusCode::OK);
            break r.headers.use_path().unwrap().clone();
        }
    };
    // Bob's offer: a path through the relay; the server must connect to the relay.
    let path = format!("{} {}", use_path.uris().iter().map(Uri::as_str).collect::<Vec<_>>().join(" "), local.as_str());
    let sdp = offer(&path, "active").replace("TCP/MSRP", "TCP/TLS/MSRP");
    let joined = chat
        .join(JoinRequest {
            room: "lobby".into(),
            identity: Identity::new(BOB, None).unwrap(),
            offer: Bytes::from(sdp),
            device: None,
            on_end: Box::new(|| {}),
        })
        .await
        .unwrap();
    assert!(joined.answer.contains("a=setup:active"));
    let body = loop {
        if let Got::Send { body, .. } = b.next().await {
            break body;
        }
    };
    assert!(body.is_empty(), "the binding SEND came through the relay");
    a.say("through the relay").await;
    let cpim = Cpim::parse(&b.message().await.1).unwrap();
    assert_eq!(&cpim.body[..], b"through the relay");
    // And back: To-Path is the relay, then the server.
    let mut to: Vec<Uri> = use_path.uris().to_vec();
    to.extend(answer_path(&joined.answer).uris().iter().cloned());
    let mut b = b.rerouted(Path::new(to).unwrap());
    let tid = b.say("from behind the relay").await;
    let resp = loop {
        if let Got::Response(r) = b.next().await
            && r.tid == tid
        {
            break r;
        }
    };
    assert_eq!(resp.status, StatusCode::OK, "{resp:?}");
    assert!(a.message().await.1.ends_with(b"from behind the relay"));
}
