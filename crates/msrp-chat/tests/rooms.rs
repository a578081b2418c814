//! The room over real MSRP connections on 127.0.0.1, joined through `Chat::join` (the SIP side
//! is tested in tests/sip.rs).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Got, Participant, start_chat};
use msrp::StatusCode;
use msrp::message::TransactionId;
use msrp_chat::ChatOptions;
use msrp_chat::cpim::Cpim;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";

#[tokio::test]
async fn a_message_fans_out_byte_exact_to_everyone_else() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let mut c = Participant::join(&chat, "lobby", CAROL).await;
    let mut b2 = Participant::join(&chat, "lobby", BOB).await;
    let text = "héllo\r\n-------fake$\r\n\u{1F600}";
    let tid = a.say(text).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    for p in [&mut b, &mut c, &mut b2] {
        let (req, body) = p.message().await;
        assert_eq!(req.headers.content_type().unwrap().essence(), "message/cpim");
        assert_eq!(req.headers.failure_report(), msrp::header::FailureReport::Partial, "only failures answered");
        let cpim = Cpim::parse(&body).unwrap();
        assert_eq!(cpim.from().unwrap().uri, ALICE);
        assert_eq!(cpim.to().unwrap()[0].uri, "sip:lobby@chat.test");
        assert!(cpim.datetime().is_some(), "DateTime added");
        assert_eq!(&cpim.body[..], text.as_bytes(), "byte-exact to {}", p.identity);
    }
    assert!(a.quiet_for(300).await, "the sender's own session gets no copy");
    // Alice's second device gets her messages; the device that sent does not.
    let mut a2 = Participant::join(&chat, "lobby", ALICE).await;
    a.say("from device one").await;
    loop {
        let (_, body) = a2.message().await;
        if body.ends_with(b"from device one") {
            break;
        }
    }
    assert!(a.quiet_for(200).await);
}

#[tokio::test]
async fn refusals_carry_their_status() {
    let chat = start_chat(ChatOptions { max_message_size: 1000, ..ChatOptions::default() }).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let tid = a.send_body("text/plain", b"hi").await;
    assert_eq!(a.status_of(tid).await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let tid = a.send_body("message/cpim", b"no blank line").await;
    assert_eq!(a.status_of(tid).await, StatusCode::BAD_REQUEST);
    let spoof = b.cpim(None, "text/plain", b"I am bob");
    let tid = a.send_body("message/cpim", &spoof).await;
    assert_eq!(a.status_of(tid).await, StatusCode::FORBIDDEN);
    let big = a.cpim(None, "text/plain", &[b'x'; 2000]);
    let tid = a.send_body("message/cpim", &big).await;
    assert_eq!(a.status_of(tid).await, StatusCode::MESSAGE_TOO_LARGE);
    assert!(b.quiet_for(300).await, "nothing refused reaches the room");
    // The session survives all of that.
    let tid = a.say("still here").await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    assert!(b.message().await.1.ends_with(b"still here"));
}

#[tokio::test]
async fn private_messages_reach_every_device_of_one_user() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let mut b2 = Participant::join(&chat, "lobby", BOB).await;
    let mut c = Participant::join(&chat, "lobby", CAROL).await;
    let body = a.cpim(Some(BOB), "text/plain", b"psst");
    let tid = a.send_body("message/cpim", &body).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    for p in [&mut b, &mut b2] {
        let cpim = Cpim::parse(&p.message().await.1).unwrap();
        assert_eq!(cpim.to().unwrap()[0].uri, BOB);
        assert_eq!(&cpim.body[..], b"psst");
    }
    assert!(c.quiet_for(300).await, "not for carol");
    let body = a.cpim(Some("sip:nobody@example.com"), "text/plain", b"?");
    let tid = a.send_body("message/cpim", &body).await;
    assert_eq!(a.status_of(tid).await, StatusCode::NOT_FOUND);

    let chat = start_chat(ChatOptions { private_messages: false, ..ChatOptions::default() }).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let _b = Participant::join(&chat, "lobby", BOB).await;
    let body = a.cpim(Some(BOB), "text/plain", b"psst");
    let tid = a.send_body("message/cpim", &body).await;
    assert_eq!(a.status_of(tid).await, StatusCode::PRIVATE_MESSAGES_NOT_SUPPORTED);
}

#[tokio::test]
async fn nicknames() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let mut a2 = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let tid = a.nickname(Some("Ally")).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    let tid = a2.nickname(Some("ally")).await;
    assert_eq!(a2.status_of(tid).await, StatusCode::OK, "the same user's devices share a nickname");
    let tid = b.nickname(Some("ＡＬＬＹ")).await;
    assert_eq!(b.status_of(tid).await, StatusCode::NICKNAME_IN_USE, "look-alikes collide");
    let tid = b.nickname(Some("bad\u{202E}name")).await;
    assert_eq!(b.status_of(tid).await, StatusCode::BAD_NICKNAME);
    let tid = b.nickname(None).await;
    assert_eq!(b.status_of(tid).await, StatusCode::BAD_REQUEST, "Use-Nickname missing");
    a.say("hi").await;
    let cpim = Cpim::parse(&b.message().await.1).unwrap();
    assert_eq!(cpim.from().unwrap().name.as_deref(), Some("ally"), "display name = nickname");
    let tid = a.nickname(Some("")).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK, "an empty value releases it");
    let tid = b.nickname(Some("Ally")).await;
    assert_eq!(b.status_of(tid).await, StatusCode::OK);
}

/// A NICKNAME as msrplib writes it: `Use-Nickname` unquoted.
async fn unquoted_nickname(p: &Participant, name: &str) -> TransactionId {
    let tid = TransactionId::random();
    let frame = format!(
        "MSRP {tid} NICKNAME\r\nTo-Path: {}\r\nFrom-Path: {}\r\nUse-Nickname: {name}\r\n-------{tid}$\r\n",
        p.remote, p.local
    );
    p.write(Bytes::from(frame)).await;
    tid
}

#[tokio::test]
async fn unquoted_nicknames_are_judged_like_quoted_ones() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let tid = unquoted_nickname(&a, "Ally").await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK, "sipsimple's form is accepted");
    let tid = unquoted_nickname(&b, "ＡＬＬＹ").await;
    assert_eq!(b.status_of(tid).await, StatusCode::NICKNAME_IN_USE, "normalised like a quoted one");
    let tid = unquoted_nickname(&b, "bad\u{202E}name").await;
    assert_eq!(b.status_of(tid).await, StatusCode::BAD_NICKNAME);
    let tid = unquoted_nickname(&b, "Bob Two").await;
    assert_eq!(b.status_of(tid).await, StatusCode::OK);
    a.say("hi").await;
    let cpim = Cpim::parse(&b.message().await.1).unwrap();
    assert_eq!(cpim.from().unwrap().name.as_deref(), Some("Ally"));
}

#[tokio::test]
async fn history_is_replayed_to_a_late_joiner() {
    let chat = start_chat(ChatOptions { history_size: 2, ..ChatOptions::default() }).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    for text in ["one", "two", "three"] {
        let tid = a.say(text).await;
        assert_eq!(a.status_of(tid).await, StatusCode::OK);
    }
    let typing = a.cpim(None, "application/im-iscomposing+xml", b"<isComposing/>");
    let tid = a.send_body("message/cpim", &typing).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    for want in ["two", "three"] {
        let cpim = Cpim::parse(&b.message().await.1).unwrap();
        assert_eq!(cpim.from().unwrap().uri, ALICE, "original sender");
        assert!(cpim.datetime().is_some());
        assert_eq!(&cpim.body[..], want.as_bytes());
    }
    assert!(b.quiet_for(300).await, "is-composing is not history");
}

/// Joins `room` as `user` over a raw socket, binds with an empty SEND, and returns the first
/// frame the server sends back (msrplib refuses anything before the 200 to its binding SEND).
async fn first_frame_after_binding(chat: &msrp_chat::Chat, user: &str) -> (TransactionId, msrp::Message) {
    use msrp::header::{Header, MessageId, Path};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let local = Participant::local_uri();
    let joined = chat
        .join(msrp_chat::JoinRequest {
            room: "lobby".into(),
            identity: msrp_chat::Identity::new(user, None).unwrap(),
            offer: Bytes::from(common::offer(local.as_str(), "active")),
            device: None,
            on_end: Box::new(|| {}),
        })
        .await
        .expect("join accepted");
    let remote = common::answer_path(&joined.answer);
    let mut tcp =
        tokio::net::TcpStream::connect((remote.first().host(), remote.first().port().unwrap())).await.unwrap();
    let bind = msrp::Request::new(TransactionId::random(), msrp::Method::Send)
        .with(Header::ToPath(remote))
        .with(Header::FromPath(Path::single(local)))
        .with(Header::MessageId(MessageId::random()));
    let mut out = bytes::BytesMut::new();
    msrp::encode::encode_request(&bind, None, msrp::Continuation::Complete, &mut out).unwrap();
    tcp.write_all(&out).await.unwrap();
    let mut dec = msrp::Decoder::default();
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(msrp::Event::Head(m)) = dec.decode(&mut buf).unwrap() {
            return (bind.tid, m);
        }
        let n = tokio::time::timeout(common::WAIT, tcp.read_buf(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binding_send_is_answered_before_history_is_replayed() {
    // Two workers: the writer task that replays history runs beside the one answering.
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    for i in 0..50 {
        let tid = a.say(&format!("message {i}")).await;
        assert_eq!(a.status_of(tid).await, StatusCode::OK);
    }
    // Before the fix, the replay raced the 200 and won most of the time.
    for _ in 0..20 {
        let (tid, first) = first_frame_after_binding(&chat, BOB).await;
        match first {
            msrp::Message::Response(r) => assert_eq!((r.tid, r.status), (tid, StatusCode::OK)),
            msrp::Message::Request(r) => panic!("{} {} arrived before the binding 200", r.method, r.tid),
        }
    }
}

#[tokio::test]
async fn a_large_room_message_goes_out_in_one_chunk() {
    // sipsimple cannot reassemble a chat message split into chunks (issue 10, item 10).
    let chat = start_chat(ChatOptions::default()).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let text = "x".repeat(150_000);
    a.say(&text).await;
    loop {
        if let Got::Send { body, chunks, .. } = b.next().await
            && !body.is_empty()
            && !common::is_notice(&body)
        {
            assert_eq!(&Cpim::parse(&body).unwrap().body[..], text.as_bytes());
            assert_eq!(chunks, 1, "one chunk, as sent");
            break;
        }
    }
}

#[tokio::test]
async fn otr_goes_nowhere_and_stays_out_of_history() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    for text in ["?OTRv3?", "?OTR:AAMDJ+MVmSfjFZcAAAAAAQAAAAIAAADA"] {
        let tid = a.say(text).await;
        assert_eq!(a.status_of(tid).await, StatusCode::OK, "the sender is not refused");
    }
    let body = a.cpim(Some(BOB), "text/plain", b"?OTR:AAMD");
    let tid = a.send_body("message/cpim", &body).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    assert!(b.quiet_for(300).await, "no OTR reaches the room");
    a.say("plain").await;
    assert_eq!(&Cpim::parse(&b.message().await.1).unwrap().body[..], b"plain");
    let mut c = Participant::join(&chat, "lobby", CAROL).await;
    assert_eq!(&Cpim::parse(&c.message().await.1).unwrap().body[..], b"plain", "history holds no OTR");
    assert!(c.quiet_for(300).await);
}

#[tokio::test]
async fn is_composing_goes_out_without_reports() {
    let chat = start_chat(ChatOptions::default()).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let typing = a.cpim(None, "application/im-iscomposing+xml", b"<isComposing/>");
    a.send_body("message/cpim", &typing).await;
    let (req, _) = b.message().await;
    assert_eq!(req.headers.success_report(), msrp::header::SuccessReport::No);
    assert_eq!(req.headers.failure_report(), msrp::header::FailureReport::No);
}

#[tokio::test]
async fn large_messages_go_out_in_chunks_and_others_interleave() {
    let opts =
        ChatOptions { chunk_size: 4096, max_message_size: 16 << 20, queue_bytes: 64 << 20, ..ChatOptions::default() };
    let chat = start_chat(opts).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let c = Participant::join(&chat, "lobby", CAROL).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Bob stops reading, so the server is stuck partway through the 8 MB message for him
    // (more than the kernel buffers hold) when Carol's short one arrives.
    b.stall();
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    let tid = a.send_body("message/cpim", &a.cpim(None, "application/octet-stream", &big)).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK, "accepted before the short one is sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.say("small").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.resume();
    let mut order = Vec::new();
    while order.len() < 2 {
        let (body, chunks) = loop {
            if let Got::Send { body, chunks, .. } = b.next().await {
                break (body, chunks);
            }
        };
        if body.is_empty() || common::is_notice(&body) {
            continue;
        }
        let cpim = Cpim::parse(&body).unwrap();
        if cpim.body.len() == big.len() {
            assert!(cpim.body[..] == big[..], "the large message arrives byte-exact");
            assert!(chunks > 1000, "sent in chunks of at most 4096 bytes ({chunks})");
        }
        order.push(cpim.body.len());
    }
    assert_eq!(order, [5, big.len()], "the short message went between the large one's chunks");
}

#[tokio::test]
async fn every_chunk_of_a_message_too_large_gets_413() {
    let chat = start_chat(ChatOptions { max_message_size: 1000, ..ChatOptions::default() }).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let body = a.cpim(None, "text/plain", &[b'z'; 3000]);
    let id = msrp::header::MessageId::random();
    let total = body.len() as u64;
    let mut statuses = Vec::new();
    for (i, piece) in body.chunks(800).enumerate() {
        let start = (i * 800) as u64 + 1;
        let last = start - 1 + piece.len() as u64 == total;
        let req = msrp::Request::new(msrp::message::TransactionId::random(), msrp::Method::Send)
            .with(msrp::Header::MessageId(id.clone()))
            .with(msrp::Header::ByteRange(msrp::header::ByteRange::chunk(start, piece.len() as u64, Some(total))));
        let tid = req.tid;
        a.send_chunk(req, "message/cpim", piece, last).await;
        statuses.push(a.status_of(tid).await);
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::MESSAGE_TOO_LARGE), "{statuses:?}");
    let tid = a.say("small is fine").await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
}

#[tokio::test]
async fn a_481_from_the_participant_ends_its_session() {
    let chat = start_chat(ChatOptions::default()).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    b.answer_with(Some(StatusCode::SESSION_DOES_NOT_EXIST));
    a.say("are you there?").await;
    assert!(b.closed_within(Duration::from_secs(5)).await, "the server ended the session and closed");
    assert_eq!(chat.session_count(), 1);
}

#[tokio::test]
async fn a_stalled_participant_is_dropped_and_the_room_goes_on() {
    let chat = start_chat(ChatOptions { queue_bytes: 256 * 1024, ..ChatOptions::default() }).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let slow = Participant::join(&chat, "lobby", CAROL).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    slow.stall();
    let sessions = chat.session_count();
    let filler = "x".repeat(32 * 1024);
    // In step with bob, so that only the stalled participant falls behind; 1000 × 32 KiB is
    // more than the kernel buffers of the stalled connection and its queue hold together.
    let mut sent = 0;
    while chat.session_count() == sessions {
        assert!(sent < 1000, "the stalled participant was never dropped");
        a.say(&format!("{sent} {filler}")).await;
        let (_, body) = b.message().await;
        assert!(Cpim::parse(&body).unwrap().body.starts_with(format!("{sent} ").as_bytes()), "in order, none lost");
        sent += 1;
    }
    assert_eq!(chat.session_count(), sessions - 1);
    let mut slow = slow;
    assert!(slow.closed_within(Duration::from_secs(10)).await, "the stalled participant's connection is closed");
    for i in sent..sent + 20 {
        a.say(&format!("{i} after")).await;
        assert!(b.message().await.1.ends_with(format!("{i} after").as_bytes()), "the others carry on");
    }
}

#[tokio::test]
async fn the_room_empties_when_the_last_one_leaves() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let c = Participant::join(&chat, "lobby", CAROL).await;
    assert_eq!(chat.room_count(), 1);
    let tid = a.nickname(Some("Ally")).await;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
    chat.leave(&a.session_id);
    chat.leave(&c.session_id);
    // Named as the room knew them: by nickname (released by leaving), else by URI.
    let mut left = Vec::new();
    while left.len() < 2 {
        if let Got::Send { body, .. } = b.next().await {
            let text = String::from_utf8_lossy(&body).into_owned();
            if let Some(who) = text.lines().last().and_then(|l| l.strip_suffix(" left")) {
                left.push(who.to_owned());
            }
        }
    }
    assert_eq!(left, ["Ally", "sip:carol@example.com"]);
    chat.leave(&b.session_id);
    assert_eq!((chat.room_count(), chat.session_count()), (0, 0));
}

#[tokio::test]
async fn unknown_sessions_get_481() {
    let chat = start_chat(ChatOptions::default()).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let remote = a.remote.first().with_session_id(Some("nosuchsession")).unwrap();
    let mut stranger =
        Participant::connect(BOB, a.local.clone(), msrp::header::Path::single(remote), String::new()).await;
    let tid = stranger.say("hello?").await;
    assert_eq!(stranger.status_of(tid).await, StatusCode::SESSION_DOES_NOT_EXIST);
}

#[tokio::test]
async fn a_connection_that_carries_no_session_is_closed() {
    use tokio::io::AsyncReadExt;
    let chat = start_chat(ChatOptions { connect_timeout: Duration::from_millis(300), ..ChatOptions::default() }).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let port = a.remote.first().port().unwrap();
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.expect("closed in time").unwrap();
    assert_eq!(n, 0, "closed by the server");
    // The participant's own connection, used, stays.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(chat.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_never_overshoot_max_sessions() {
    let chat = start_chat(ChatOptions { max_sessions: 5, ..ChatOptions::default() }).await;
    // Twenty INVITEs at once on a multi-threaded runtime, half of them to a room that does not
    // exist yet: exactly five get in.
    let joins: Vec<_> = (0..20)
        .map(|i| {
            let chat = chat.clone();
            tokio::spawn(async move {
                let local = Participant::local_uri();
                let room = if i % 2 == 0 { "lobby".to_owned() } else { format!("room{i}") };
                chat.join(msrp_chat::JoinRequest {
                    room,
                    identity: msrp_chat::Identity::new(&format!("sip:u{i}@example.com"), None).unwrap(),
                    offer: msrp::Bytes::from(common::offer(local.as_str(), "active")),
                    device: None,
                    on_end: Box::new(|| {}),
                })
                .await
                .is_ok()
            })
        })
        .collect();
    let mut admitted = 0;
    for j in joins {
        admitted += usize::from(j.await.unwrap());
    }
    assert_eq!(admitted, 5);
    assert_eq!(chat.session_count(), 5);
    assert!(chat.room_count() <= 5, "refused joins leave no empty rooms behind");
}

#[tokio::test]
async fn a_participant_that_stops_reading_is_dropped_by_the_write_timeout() {
    // Queues far larger than what is sent: only the write timeout can end the session.
    let opts = ChatOptions {
        write_timeout: Duration::from_millis(500),
        queue_messages: 100_000,
        queue_bytes: 1 << 30,
        ..ChatOptions::default()
    };
    let chat = start_chat(opts).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let slow = Participant::join(&chat, "lobby", BOB).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    slow.stall();
    let filler = "x".repeat(512 * 1024);
    let mut sent = 0;
    // 512 KiB at a time until the kernel's buffers are full and a write waits past the timeout.
    while chat.session_count() == 2 {
        assert!(sent < 200, "the write timeout never fired");
        a.say(&filler).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat.session_count(), 1, "only the stalled participant's session ended");
    let mut slow = slow;
    assert!(slow.closed_within(Duration::from_secs(5)).await, "its connection is closed");
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once() {
    use tokio::io::AsyncReadExt;
    let chat = start_chat(ChatOptions { max_connections: 1, ..ChatOptions::default() }).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let port = a.remote.first().port().unwrap();
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await.expect("closed at once").unwrap();
    assert_eq!(n, 0, "the second connection is closed");
    // The first still works.
    let tid = a.say("still here").await;
    let mut a = a;
    assert_eq!(a.status_of(tid).await, StatusCode::OK);
}

/// `message_rate` (issue 14): a participant over it is read more slowly; nothing is lost, and
/// another participant's messages pass at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_over_its_message_rate_is_read_more_slowly() {
    let opts = ChatOptions {
        message_rate: Some(5),
        message_rate_domains: [("vip.example".to_owned(), 1000)].into_iter().collect(),
        ..ChatOptions::default()
    };
    let chat = start_chat(opts).await;
    let a = Participant::join(&chat, "lobby", ALICE).await;
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let v = Participant::join(&chat, "lobby", "sip:vip@vip.example").await;
    // Alice sends 15 at once: 5 within the first second's burst, then 5 a second.
    let started = std::time::Instant::now();
    for i in 0..15 {
        a.say(&format!("flood {i}")).await;
    }
    // The VIP's domain has its own, higher rate: 15 pass at once.
    for i in 0..15 {
        v.say(&format!("vip {i}")).await;
    }
    let (mut flood, mut vip) = (0, 0);
    let mut vip_done = None;
    while flood < 15 || vip < 15 {
        let (_, body) = b.message().await;
        let text = Cpim::parse(&body).unwrap().body;
        if text.starts_with(b"flood") {
            assert_eq!(&text[..], format!("flood {flood}").as_bytes(), "in order, none lost");
            flood += 1;
        } else {
            vip += 1;
            if vip == 15 {
                vip_done = Some(started.elapsed());
            }
        }
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_700), "alice was not slowed: {took:?}");
    assert!(vip_done.unwrap() < Duration::from_millis(1_000), "the VIP waited: {vip_done:?}");
}

/// The welcome (issue 15): from the room, before the history it announces; never stored;
/// off when configured so.
#[tokio::test]
async fn joiners_are_welcomed_by_the_room() {
    let chat = start_chat(ChatOptions::default()).await;
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let (_, first) = a.message_or_notice().await;
    let first = Cpim::parse(&first).unwrap();
    assert_eq!(first.from().unwrap().uri, "sip:lobby@chat.test", "from the room");
    assert_eq!(&first.body[..], b"Welcome to lobby: you are the first one here.");
    for text in ["one", "two"] {
        let tid = a.say(text).await;
        assert_eq!(a.status_of(tid).await, StatusCode::OK);
    }
    let mut b = Participant::join(&chat, "lobby", BOB).await;
    let (_, welcome) = b.message_or_notice().await;
    assert_eq!(
        &Cpim::parse(&welcome).unwrap().body[..],
        b"Welcome to lobby: 2 participants are here. The last 2 messages follow."
    );
    for text in ["one", "two"] {
        assert_eq!(&Cpim::parse(&b.message().await.1).unwrap().body[..], text.as_bytes(), "history after it");
    }
    // Carol's history is Alice's two messages: no welcome among them.
    let mut c = Participant::join(&chat, "lobby", CAROL).await;
    let (_, welcome) = c.message_or_notice().await;
    assert!(Cpim::parse(&welcome).unwrap().body.ends_with(b"The last 2 messages follow."));

    let quiet = start_chat(ChatOptions { welcome: false, ..ChatOptions::default() }).await;
    let mut d = Participant::join(&quiet, "lobby", ALICE).await;
    let _e = Participant::join(&quiet, "lobby", BOB).await;
    let (_, joined) = d.message_or_notice().await;
    assert!(String::from_utf8_lossy(&joined).contains("joined"), "no welcome: the first thing is Bob's join notice");
}

/// A join's outcome without connecting (for refusals).
async fn try_join(chat: &msrp_chat::Chat, room: &str, user: &str) -> Result<(), u16> {
    let local = Participant::local_uri();
    chat.join(msrp_chat::JoinRequest {
        room: room.into(),
        identity: msrp_chat::identity::Identity::new(user, None).unwrap(),
        offer: Bytes::from(common::offer(local.as_str(), "active")),
        device: None,
        on_end: Box::new(|| {}),
    })
    .await
    .map(|_| ())
    .map_err(|e| e.sip_status())
}

/// `[chat.room.NAME]` (issue 15 item 5): access lists, a participant cap, per-room history and
/// private messages, a subject in the welcome; other rooms take the defaults.
#[tokio::test]
async fn a_room_policy_admits_caps_and_configures_its_room() {
    let staff = msrp_chat::RoomSettings {
        allow: vec!["example.com".into(), "sip:guest@other.org".into()],
        deny: vec!["sip:mallory@example.com".into()],
        max_participants: Some(2),
        history_size: Some(1),
        subject: Some("Staff only".into()),
        private_messages: Some(false),
        refer: None,
    };
    let opts =
        ChatOptions { room_settings: [("lobby".to_owned(), staff)].into_iter().collect(), ..ChatOptions::default() };
    let chat = start_chat(opts).await;
    assert_eq!(try_join(&chat, "lobby", "sip:mallory@example.com").await, Err(403), "denied by name");
    assert_eq!(try_join(&chat, "lobby", "sip:eve@other.org").await, Err(403), "not in the allow list");
    assert_eq!(try_join(&chat, "Other-Room", "sip:eve@other.org").await, Ok(()), "other rooms: defaults");
    let mut a = Participant::join(&chat, "lobby", ALICE).await;
    let (_, welcome) = a.message_or_notice().await;
    assert_eq!(&Cpim::parse(&welcome).unwrap().body[..], b"Welcome to lobby (Staff only): you are the first one here.");
    let _g = Participant::join(&chat, "lobby", "sip:guest@other.org").await;
    assert_eq!(try_join(&chat, "lobby", BOB).await, Err(486), "two participants at most");
    let _a2 = Participant::join(&chat, "lobby", ALICE).await; // another device of Alice: still two users
    // Private messages are off here (428), and joiners get one message of history.
    let private = a.cpim(Some("sip:guest@other.org"), "text/plain", b"psst");
    let tid = a.send_body("message/cpim", &private).await;
    assert_eq!(a.status_of(tid).await, StatusCode(428));
    for text in ["one", "two"] {
        let tid = a.say(text).await;
        assert_eq!(a.status_of(tid).await, StatusCode::OK);
    }
    let mut a3 = Participant::join(&chat, "lobby", ALICE).await;
    let (_, welcome) = a3.message_or_notice().await;
    assert_eq!(
        &Cpim::parse(&welcome).unwrap().body[..],
        b"Welcome to lobby (Staff only): 2 participants are here. The last message follows.",
        "users counted once; history_size = 1"
    );
    assert_eq!(&Cpim::parse(&a3.message().await.1).unwrap().body[..], b"two");
}

/// A reload's room policies (SIGHUP in msrpd) decide the next joins at once; who is in stays.
#[tokio::test]
async fn new_room_policies_decide_the_next_joins_and_keep_who_is_in() {
    let chat = start_chat(ChatOptions::default()).await;
    let _alice = Participant::join(&chat, "lobby", ALICE).await;
    let deny = msrp_chat::RoomSettings { deny: vec!["example.com".into()], ..Default::default() };
    chat.set_room_settings([("Lobby".to_owned(), deny)].into_iter().collect());
    assert_eq!(try_join(&chat, "lobby", "sip:bob@example.com").await, Err(403));
    assert_eq!(try_join(&chat, "lobby", "sip:eve@other.org").await, Ok(()));
    assert_eq!(chat.session_count(), 2, "Alice, already in, stays");
    chat.set_room_settings(Default::default());
    assert_eq!(try_join(&chat, "lobby", "sip:bob@example.com").await, Ok(()));
}
