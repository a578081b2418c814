//! REFER to a room (RFC 4579 §5.5, §5.8 over RFC 3515): a participant has the focus invite
//! someone in, or remove someone; progress comes back as sipfrag NOTIFYs. The referrer and
//! the invitee are written from SIP's text; participants talk MSRP.

mod common;

use std::time::Duration;

use common::callee::Callee;
use common::sip::{start_sip_chat, start_sip_chat_tls, start_uac};
use common::subscriber::{Msg, Subscriber};
use common::{Participant, until};
use msrp_auth::digest::{Algorithm, DigestResponse, ha1};
use msrp_chat::{ChatOptions, OutboundAuth, ReferOptions, ReferPolicy, RoomSettings};
use rsipstack::sip::Transport;

const ROOM: &str = "sip:lobby@chat.test";
const ALICE: &str = "sip:alice@example.com";
const CAROL: &str = "sip:carol@example.com";

/// A referral NOTIFY: its sipfrag status line and Subscription-State.
fn sipfrag(m: &Msg) -> (String, String) {
    assert_eq!(m.header("Event"), Some("refer"));
    assert_eq!(m.header("Content-Type"), Some("message/sipfrag;version=2.0"));
    (m.body.trim_end().to_owned(), m.header("Subscription-State").unwrap().to_owned())
}

#[tokio::test]
async fn a_referral_invites_the_target_reports_each_step_and_makes_it_a_participant() {
    let mut callee = Callee::udp().await;
    // The INVITE goes through chat.outbound_proxy (here the callee itself).
    let opts = ChatOptions { outbound_proxy: Some(format!("sip:{}", callee.addr)), ..Default::default() };
    let server = start_sip_chat(opts, true).await;
    let alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let mut referrer = Subscriber::udp(server.addr(Transport::Udp), ALICE, ROOM).await;
    let accepted = referrer.refer("<sip:carol@example.com>", "").await;
    assert_eq!(accepted.status(), Some(202));
    let (frag, state) = sipfrag(&referrer.notify().await);
    assert_eq!(frag, "SIP/2.0 100 Trying");
    assert!(state.starts_with("active;expires="), "{state}");

    let invite = callee.expect("INVITE").await;
    assert!(invite.start.starts_with("INVITE sip:carol@example.com "), "{}", invite.start);
    assert!(invite.header("From").unwrap().contains(ROOM), "{:?}", invite.header("From"));
    assert!(invite.header("Contact").unwrap().ends_with(";isfocus"), "{:?}", invite.header("Contact"));
    assert!(invite.header("Referred-By").unwrap().contains(ALICE));
    assert!(invite.body.contains("a=setup:actpass") && invite.body.contains("m=message "), "{}", invite.body);

    callee.reply(&invite, 180, "Ringing", None).await;
    assert_eq!(sipfrag(&referrer.notify().await).0, "SIP/2.0 180 Ringing");

    // Carol connects to the focus before her 200 reaches it (her MSRP connection need not
    // wait for SIP, which may cross proxies): the focus holds her request until the answer.
    let local = Participant::local_uri();
    let answer = common::offer(local.as_str(), "active");
    let offer = invite.body.clone();
    let connecting = tokio::spawn(async move { Participant::answered(CAROL, local, &offer, String::new()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    callee.reply(&invite, 200, "OK", Some(&answer)).await;
    callee.expect("ACK").await;
    let mut carol = connecting.await.unwrap();
    let (frag, state) = sipfrag(&referrer.notify().await);
    assert_eq!((frag.as_str(), state.as_str()), ("SIP/2.0 200 OK", "terminated;reason=noresource"));

    // She is in the room: greeted, and she gets what Alice says.
    let (_, welcome) = carol.message_or_notice().await;
    assert!(String::from_utf8_lossy(&welcome).contains("Welcome to lobby"), "{welcome:?}");
    alice.say("hello carol").await;
    let (_, got) = carol.message().await;
    assert!(String::from_utf8_lossy(&got).contains("hello carol"));
    assert_eq!(server.sip.call_count(), 1);

    // Her BYE ends her session.
    assert_eq!(callee.bye(&invite).await.status(), Some(200));
    until("carol's session ended", || server.chat.session_count() == 1).await;
    assert_eq!(server.sip.call_count(), 0);
}

#[tokio::test]
async fn a_proxy_that_challenges_the_focus_gets_the_services_account() {
    let mut callee = Callee::udp().await;
    let opts = ChatOptions {
        outbound_proxy: Some(format!("sip:{}", callee.addr)),
        outbound_auth: Some(OutboundAuth { username: "focus".into(), password: "focuspw".into() }),
        ..Default::default()
    };
    let server = start_sip_chat(opts, true).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let mut referrer = Subscriber::udp(server.addr(Transport::Udp), ALICE, ROOM).await;
    assert_eq!(referrer.refer("<sip:carol@example.com>", "").await.status(), Some(202));
    assert_eq!(sipfrag(&referrer.notify().await).0, "SIP/2.0 100 Trying");
    // The proxy (here the callee) asks for the focus's credentials (RFC 3261 §22.3).
    let first = callee.expect("INVITE").await;
    assert!(first.header("Proxy-Authorization").is_none());
    let challenge = r#"Proxy-Authenticate: Digest realm="proxy.test", nonce="4f1e2d3c", algorithm=MD5, qop="auth""#;
    callee.reply_with(&first, 407, "Proxy Authentication Required", &format!("{challenge}\r\n"), None).await;
    let second = loop {
        let m = callee.expect("INVITE").await;
        if m.header("Proxy-Authorization").is_some() {
            break m;
        }
    };
    let uri = second.start.split(' ').nth(1).unwrap();
    let creds = msrp::header::Credentials::parse(second.header("Proxy-Authorization").unwrap()).unwrap();
    let answer = DigestResponse::from_credentials(&creds, uri).unwrap();
    assert_eq!((answer.username.as_str(), answer.realm.as_str()), ("focus", "proxy.test"));
    assert!(answer.verify(&ha1(Algorithm::Md5, "focus", "proxy.test", "focuspw"), "INVITE"));
    assert!(!answer.verify(&ha1(Algorithm::Md5, "focus", "proxy.test", "guess"), "INVITE"));
    // The challenge is not the referral's outcome; the callee's answer is.
    callee.reply(&second, 603, "Decline", None).await;
    let (frag, state) = sipfrag(&referrer.notify().await);
    assert_eq!((frag.as_str(), state.as_str()), ("SIP/2.0 603 Decline", "terminated;reason=noresource"));
}

#[tokio::test]
async fn a_declined_invitation_is_reported_with_its_status_over_tls_with_digest() {
    let (tls, client, _, _) = common::tls_for("localhost");
    let server = start_sip_chat_tls(ChatOptions::default(), false, Some(tls)).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let mut callee = Callee::udp().await;
    let mut referrer = Subscriber::tls(server.addr(Transport::Tls), client, ALICE, ROOM).await.with_password("alicepw");
    // Refer-To names the callee's address: no outbound proxy.
    let target = format!("<sip:carol@{};method=INVITE>", callee.addr);
    assert_eq!(referrer.refer(&target, "").await.status(), Some(202));
    assert_eq!(sipfrag(&referrer.notify().await).0, "SIP/2.0 100 Trying");
    let invite = callee.expect("INVITE").await;
    assert!(
        invite.start.starts_with(&format!("INVITE sip:carol@{} ", callee.addr)),
        "method param dropped: {}",
        invite.start
    );
    callee.reply(&invite, 486, "Busy Here", None).await;
    callee.expect("ACK").await;
    let (frag, state) = sipfrag(&referrer.notify().await);
    assert_eq!((frag.as_str(), state.as_str()), ("SIP/2.0 486 Busy Here", "terminated;reason=noresource"));
    assert_eq!(server.chat.session_count(), 1);
}

#[tokio::test]
async fn refer_with_method_bye_removes_the_participant_over_tcp() {
    let server = start_sip_chat(ChatOptions::default(), true).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    // Bob joined by SIP, so his removal is a BYE he receives.
    let uac = start_uac(&server.token).await;
    let local = Participant::local_uri();
    let (_dialog, ok) = uac
        .invite(
            &server.target("lobby", Transport::Udp),
            "sip:bob@example.com",
            Some(common::offer(local.as_str(), "active")),
            None,
        )
        .await;
    assert_eq!(ok.status_code.code(), 200);
    let _bob =
        Participant::answered("sip:bob@example.com", local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    until("bob in", || server.chat.session_count() == 2).await;

    let mut referrer = Subscriber::tcp(server.addr(Transport::Tcp), ALICE, ROOM).await;
    assert_eq!(referrer.refer("<sip:bob@example.com;method=BYE>", "").await.status(), Some(202));
    assert_eq!(final_frag(&mut referrer).await, "SIP/2.0 200 OK");
    let (_, why) = uac.terminated().await;
    assert_eq!(why, "UasBye");
    until("bob's session ended with his call", || server.chat.session_count() == 1).await;

    // Nobody of that name left: 404 in the sipfrag.
    // AG's SDK puts the method after the URI, among the header's parameters.
    let mut again = referrer_for(&server).await;
    assert_eq!(again.refer("<sip:bob@example.com>;method=BYE", "").await.status(), Some(202));
    assert_eq!(final_frag(&mut again).await, "SIP/2.0 404 Not Found");
}

/// The status line of the final NOTIFY (the one that ends the subscription).
async fn final_frag(referrer: &mut Subscriber) -> String {
    loop {
        let (frag, state) = sipfrag(&referrer.notify().await);
        if state.starts_with("terminated") {
            return frag;
        }
    }
}

async fn referrer_for(server: &common::sip::SipChat) -> Subscriber {
    Subscriber::udp(server.addr(Transport::Udp), ALICE, ROOM).await
}

#[tokio::test]
async fn refer_sub_false_gets_no_notify() {
    let mut callee = Callee::udp().await;
    let server = start_sip_chat(ChatOptions::default(), true).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let mut referrer = referrer_for(&server).await;
    let accepted = referrer.refer(&format!("<sip:carol@{}>", callee.addr), "Refer-Sub: false\r\n").await;
    assert_eq!((accepted.status(), accepted.header("Refer-Sub")), (Some(202), Some("false")));
    let invite = callee.expect("INVITE").await;
    callee.reply(&invite, 603, "Decline", None).await;
    assert!(referrer.notify_within(500).await.is_none(), "RFC 4488: no NOTIFY");
}

#[tokio::test]
async fn who_may_refer_and_what_is_refused() {
    let room = RoomSettings { refer: Some(ReferPolicy::Nobody), ..Default::default() };
    let opts = ChatOptions {
        room_settings: [("closed".to_owned(), room)].into(),
        refer: ReferOptions { max_pending_per_user: 1, ..Default::default() },
        ..Default::default()
    };
    let server = start_sip_chat(opts, true).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let _alice2 = Participant::join(&server.chat, "closed", ALICE).await;
    let udp = server.addr(Transport::Udp);

    // Not in the room: 403 (an empty room as much as one with others in it).
    let mut dave = Subscriber::udp(udp, "sip:dave@example.com", ROOM).await;
    assert_eq!(dave.refer("<sip:carol@example.com>", "").await.status(), Some(403));
    let mut nobody_there = Subscriber::udp(udp, ALICE, "sip:empty@chat.test").await;
    assert_eq!(nobody_there.refer("<sip:carol@example.com>", "").await.status(), Some(403));
    // The room's policy says none.
    let mut closed = Subscriber::udp(udp, ALICE, "sip:closed@chat.test").await;
    assert_eq!(closed.refer("<sip:carol@example.com>", "").await.status(), Some(403));
    // A Refer-To that cannot be acted on: 400.
    for bad in ["<sip:example.com>", "<sip:carol@example.com;method=MESSAGE>", "<http://carol@example.com>"] {
        assert_eq!(referrer_for(&server).await.refer(bad, "").await.status(), Some(400), "{bad}");
    }
    // One referral in progress per user here: a second one is refused until it ends.
    let mut callee = Callee::udp().await;
    let target = format!("<sip:carol@{}>", callee.addr);
    let mut first = referrer_for(&server).await;
    assert_eq!(first.refer(&target, "").await.status(), Some(202));
    let invite = callee.expect("INVITE").await;
    assert_eq!(referrer_for(&server).await.refer(&target, "").await.status(), Some(403));
    callee.reply(&invite, 480, "Temporarily Unavailable", None).await;
    assert_eq!(final_frag(&mut first).await, "SIP/2.0 480 Temporarily Unavailable");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(referrer_for(&server).await.refer(&target, "").await.status(), Some(202));
}

#[tokio::test]
async fn an_invitee_that_rings_too_long_is_cancelled_and_the_referrer_told() {
    let opts = ChatOptions {
        refer: ReferOptions { timeout: Duration::from_secs(1), ..Default::default() },
        ..Default::default()
    };
    let server = start_sip_chat(opts, true).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let mut callee = Callee::udp().await;
    let mut referrer = referrer_for(&server).await;
    assert_eq!(referrer.refer(&format!("<sip:carol@{}>", callee.addr), "").await.status(), Some(202));
    let invite = callee.expect("INVITE").await;
    callee.reply(&invite, 180, "Ringing", None).await;
    let cancel = callee.expect("CANCEL").await;
    callee.reply(&cancel, 200, "OK", None).await;
    callee.reply(&invite, 487, "Request Terminated", None).await;
    callee.expect("ACK").await;
    assert_eq!(final_frag(&mut referrer).await, "SIP/2.0 487 Request Terminated");
    assert_eq!((server.chat.session_count(), server.sip.call_count()), (1, 0));
}
