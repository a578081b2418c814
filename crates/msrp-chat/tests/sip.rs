//! The chat focus through its SIP front end: real INVITEs (rsipstack UAC) over UDP and TCP,
//! then MSRP over TCP, all on 127.0.0.1.

mod common;

use common::sip::{start_sip_chat, start_uac};
use common::{Participant, offer};
use msrp::StatusCode as Msrp;
use msrp_chat::ChatOptions;
use msrp_chat::cpim::Cpim;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Method, StatusCode, Transport};

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";

/// Joins over SIP from `uac` and opens the MSRP side.
async fn join(
    uac: &common::sip::Uac,
    target: &str,
    user: &str,
    cred: Option<(&str, &str)>,
) -> (rsipstack::dialog::invite_dialog::InviteDialog, Participant) {
    let local = Participant::local_uri();
    let (dlg, resp) = uac.invite(target, user, Some(offer(local.as_str(), "active")), cred).await;
    assert_eq!(resp.status_code, StatusCode::OK, "join of {user}");
    let answer = String::from_utf8(resp.body.clone()).unwrap();
    let contact = resp.contact_header().unwrap().value().to_owned();
    assert!(contact.contains(";isfocus"), "Contact {contact}");
    assert!(answer.contains("a=accept-types:message/cpim"));
    assert!(answer.contains("a=chatroom:nickname private-messages"));
    (dlg, Participant::answered(user, local, &answer, String::new()).await)
}

#[tokio::test]
async fn three_join_over_udp_and_tcp_chat_and_leave() {
    let server = start_sip_chat(ChatOptions::default(), true).await;
    let uac = start_uac(&server.token).await;
    let (da, mut a) = join(&uac, &server.target("lobby", Transport::Udp), ALICE, None).await;
    let (db, mut b) = join(&uac, &server.target("lobby", Transport::Tcp), BOB, None).await;
    let (dc, mut c) = join(&uac, &server.target("lobby", Transport::Udp), CAROL, None).await;
    assert_eq!((server.chat.room_count(), server.chat.session_count(), server.sip.call_count()), (1, 3, 3));
    let tid = a.say("hello room").await;
    assert_eq!(a.status_of(tid).await, Msrp::OK);
    for p in [&mut b, &mut c] {
        let cpim = Cpim::parse(&p.message().await.1).unwrap();
        assert_eq!((cpim.from().unwrap().uri.as_str(), &cpim.body[..]), (ALICE, &b"hello room"[..]));
    }
    assert!(a.quiet_for(200).await);
    // A re-INVITE gets the same answer.
    let h = vec![rsipstack::sip::Header::ContentType("application/sdp".into())];
    let again = da.reinvite(Some(h), Some(offer(a.local.as_str(), "active").into_bytes())).await.unwrap().unwrap();
    assert_eq!(again.status_code, StatusCode::OK);
    assert!(String::from_utf8_lossy(&again.body).contains(a.remote.last().as_str()));
    // BYE leaves; the last BYE empties the room.
    db.bye().await.unwrap();
    loop {
        let (_, body) = c.message_or_notice().await;
        if String::from_utf8_lossy(&body).contains("bob@example.com left") {
            break;
        }
    }
    da.bye().await.unwrap();
    dc.bye().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!((server.chat.room_count(), server.chat.session_count(), server.sip.call_count()), (0, 0, 0));
    let _ = a;
}

#[tokio::test]
async fn untrusted_callers_answer_a_digest_challenge() {
    let server = start_sip_chat(ChatOptions::default(), false).await;
    let uac = start_uac(&server.token).await;
    let target = server.target("lobby", Transport::Tcp);
    let (_, resp) = uac.invite(&target, ALICE, Some(offer(Participant::local_uri().as_str(), "active")), None).await;
    assert_eq!(resp.status_code, StatusCode::Unauthorized);
    let challenge = resp.header_value("WWW-Authenticate").unwrap();
    assert!(challenge.contains("realm=\"example.com\""), "{challenge}");
    let (_, resp) = uac
        .invite(&target, ALICE, Some(offer(Participant::local_uri().as_str(), "active")), Some(("alice", "wrong")))
        .await;
    assert_eq!(resp.status_code, StatusCode::Forbidden);
    let (_, resp) = uac
        .invite(&target, ALICE, Some(offer(Participant::local_uri().as_str(), "active")), Some(("bob", "bobpw")))
        .await;
    assert_eq!(resp.status_code, StatusCode::Forbidden, "proving to be bob does not make one alice");
    let (_dlg, mut a) = join(&uac, &target, ALICE, Some(("alice", "alicepw"))).await;
    let tid = a.say("authenticated").await;
    assert_eq!(a.status_of(tid).await, Msrp::OK);
}

#[tokio::test]
async fn what_is_not_a_chat_join_is_refused() {
    let server = start_sip_chat(
        ChatOptions { rooms: msrp_chat::RoomPolicy::Only(vec!["lobby".into()]), ..ChatOptions::default() },
        true,
    )
    .await;
    let uac = start_uac(&server.token).await;
    let lobby = server.target("lobby", Transport::Udp);
    let local = Participant::local_uri();
    let (_, resp) =
        uac.invite(&server.target("attic", Transport::Udp), ALICE, Some(offer(local.as_str(), "active")), None).await;
    assert_eq!(resp.status_code.code(), 404, "not one of the configured rooms");
    let audio = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let (_, resp) = uac.invite(&lobby, ALICE, Some(audio.into()), None).await;
    assert_eq!(resp.status_code.code(), 488, "no chat stream");
    let (_, resp) = uac.invite(&lobby, ALICE, None, None).await;
    assert_eq!(resp.status_code.code(), 488, "no offer");
    assert_eq!(uac.request(Method::Message, &lobby, Some(("text/plain", b"hi"))).await, 405);
    assert_eq!(uac.request(Method::Options, &lobby, None).await, 200);
    assert_eq!(server.chat.session_count(), 0);
}

#[tokio::test]
async fn the_server_hangs_up_on_a_participant_that_stops_reading() {
    let server = start_sip_chat(ChatOptions { queue_bytes: 128 * 1024, ..ChatOptions::default() }, true).await;
    let uac = start_uac(&server.token).await;
    let target = server.target("lobby", Transport::Udp);
    let (_da, a) = join(&uac, &target, ALICE, None).await;
    let (_db, mut b) = join(&uac, &target, BOB, None).await;
    let (_dc, slow) = join(&uac, &target, CAROL, None).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    slow.stall();
    let filler = "y".repeat(32 * 1024);
    let mut sent = 0;
    while server.chat.session_count() == 3 {
        assert!(sent < 1000, "never dropped");
        a.say(&format!("{sent} {filler}")).await;
        b.message().await;
        sent += 1;
    }
    let (_, why) = uac.terminated().await;
    assert_eq!(why, "UasBye", "the server sent BYE");
    a.say("still going").await;
    assert!(b.message().await.1.ends_with(b"still going"));
}

#[tokio::test]
async fn a_full_service_answers_503_and_reinvites_keep_move_drop_and_add_the_chat() {
    let server = start_sip_chat(ChatOptions { max_sessions: 1, ..ChatOptions::default() }, true).await;
    let uac = start_uac(&server.token).await;
    let target = server.target("lobby", Transport::Tcp);
    let local = Participant::local_uri();
    let (dlg, joined) = uac.invite(&target, ALICE, Some(offer(local.as_str(), "active")), None).await;
    let joined = String::from_utf8(joined.body).unwrap();
    let mut a = Participant::answered(ALICE, local, &joined, String::new()).await;
    let (_, resp) = uac.invite(&target, BOB, Some(offer(Participant::local_uri().as_str(), "active")), None).await;
    assert_eq!(resp.status_code.code(), 503, "max_sessions reached");
    // Every answer on the call keeps its origin, one version up each time it changes (RFC 3264
    // §8): checked for each re-INVITE below, whatever the focus did with it.
    let last = std::sync::Arc::new(std::sync::Mutex::new(Some(origin(&joined))));
    let reinvite = |sdp: String| {
        let h = vec![rsipstack::sip::Header::ContentType("application/sdp".into())];
        let (dlg, last) = (dlg.clone(), last.clone());
        async move {
            let resp = dlg.reinvite(Some(h), Some(sdp.into_bytes())).await.unwrap().unwrap();
            let (id, version) = origin(&String::from_utf8_lossy(&resp.body));
            if let Some((first_id, previous)) = last.lock().unwrap().replace((id.clone(), version)) {
                assert_eq!((id, version), (first_id, previous + 1), "the call's origin, one version up");
            }
            resp
        }
    };
    // A new offer with the chat stream in another position gets an answer in that shape.
    let audio = "v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let chat_part = |local: &str| offer(local, "active")[offer(local, "active").find("m=").unwrap()..].to_owned();
    let resp = reinvite(format!("{audio}{}", chat_part(a.local.as_str()))).await;
    assert_eq!(resp.status_code, StatusCode::OK);
    let answer = String::from_utf8_lossy(&resp.body).into_owned();
    assert!(answer.find("m=audio 0").unwrap() < answer.find("m=message").unwrap(), "{answer}");
    // Another host with the same MSRP session-id (a NAT or relay rewrote it): the same session.
    let moved = a.local.as_str().replace("127.0.0.1", "192.0.2.7");
    let resp = reinvite(offer(&moved, "active")).await;
    assert_eq!(resp.status_code, StatusCode::OK, "same session-id, new address");
    let tid = a.nickname(Some("Ally")).await;
    assert_eq!(a.status_of(tid).await, Msrp::OK);
    // Another MSRP session: the participant moves to it, with its nickname.
    let other = Participant::local_uri();
    let resp = reinvite(offer(other.as_str(), "active")).await;
    assert_eq!(resp.status_code, StatusCode::OK, "another MSRP session");
    let answer = String::from_utf8_lossy(&resp.body).into_owned();
    let mut a2 = Participant::answered(ALICE, other, &answer, String::new()).await;
    assert_ne!(a2.remote.last().as_str(), a.remote.last().as_str(), "a new session at the server");
    let tid = a2.say("from the new session").await;
    assert_eq!(a2.status_of(tid).await, Msrp::OK);
    let tid = a2.nickname(Some("Ally")).await;
    assert_eq!(a2.status_of(tid).await, Msrp::OK, "still hers");
    assert_eq!(server.chat.session_count(), 1);
    // Dropping the chat stream leaves the room; the call stays up, every stream refused.
    let resp = reinvite(audio.to_owned()).await;
    assert_eq!(resp.status_code, StatusCode::OK);
    assert!(String::from_utf8_lossy(&resp.body).contains("m=audio 0 RTP/AVP 0"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!((server.chat.session_count(), server.sip.call_count()), (0, 1));
    assert!(a2.closed_within(std::time::Duration::from_secs(2)).await, "its MSRP session ended");
    // A chat stream offered again joins the room again.
    let again = Participant::local_uri();
    let resp = reinvite(format!("{audio}{}", chat_part(again.as_str()))).await;
    assert_eq!(resp.status_code, StatusCode::OK);
    let answer = String::from_utf8_lossy(&resp.body).into_owned();
    assert!(answer.contains("m=audio 0") && answer.contains("a=path:msrp://"), "{answer}");
    let mut a3 = Participant::answered(ALICE, again, &answer, String::new()).await;
    let tid = a3.say("back").await;
    assert_eq!(a3.status_of(tid).await, Msrp::OK);
    assert_eq!(server.chat.session_count(), 1);
}

/// The `o=` line's session id (with its username and address) and version.
fn origin(sdp: &str) -> (String, u64) {
    let o = sdp.lines().find_map(|l| l.strip_prefix("o=")).expect("an o= line");
    let f: Vec<&str> = o.split(' ').collect();
    assert_eq!(f.len(), 6, "{o}");
    (format!("{} {} {}", f[0], f[1], f[5]), f[2].parse().unwrap())
}

#[tokio::test]
async fn a_reinvite_without_an_offer_gets_the_current_answer() {
    let server = start_sip_chat(ChatOptions::default(), true).await;
    let uac = start_uac(&server.token).await;
    let local = Participant::local_uri();
    let target = server.target("lobby", Transport::Udp);
    let (dlg, first) = uac.invite(&target, ALICE, Some(offer(local.as_str(), "active")), None).await;
    let first = String::from_utf8(first.body).unwrap();
    let a = Participant::answered(ALICE, local, &first, String::new()).await;
    let resp = dlg.reinvite(None, None).await.unwrap().unwrap();
    assert_eq!(resp.status_code, StatusCode::OK);
    let answer = String::from_utf8_lossy(&resp.body).into_owned();
    assert!(answer.contains(a.remote.last().as_str()), "the 200 carries the session's answer: {answer}");
    // The same offer again: the same SDP, version and all (RFC 3264 §8).
    let h = vec![rsipstack::sip::Header::ContentType("application/sdp".into())];
    let resp = dlg.reinvite(Some(h), Some(offer(a.local.as_str(), "active").into_bytes())).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&resp.body), first, "an unchanged answer keeps its version");
}

#[tokio::test]
async fn a_wildcard_listener_advertises_its_configured_host() {
    // UDP bound to 0.0.0.0: the socket's own address would put 0.0.0.0 in the Contact.
    let listeners = msrp_chat::sip::SipListeners {
        udp: vec!["0.0.0.0:0".parse().unwrap()],
        // Not an address this machine has: rsipstack falls back to 127.0.0.1 for a wildcard
        // socket on a machine without another interface, which must not pass for the fix.
        advertised_host: Some("192.0.2.1".into()),
        ..msrp_chat::sip::SipListeners::default()
    };
    let server = common::sip::start_sip_chat_on(ChatOptions::default(), true, None, listeners).await;
    let uac = start_uac(&server.token).await;
    let port = server.addr(Transport::Udp).port();
    let local = Participant::local_uri();
    let target = format!("sip:lobby@127.0.0.1:{port}");
    let (_, resp) = uac.invite(&target, ALICE, Some(offer(local.as_str(), "active")), None).await;
    assert_eq!(resp.status_code, StatusCode::OK);
    let contact = resp.contact_header().unwrap().value().to_owned();
    assert!(contact.contains(&format!("@192.0.2.1:{port}")), "Contact {contact}");
}

/// A room's policy answered over SIP (issue 15 item 5): 403 for a caller its lists refuse,
/// 486 beyond `max_participants`.
#[tokio::test]
async fn room_policies_answer_403_and_486() {
    let policy = msrp_chat::RoomSettings {
        deny: vec!["sip:carol@example.com".into()],
        max_participants: Some(1),
        ..msrp_chat::RoomSettings::default()
    };
    let opts =
        ChatOptions { room_settings: [("lobby".to_owned(), policy)].into_iter().collect(), ..ChatOptions::default() };
    let server = start_sip_chat(opts, true).await;
    let uac = start_uac(&server.token).await;
    let target = server.target("lobby", Transport::Tcp);
    let (_, resp) = uac.invite(&target, CAROL, Some(offer(Participant::local_uri().as_str(), "active")), None).await;
    assert_eq!(resp.status_code.code(), 403, "denied");
    let (_dlg, _a) = join(&uac, &target, ALICE, None).await;
    let (_, resp) = uac.invite(&target, BOB, Some(offer(Participant::local_uri().as_str(), "active")), None).await;
    assert_eq!(resp.status_code.code(), 486, "one participant at most");
}

async fn recv_text(sock: &tokio::net::UdpSocket) -> String {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(common::WAIT, sock.recv_from(&mut buf)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A history store that takes its time to answer (a slow database), so an INVITE stays
/// pending long enough to be cancelled.
struct SlowHistory(msrp_chat::MemoryHistory);

impl msrp_chat::History for SlowHistory {
    fn append<'a>(
        &'a self,
        room: &'a str,
        msg: &'a msrp_chat::Stored,
        keep: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<(), String>> {
        self.0.append(room, msg, keep)
    }

    fn recent<'a>(
        &'a self,
        room: &'a str,
        limit: usize,
    ) -> msrp_chat::history::BoxFuture<'a, Result<Vec<msrp_chat::Stored>, String>> {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            self.0.recent(room, limit).await
        })
    }
}

#[tokio::test]
async fn a_cancelled_invite_gets_487_and_leaves_nothing_behind() {
    use tokio::net::UdpSocket;
    let history = std::sync::Arc::new(SlowHistory(msrp_chat::MemoryHistory::default()));
    let server = common::sip::start_sip_chat_history(ChatOptions::default(), history).await;
    let to = server.addr(Transport::Udp);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = offer(Participant::local_uri().as_str(), "active");
    let common_headers = |method: &str, branch: &str| {
        format!(
            "Via: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <{ALICE}>;tag=cancel1\r\nTo: <sip:lobby@chat.test>\r\nCall-ID: cancel-test@{me}\r\n\
             CSeq: 1 {method}\r\n"
        )
    };
    let invite = format!(
        "INVITE sip:lobby@{to} SIP/2.0\r\n{}Contact: <sip:alice@{me}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        common_headers("INVITE", "z9hG4bKcancelinv"),
        sdp.len()
    );
    sock.send_to(invite.as_bytes(), to).await.unwrap();
    let first = recv_text(&sock).await;
    assert!(first.starts_with("SIP/2.0 100"), "the INVITE is being worked on: {first}");
    // CANCEL: the same branch, Call-ID, From, To and CSeq number as the INVITE (RFC 3261 §9.1).
    let cancel = format!(
        "CANCEL sip:lobby@{to} SIP/2.0\r\n{}Content-Length: 0\r\n\r\n",
        common_headers("CANCEL", "z9hG4bKcancelinv")
    );
    sock.send_to(cancel.as_bytes(), to).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = recv_text(&sock).await;
        let status = m.get(8..11).unwrap_or("").to_owned();
        let method = m.lines().find_map(|l| l.strip_prefix("CSeq: 1 ")).unwrap_or("").to_owned();
        got.push((status, method));
    }
    got.sort();
    assert_eq!(got, [("200".to_owned(), "CANCEL".to_owned()), ("487".to_owned(), "INVITE".to_owned())]);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!((server.chat.session_count(), server.sip.call_count()), (0, 0), "nothing joined");
}
