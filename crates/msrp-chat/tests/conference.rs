//! Conference-info subscriptions (RFC 4575 over RFC 6665) through the focus's SIP front end:
//! a subscriber written from SIP's text over UDP, TCP and TLS; participants join through
//! the chat service and talk MSRP.

mod common;

use std::time::Duration;

use common::Participant;
use common::sip::{start_sip_chat, start_sip_chat_tls};
use common::subscriber::{Msg, Subscriber};
use msrp_chat::{ChatOptions, ConferenceOptions, RoomSettings};
use rsipstack::sip::Transport;

const ROOM: &str = "sip:lobby@chat.test";
const CAROL: &str = "sip:carol@example.com";

/// A user as a conference-info document shows it.
#[derive(Debug, PartialEq, Eq)]
struct User {
    entity: String,
    state: String,
    display: Option<String>,
    endpoints: usize,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.tag_name().name() == name)
}

/// The document's root state, version, user count and users.
fn read(doc: &str) -> (String, u32, Option<usize>, Vec<User>) {
    let xml = roxmltree::Document::parse(doc).expect("well-formed XML");
    let root = xml.root_element();
    assert_eq!(root.tag_name().namespace(), Some("urn:ietf:params:xml:ns:conference-info"));
    assert_eq!(root.tag_name().name(), "conference-info");
    assert_eq!(root.attribute("entity"), Some(ROOM));
    let count = child(root, "conference-state")
        .and_then(|s| child(s, "user-count"))
        .and_then(|c| c.text())
        .map(|t| t.parse().unwrap());
    let users = child(root, "users")
        .map(|u| {
            u.children()
                .filter(|c| c.tag_name().name() == "user")
                .map(|u| User {
                    entity: u.attribute("entity").unwrap().to_owned(),
                    state: u.attribute("state").unwrap_or("full").to_owned(),
                    display: child(u, "display-text").and_then(|d| d.text()).map(str::to_owned),
                    endpoints: u.children().filter(|c| c.tag_name().name() == "endpoint").count(),
                })
                .collect()
        })
        .unwrap_or_default();
    let version = root.attribute("version").unwrap().parse().unwrap();
    (root.attribute("state").unwrap_or("full").to_owned(), version, count, users)
}

fn entities(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.entity.as_str()).collect()
}

fn assert_notify(m: &Msg, state: &str) {
    assert_eq!(m.header("Event"), Some("conference"));
    let got = m.header("Subscription-State").unwrap();
    assert!(got.starts_with(state), "Subscription-State {got}, wanted {state}");
}

#[tokio::test]
async fn a_subscriber_gets_the_roster_then_each_change_as_a_partial_document() {
    let server = start_sip_chat(ChatOptions::default(), true).await;
    let mut alice = Participant::join(&server.chat, "lobby", "sip:alice@example.com").await;
    let _bob = Participant::join(&server.chat, "lobby", "sip:bob@example.com").await;
    let mut sub = Subscriber::udp(server.addr(Transport::Udp), CAROL, ROOM).await;
    let ok = sub.subscribe(Some(600)).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header("Expires"), Some("600"));
    let first = sub.notify().await;
    assert_notify(&first, "active;expires=");
    assert_eq!(first.header("Content-Type"), Some("application/conference-info+xml"));
    let (state, version, count, users) = read(&first.body);
    assert_eq!((state.as_str(), version, count), ("full", 1, Some(2)));
    assert_eq!(entities(&users), ["sip:alice@example.com", "sip:bob@example.com"]);
    assert!(users.iter().all(|u| u.endpoints == 1 && u.state == "full"));
    assert_eq!(server.sip.subscription_count(), 1);

    // A join: only the joiner, in a partial document.
    let dave = Participant::join(&server.chat, "lobby", "sip:dave@example.com").await;
    let (state, version, count, users) = read(&sub.notify().await.body);
    assert_eq!((state.as_str(), version, count), ("partial", 2, Some(3)));
    assert_eq!(
        users,
        [User { entity: "sip:dave@example.com".into(), state: "full".into(), display: None, endpoints: 1 }]
    );

    // A nickname: the user again, with its new name.
    let tid = alice.nickname(Some("Ally")).await;
    assert_eq!(alice.status_of(tid).await, msrp::StatusCode::OK);
    let (state, version, _, users) = read(&sub.notify().await.body);
    assert_eq!((state.as_str(), version), ("partial", 3));
    assert_eq!((users.len(), users[0].display.as_deref()), (1, Some("Ally")));

    // A leave: deleted.
    server.chat.leave(&dave.session_id);
    let (_, version, count, users) = read(&sub.notify().await.body);
    assert_eq!((version, count), (4, Some(2)));
    assert_eq!((entities(&users), users[0].state.as_str()), (vec!["sip:dave@example.com"], "deleted"));

    // A refresh gets the whole roster again; Expires: 0 ends it with a final NOTIFY.
    assert_eq!(sub.subscribe(Some(300)).await.status(), Some(200));
    let (state, version, _, users) = read(&sub.notify().await.body);
    assert_eq!((state.as_str(), version, users.len()), ("full", 5, 2));
    let bye = sub.subscribe(Some(0)).await;
    assert_eq!((bye.status(), bye.header("Expires")), (Some(200), Some("0")));
    let last = sub.notify().await;
    assert_notify(&last, "terminated;reason=timeout");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.sip.subscription_count(), 0);
}

#[tokio::test]
async fn clients_that_read_every_notify_as_the_roster_get_full_documents_over_tcp() {
    let server = start_sip_chat(ChatOptions::default(), true).await;
    let _alice = Participant::join(&server.chat, "lobby", "sip:alice@example.com").await;
    let mut sub =
        Subscriber::tcp(server.addr(Transport::Tcp), CAROL, ROOM).await.with_user_agent("Blink 6.0.4 (Linux)");
    assert_eq!(sub.subscribe(None).await.header("Expires"), Some("3600"), "RFC 4575's hour by default");
    assert_eq!(read(&sub.notify().await.body).3.len(), 1);
    let _bob = Participant::join(&server.chat, "lobby", "sip:bob@example.com").await;
    let (state, version, _, users) = read(&sub.notify().await.body);
    assert_eq!((state.as_str(), version), ("full", 2));
    assert_eq!(entities(&users), ["sip:alice@example.com", "sip:bob@example.com"]);
}

#[tokio::test]
async fn a_closed_room_ends_its_subscriptions_and_an_unanswered_notify_ends_one() {
    let opts = ChatOptions {
        conference: ConferenceOptions { notify_timeout: Duration::from_secs(1), ..ConferenceOptions::default() },
        ..ChatOptions::default()
    };
    let server = start_sip_chat(opts, true).await;
    let alice = Participant::join(&server.chat, "lobby", "sip:alice@example.com").await;
    let mut sub = Subscriber::udp(server.addr(Transport::Udp), CAROL, ROOM).await;
    sub.subscribe(Some(600)).await;
    sub.notify().await;
    let mut silent = Subscriber::udp(server.addr(Transport::Udp), "sip:dave@example.com", ROOM).await;
    silent.subscribe(Some(600)).await;
    silent.notify().await;
    silent.answering = false;
    let bob = Participant::join(&server.chat, "lobby", "sip:bob@example.com").await;
    sub.notify().await;
    // The silent one's NOTIFY is retransmitted, then its subscription ends at notify_timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.sip.subscription_count(), 1);
    server.chat.leave(&bob.session_id);
    sub.notify().await;
    server.chat.leave(&alice.session_id);
    let last = sub.notify().await;
    assert_notify(&last, "terminated;reason=noresource");
    assert_eq!(read(&last.body).3.len(), 1, "alice deleted");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.sip.subscription_count(), 0);
}

#[tokio::test]
async fn what_cannot_be_subscribed_is_refused() {
    let mut rooms = std::collections::HashMap::new();
    rooms.insert("staff".to_owned(), RoomSettings { allow: vec!["example.org".into()], ..RoomSettings::default() });
    let opts = ChatOptions {
        room_settings: rooms,
        conference: ConferenceOptions { max_per_user: 1, max_per_room: 2, ..ConferenceOptions::default() },
        ..ChatOptions::default()
    };
    let server = start_sip_chat(opts, true).await;
    let udp = server.addr(Transport::Udp);
    let status = |m: Msg| m.status().unwrap();
    let mut s = Subscriber::udp(udp, CAROL, ROOM).await;
    assert_eq!(status(s.subscribe(Some(600)).await), 480, "nobody in the room");
    let _alice = Participant::join(&server.chat, "lobby", "sip:alice@example.com").await;
    let mut s = Subscriber::udp(udp, CAROL, ROOM).await;
    let bad = s.subscribe_event(Some(600), "presence").await;
    assert_eq!((bad.status(), bad.header("Allow-Events")), (Some(489), Some("conference")));
    let brief = s.subscribe(Some(5)).await;
    assert_eq!((brief.status(), brief.header("Min-Expires")), (Some(423), Some("60")));
    assert_eq!(status(s.subscribe(Some(600)).await), 200);
    assert_eq!(status(Subscriber::udp(udp, CAROL, ROOM).await.subscribe(Some(600)).await), 403, "per user");
    let mut other = Subscriber::udp(udp, "sip:dave@example.com", ROOM).await;
    assert_eq!(status(other.subscribe(Some(600)).await), 200);
    let full = Subscriber::udp(udp, "sip:bob@example.com", ROOM).await.subscribe(Some(600)).await;
    assert_eq!((full.status(), full.header("Retry-After")), (Some(503), Some("5")), "per room");
    let _x = Participant::join(&server.chat, "staff", "sip:x@example.org").await;
    let staff = Subscriber::udp(udp, CAROL, "sip:staff@chat.test").await.subscribe(Some(600)).await;
    assert_eq!(status(staff), 403, "the room's access lists");
}

#[tokio::test]
async fn an_untrusted_subscriber_answers_a_digest_challenge_over_tls() {
    let (tls, client, _, _) = common::tls_for("localhost");
    let server = start_sip_chat_tls(ChatOptions::default(), false, Some(tls)).await;
    let _alice = Participant::join(&server.chat, "lobby", "sip:alice@example.com").await;
    let addr = server.addr(Transport::Tls);
    let mut nobody = Subscriber::tls(addr, client.clone(), CAROL, ROOM).await;
    assert_eq!(nobody.subscribe(Some(600)).await.status(), Some(401));
    let mut carol = Subscriber::tls(addr, client, CAROL, ROOM).await.with_password("carolpw");
    assert_eq!(carol.subscribe(Some(600)).await.status(), Some(200));
    let (state, _, _, users) = read(&carol.notify().await.body);
    assert_eq!((state.as_str(), entities(&users)), ("full", vec!["sip:alice@example.com"]));
}

#[tokio::test]
async fn a_participant_that_leaves_loses_its_subscription_and_a_watcher_keeps_its_own() {
    let server = start_sip_chat(ChatOptions::default(), true).await;
    let _alice = Participant::join(&server.chat, "lobby", "sip:alice@example.com").await;
    let carol = Participant::join(&server.chat, "lobby", CAROL).await;
    let udp = server.addr(Transport::Udp);
    let mut member = Subscriber::udp(udp, CAROL, ROOM).await;
    member.subscribe(Some(600)).await;
    member.notify().await;
    let mut watcher = Subscriber::udp(udp, "sip:dave@example.com", ROOM).await;
    watcher.subscribe(Some(600)).await;
    watcher.notify().await;
    server.chat.leave(&carol.session_id);
    // AG's SDK crashes on an `active` NOTIFY while it tears its session down.
    let last = member.notify().await;
    assert_notify(&last, "terminated;reason=noresource");
    let change = watcher.notify().await;
    assert_notify(&change, "active");
    assert_eq!(read(&change.body).3[0].state, "deleted");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.sip.subscription_count(), 1);
}

#[tokio::test]
async fn a_document_too_large_for_udp_goes_over_tcp_and_falls_back_to_udp_without_it() {
    let server = start_sip_chat(ChatOptions::default(), true).await;
    // 300 users: a full document of ~100 KB, more than a UDP datagram carries.
    let mut held = Vec::new();
    for i in 0..300 {
        held.push(Participant::join(&server.chat, "lobby", &format!("sip:user{i}@example.com")).await);
    }
    let udp = server.addr(Transport::Udp);
    let (mut sub, listener) = Subscriber::udp_and_tcp(udp, CAROL, ROOM).await;
    assert_eq!(sub.subscribe(Some(600)).await.status(), Some(200));
    let (conn, _) = tokio::time::timeout(common::WAIT, listener.accept()).await.expect("the focus dials TCP").unwrap();
    let mut conn = tokio::io::BufReader::new(conn);
    let first = Subscriber::tcp_notify(&mut conn).await;
    assert!(first.body.len() > 65_507, "{} bytes", first.body.len());
    let (state, _, count, users) = read(&first.body);
    assert_eq!((state.as_str(), count, users.len()), ("full", Some(300), 300));
    // The next change is small: it may come over UDP or the same connection; either way the
    // subscription stays up. A UDP-only subscriber (nothing listening on TCP) gets only what
    // fits in a datagram: a small room works over UDP alone.
    let small = start_sip_chat(ChatOptions::default(), true).await;
    let _a = Participant::join(&small.chat, "lobby", "sip:alice@example.com").await;
    let _b = Participant::join(&small.chat, "lobby", "sip:bob@example.com").await;
    let mut udp_only = Subscriber::udp(small.addr(Transport::Udp), CAROL, ROOM).await;
    udp_only.subscribe(Some(600)).await;
    let first = udp_only.notify().await;
    assert!(first.body.len() + 300 > 1300, "larger than RFC 3261's 1300 bytes, so TCP was tried first");
    assert_eq!(read(&first.body).3.len(), 2);
    assert_eq!(server.sip.subscription_count(), 1);
}
