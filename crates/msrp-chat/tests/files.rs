//! Files shared in a room (RFC 5547): an upload by a participant's own call, the notice and
//! the offer to the others (the focus calls them with the file), a pull by hash, and the
//! refusals. SIP through rsipstack's client and a callee written from SIP's text; MSRP with
//! the project's test participant.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::callee::Callee;
use common::sip::start_sip_chat;
use common::{Got, Participant, until};
use msrp::header::{ByteRange, MessageId, SuccessReport};
use msrp::message::TransactionId;
use msrp::{Header, Method, Request, StatusCode};
use msrp_chat::files::FileOptions;
use msrp_chat::files::selector::{FileSelector, hash_text};
use msrp_chat::{ChatOptions, files::selector};
use rsipstack::sip::Transport;
use sha1::Digest;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";

fn file_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("msrpd-files-{}", msrp::id::random_ident()))
}

fn options(dir: &std::path::Path, proxy: Option<std::net::SocketAddr>) -> ChatOptions {
    ChatOptions {
        files: FileOptions { dir: Some(dir.to_owned()), max_file_size: 1024 * 1024, ..Default::default() },
        outbound_proxy: proxy.map(|a| format!("sip:{a}")),
        ..Default::default()
    }
}

/// Some bytes that are not all alike (chunk mix-ups show).
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn selector_of(name: &str, data: &[u8]) -> FileSelector {
    FileSelector {
        name: Some(name.into()),
        content_type: Some("application/octet-stream".into()),
        size: Some(data.len() as u64),
        sha1: Some(sha1::Sha1::digest(data).into()),
    }
}

/// A file stream offer: `direction` is the participant's.
fn file_offer(path: &str, direction: &str, sel: &FileSelector) -> String {
    format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message 9 TCP/MSRP *\r\na=accept-types:*\r\na=path:{path}\r\na={direction}\r\n\
         a=file-selector:{}\r\na=setup:active\r\n",
        sel.to_sdp()
    )
}

/// Sends `data` as one file message in chunks of `chunk` bytes, asking for success REPORTs;
/// returns the status of each chunk and the last byte the REPORTs covered.
async fn upload(p: &mut Participant, data: &[u8], chunk: usize) -> (Vec<StatusCode>, u64) {
    let id = MessageId::random();
    let mut tids = Vec::new();
    for (i, piece) in data.chunks(chunk).enumerate() {
        let start = (i * chunk) as u64 + 1;
        let req = Request::new(TransactionId::random(), Method::Send)
            .with(Header::MessageId(id.clone()))
            .with(Header::SuccessReport(SuccessReport::Yes))
            .with(Header::ByteRange(ByteRange::chunk(start, piece.len() as u64, Some(data.len() as u64))));
        tids.push(req.tid);
        let last = start + piece.len() as u64 - 1 == data.len() as u64;
        p.send_chunk(req, "application/octet-stream", piece, last).await;
    }
    let mut statuses = Vec::new();
    let mut reported = 0;
    while statuses.len() < tids.len() {
        match p.next().await {
            Got::Response(r) if tids.contains(&r.tid) => statuses.push(r.status),
            Got::Report(rep) => reported = rep.headers.byte_range().and_then(|r| r.end).unwrap_or(0).max(reported),
            _ => {}
        }
    }
    if statuses.iter().all(|s| *s == StatusCode::OK) {
        while reported < data.len() as u64 {
            if let Got::Report(rep) = p.next().await {
                reported = rep.headers.byte_range().and_then(|r| r.end).unwrap_or(0).max(reported);
            }
        }
    }
    (statuses, reported)
}

/// The whole file a participant receives (chunks gathered by the test participant).
async fn received_file(p: &mut Participant) -> (Request, Bytes) {
    loop {
        if let Got::Send { req, body, .. } = p.next().await
            && !body.is_empty()
        {
            return (req, body);
        }
    }
}

/// Alice in the lobby by a SIP call over `t`: the call, its chat offer and her participant.
async fn chat_call(
    server: &common::sip::SipChat,
    uac: &common::sip::Uac,
    t: Transport,
) -> (rsipstack::dialog::invite_dialog::InviteDialog, String, Participant) {
    let chat_local = Participant::local_uri();
    let chat_offer = common::offer(chat_local.as_str(), "active");
    let (dialog, ok) = uac.invite(&server.target("lobby", t), ALICE, Some(chat_offer.clone()), None).await;
    assert_eq!(ok.status_code.code(), 200);
    let alice = Participant::answered(ALICE, chat_local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    (dialog, chat_offer, alice)
}

/// A re-INVITE with `sdp` on `dialog`: its 200's body.
async fn reinvite(dialog: &rsipstack::dialog::invite_dialog::InviteDialog, sdp: String) -> String {
    let h = vec![rsipstack::sip::Header::ContentType("application/sdp".into())];
    let resp = dialog.reinvite(Some(h), Some(sdp.into_bytes())).await.unwrap().unwrap();
    assert_eq!(resp.status_code.code(), 200);
    String::from_utf8_lossy(&resp.body).into_owned()
}

#[tokio::test]
async fn an_uploaded_file_is_checked_announced_offered_to_the_others_and_pulled_by_hash() {
    let dir = file_dir();
    let mut bob_phone = Callee::udp().await;
    let server = start_sip_chat(options(&dir, Some(bob_phone.addr)), true).await;
    let mut bob = Participant::join(&server.chat, "lobby", BOB).await;
    let alice_chat = Participant::join(&server.chat, "lobby", ALICE).await;
    let uac = common::sip::start_uac(&server.token).await;
    let data = content(150_000);
    let sel = selector_of("report.pdf", &data);

    // Alice calls the room with the file (her stream sendonly).
    let local = Participant::local_uri();
    let room = server.target("lobby", Transport::Udp);
    let (_call, ok) = uac.invite(&room, ALICE, Some(file_offer(local.as_str(), "sendonly", &sel)), None).await;
    assert_eq!(ok.status_code.code(), 200);
    // Not a conference call: no `;isfocus`, so AG's SDK does not subscribe to the room from it.
    let contact = ok.headers.iter().find_map(|h| match h {
        rsipstack::sip::Header::Contact(c) => Some(c.value().to_owned()),
        _ => None,
    });
    assert!(!contact.unwrap().contains("isfocus"));
    let answer = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(
        answer.contains("a=recvonly\r\n") && answer.contains(&format!("a=file-selector:{}", sel.to_sdp())),
        "{answer}"
    );
    let mut up = Participant::answered(ALICE, local, &answer, String::new()).await;
    let (statuses, reported) = upload(&mut up, &data, 50_000).await;
    assert_eq!((statuses, reported), (vec![StatusCode::OK; 3], data.len() as u64));
    // The focus hangs up the upload once it has the file.
    let (_, why) = uac.terminated().await;
    assert_eq!(why, "UasBye");
    until("the room holds the file", || server.chat.room_files("lobby") == [("report.pdf".to_owned(), 150_000)]).await;
    assert!(std::fs::read_dir(&dir).unwrap().count() == 1, "one file on disk");
    // A later joiner is told which files the room holds.
    let mut dave = Participant::join(&server.chat, "lobby", "sip:dave@example.com").await;
    let (_, welcome) = dave.message_or_notice().await;
    let welcome = String::from_utf8_lossy(&welcome);
    assert!(welcome.contains("Files shared here: report.pdf (146.5 KB)."), "{welcome}");
    server.chat.leave(&dave.session_id);
    // Conference-info names the room's files (AG's extension, what SylkServer sends).
    let mut watcher =
        common::subscriber::Subscriber::udp(server.addr(Transport::Udp), BOB, "sip:lobby@chat.test").await;
    assert_eq!(watcher.subscribe(Some(600)).await.status(), Some(200));
    let doc = watcher.notify().await.body;
    let xml = roxmltree::Document::parse(&doc).expect("well-formed");
    let file = xml.descendants().find(|n| n.tag_name().name() == "file").expect("a file resource");
    assert_eq!(file.tag_name().namespace(), Some("urn:ag-projects:xml:ns:conference-info"));
    assert_eq!((file.attribute("name"), file.attribute("size")), (Some("report.pdf"), Some("150000")));
    assert_eq!(file.attribute("hash"), Some(hash_text(&sel.sha1.unwrap()).as_str()));

    // Bob is told, and offered the file by a call from the room.
    loop {
        let (_, notice) = bob.message_or_notice().await;
        if String::from_utf8_lossy(&notice).contains("shared the file report.pdf (146.5 KB)") {
            break;
        }
    }
    let invite = bob_phone.expect("INVITE").await;
    assert!(invite.start.starts_with("INVITE sip:bob@example.com "), "{}", invite.start);
    assert!(invite.header("Subject").unwrap().contains("report.pdf"));
    assert!(!invite.header("Contact").unwrap().contains("isfocus"), "{:?}", invite.header("Contact"));
    assert!(
        invite.body.contains("a=sendonly") && invite.body.contains(&hash_text(&sel.sha1.unwrap())),
        "{}",
        invite.body
    );
    let bob_local = Participant::local_uri();
    let bob_answer = format!(
        "v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message 9 TCP/MSRP *\r\na=accept-types:*\r\na=path:{}\r\na=recvonly\r\na=setup:active\r\n",
        bob_local.as_str()
    );
    bob_phone.reply(&invite, 200, "OK", Some(&bob_answer)).await;
    bob_phone.expect("ACK").await;
    let mut bob_file = Participant::answered(BOB, bob_local, &invite.body, String::new()).await;
    let (req, got) = received_file(&mut bob_file).await;
    assert_eq!(got.as_ref(), data.as_slice(), "byte-exact");
    assert_eq!(req.headers.content_type().map(|c| c.essence().to_owned()).as_deref(), Some("application/octet-stream"));
    let bye = bob_phone.expect("BYE").await;
    bob_phone.reply(&bye, 200, "OK", None).await;

    // Anyone in the room can pull it by its hash (the participant's stream recvonly); this
    // one waits to be called (actpass): the focus dials it and binds with an empty SEND
    // before the file (AG's SDK takes the first request as the binding).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pull_local = msrp::Uri::parse(msrp::ByteString::from(format!("msrp://127.0.0.1:{port}/pull1;tcp"))).unwrap();
    let by_hash = FileSelector { name: None, content_type: None, size: None, sha1: sel.sha1 };
    let pull = file_offer(pull_local.as_str(), "recvonly", &by_hash).replace("a=setup:active", "a=setup:actpass");
    let (_pull, ok) = uac.invite(&room, BOB, Some(pull), None).await;
    assert_eq!(ok.status_code.code(), 200);
    let answer = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(answer.contains("a=sendonly") && answer.contains("name:\"report.pdf\""), "{answer}");
    let (tcp, _) = tokio::time::timeout(common::WAIT, listener.accept()).await.unwrap().unwrap();
    let (r, w) = tcp.into_split();
    let mut puller =
        Participant::over(BOB, pull_local, common::answer_path(&answer), String::new(), Box::new(r), Box::new(w));
    let Got::Send { req, body, .. } = puller.next().await else { panic!("expected the binding SEND") };
    assert!(body.is_empty() && req.headers.content_type().is_none(), "the binding comes first");
    assert_eq!(received_file(&mut puller).await.1.as_ref(), data.as_slice());
    uac.terminated().await;

    // The room's end takes its files.
    server.chat.leave(&bob.session_id);
    server.chat.leave(&alice_chat.session_id);
    until("the file is gone with the room", || std::fs::read_dir(&dir).unwrap().count() == 0).await;
    assert_eq!(server.chat.transfer_count(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn file_offers_are_refused_with_a_reason() {
    let dir = file_dir();
    let server = start_sip_chat(options(&dir, None), true).await;
    let uac = common::sip::start_uac(&server.token).await;
    let room = server.target("lobby", Transport::Udp);
    let small = content(10);
    let offer = |direction: &str, sel: &FileSelector| file_offer(Participant::local_uri().as_str(), direction, sel);

    // Nobody in the room: 480.
    let (_, r) = uac.invite(&room, ALICE, Some(offer("sendonly", &selector_of("a", &small))), None).await;
    assert_eq!(r.status_code.code(), 480);
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    // Someone not in it may neither share nor take: 403.
    let (_, r) = uac.invite(&room, BOB, Some(offer("sendonly", &selector_of("a", &small))), None).await;
    assert_eq!(r.status_code.code(), 403);
    // Larger than max_file_size: 488, and why.
    let big = FileSelector { size: Some(2 * 1024 * 1024), ..selector_of("big", &small) };
    let (_, r) = uac.invite(&room, ALICE, Some(offer("sendonly", &big)), None).await;
    assert_eq!(r.status_code.code(), 488);
    assert!(r.reason_phrase().unwrap_or("").contains("max_file_size"), "{:?}", r.reason_phrase());
    // A file the room does not hold: 404.
    let (_, r) = uac.invite(&room, ALICE, Some(offer("recvonly", &selector_of("nope", &small))), None).await;
    assert_eq!(r.status_code.code(), 404);

    // A file whose bytes do not match its hash: the last chunk gets 400 and nothing is kept.
    let wrong = FileSelector { sha1: Some([1; 20]), ..selector_of("wrong", &small) };
    let local = Participant::local_uri();
    let (_, ok) = uac.invite(&room, ALICE, Some(file_offer(local.as_str(), "sendonly", &wrong)), None).await;
    assert_eq!(ok.status_code.code(), 200);
    let mut up = Participant::answered(ALICE, local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    let (statuses, _) = upload(&mut up, &small, 100).await;
    assert_eq!(statuses, [StatusCode::BAD_REQUEST]);
    uac.terminated().await;
    assert!(server.chat.room_files("lobby").is_empty());
    until("nothing left on disk", || std::fs::read_dir(&dir).unwrap().count() == 0).await;

    // Uploads in progress count against the room's bounds: with room for one 6-byte file, a
    // second upload while the first is under way is refused at once (not dropped after its 200).
    let tight_dir = file_dir();
    let mut opts = options(&tight_dir, None);
    opts.files.max_room_bytes = 10;
    let tight = start_sip_chat(opts, true).await;
    let _a = Participant::join(&tight.chat, "lobby", ALICE).await;
    let tight_room = tight.target("lobby", Transport::Udp);
    let six = content(6);
    let (first_call, first) =
        uac.invite(&tight_room, ALICE, Some(offer("sendonly", &selector_of("one", &six))), None).await;
    assert_eq!(first.status_code.code(), 200);
    let (_, second) = uac.invite(&tight_room, ALICE, Some(offer("sendonly", &selector_of("two", &six))), None).await;
    assert_eq!(second.status_code.code(), 488);
    assert!(second.reason_phrase().unwrap_or("").contains("max_room_bytes"), "{:?}", second.reason_phrase());
    // The first one hung up before sending anything: its reservation comes back.
    first_call.bye().await.unwrap();
    until("the upload ended", || tight.chat.transfer_count() == 0).await;
    let (_, third) = uac.invite(&tight_room, ALICE, Some(offer("sendonly", &selector_of("three", &six))), None).await;
    assert_eq!(third.status_code.code(), 200, "room again for one");
    let _ = std::fs::remove_dir_all(tight_dir);

    // File sharing off (no directory): 488.
    let off = start_sip_chat(ChatOptions::default(), true).await;
    let _a = Participant::join(&off.chat, "lobby", ALICE).await;
    let (_, r) = uac
        .invite(&off.target("lobby", Transport::Udp), ALICE, Some(offer("sendonly", &selector_of("a", &small))), None)
        .await;
    assert_eq!(r.status_code.code(), 488);
    let _ = selector::hash_text(&[0; 20]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_recipient_that_does_not_read_slows_neither_the_chat_nor_another_transfer() {
    let dir = file_dir();
    let mut opts = options(&dir, None);
    opts.files.max_file_size = 8 * 1024 * 1024;
    opts.files.push = false;
    // Connections without a request for this long are closed, unless a file is going out on
    // them (the stuck recipient below sends nothing after its binding).
    opts.connect_timeout = Duration::from_secs(1);
    let server = start_sip_chat(opts, true).await;
    let alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let mut bob = Participant::join(&server.chat, "lobby", BOB).await;
    let uac = common::sip::start_uac(&server.token).await;
    let room = server.target("lobby", Transport::Udp);
    let data = content(3 * 1024 * 1024);
    let sel = selector_of("big.iso", &data);
    let local = Participant::local_uri();
    let (_, ok) = uac.invite(&room, ALICE, Some(file_offer(local.as_str(), "sendonly", &sel)), None).await;
    let mut up = Participant::answered(ALICE, local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    assert_eq!(upload(&mut up, &data, 64 * 1024).await.0, vec![StatusCode::OK; 48]);
    uac.terminated().await;
    until("the room holds it", || server.chat.room_files("lobby").len() == 1).await;

    // One puller stops reading at once; another pulls the same file.
    let pull = |local: &msrp::Uri| file_offer(local.as_str(), "recvonly", &selector_of("big.iso", &data));
    let stuck_local = Participant::local_uri();
    let (_, ok) = uac.invite(&room, BOB, Some(pull(&stuck_local)), None).await;
    let stuck = Participant::answered(BOB, stuck_local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    stuck.stall();
    let other_local = Participant::local_uri();
    let (_, ok) = uac.invite(&room, BOB, Some(pull(&other_local)), None).await;
    let mut other = Participant::answered(BOB, other_local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    assert_eq!(received_file(&mut other).await.1.as_ref(), data.as_slice());
    // The room's chat goes on meanwhile, and the stuck transfer is still waiting.
    alice.say("still here").await;
    assert!(bob.message().await.1.ends_with(b"still here"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.chat.transfer_count(), 1, "the stuck transfer is still on");
    drop(stuck);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_upload_that_stalls_or_is_hung_up_before_its_end_line_leaves_nothing() {
    let dir = file_dir();
    let mut opts = options(&dir, None);
    // A transfer that moves nothing for this long is ended.
    opts.write_timeout = Duration::from_secs(1);
    opts.files.max_user_transfers = 1;
    let server = start_sip_chat(opts, true).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let uac = common::sip::start_uac(&server.token).await;
    let room = server.target("lobby", Transport::Udp);
    let data = content(100_000);
    let sel = selector_of("half.bin", &data);

    // Half the file, then silence: the focus gives up, hangs up and removes the part.
    let local = Participant::local_uri();
    let (_, ok) = uac.invite(&room, ALICE, Some(file_offer(local.as_str(), "sendonly", &sel)), None).await;
    let up = Participant::answered(ALICE, local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    let first = Request::new(TransactionId::random(), Method::Send)
        .with(Header::MessageId(MessageId::random()))
        .with(Header::ByteRange(ByteRange::chunk(1, 50_000, Some(100_000))));
    up.send_chunk(first, "application/octet-stream", &data[..50_000], false).await;
    until("a part on disk", || std::fs::read_dir(&dir).unwrap().count() == 1).await;
    // One upload at a time for this user (max_user_transfers): a second call is refused.
    let other = Participant::local_uri();
    let (_, busy) = uac.invite(&room, ALICE, Some(file_offer(other.as_str(), "sendonly", &sel)), None).await;
    assert_eq!(busy.status_code.code(), 486);
    while uac.terminated().await.1 != "UasBye" {}
    until("the part removed", || std::fs::read_dir(&dir).unwrap().count() == 0 && server.chat.transfer_count() == 0)
        .await;

    // Every byte sent, then a BYE before the end line: the end line finds the transfer gone
    // (481), and the room gets no file.
    let local = Participant::local_uri();
    let (call, ok) = uac.invite(&room, ALICE, Some(file_offer(local.as_str(), "sendonly", &sel)), None).await;
    let mut up = Participant::answered(ALICE, local, &String::from_utf8_lossy(&ok.body), String::new()).await;
    let mut req = Request::new(TransactionId::random(), Method::Send)
        .with(Header::MessageId(MessageId::random()))
        .with(Header::ByteRange(ByteRange::whole(100_000)))
        .with(Header::ToPath(up.remote.clone()))
        .with(Header::FromPath(msrp::header::Path::single(up.local.clone())))
        .with(Header::ContentType(
            msrp::header::ContentType::parse(&msrp::ByteString::from_static("application/octet-stream")).unwrap(),
        ));
    req.tid = TransactionId::random();
    let mut frame = bytes::BytesMut::new();
    msrp::encode::encode_request(&req, Some(&data), msrp::Continuation::Complete, &mut frame).unwrap();
    let cut = frame.len() - format!("-------{}$\r\n", req.tid).len();
    up.write(frame.split_to(cut).freeze()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.bye().await.unwrap();
    up.write(frame.freeze()).await;
    let status = loop {
        if let Got::Response(r) = up.next().await
            && r.tid == req.tid
        {
            break r.status;
        }
    };
    assert_eq!(status, StatusCode::SESSION_DOES_NOT_EXIST);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.chat.room_files("lobby").is_empty());
    until("nothing on disk", || std::fs::read_dir(&dir).unwrap().count() == 0).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_file_added_to_a_chat_call_by_reinvite_goes_to_the_room_and_the_call_stays_over_tcp() {
    let dir = file_dir();
    let server = start_sip_chat(options(&dir, None), true).await;
    let _bob = Participant::join(&server.chat, "lobby", BOB).await;
    let uac = common::sip::start_uac(&server.token).await;
    let (dialog, chat_offer, mut alice) = chat_call(&server, &uac, Transport::Tcp).await;
    let data = content(70_000);
    let sel = selector_of("notes.txt", &data);
    let file_local = Participant::local_uri();
    let file_part = file_offer(file_local.as_str(), "sendonly", &sel);
    let with_file = format!("{chat_offer}{}", &file_part[file_part.find("m=").unwrap()..]);

    // The chat stream as before, the file stream accepted beside it.
    let answer = reinvite(&dialog, with_file.clone()).await;
    let file_section = &answer[answer.rfind("m=message").unwrap()..];
    assert!(answer.matches("m=message ").count() == 2 && !answer.contains("m=message 0"), "{answer}");
    assert!(file_section.contains("a=recvonly") && file_section.contains("name:\"notes.txt\""), "{answer}");
    let mut up = Participant::answered(ALICE, file_local, file_section, String::new()).await;
    assert_eq!(upload(&mut up, &data, 30_000).await.0, vec![StatusCode::OK; 3]);
    until("the room holds it", || server.chat.room_files("lobby") == [("notes.txt".to_owned(), 70_000)]).await;
    // The chat call stays up and goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.sip.call_count(), 1);
    let tid = alice.say("did you get it?").await;
    assert_eq!(alice.status_of(tid).await, StatusCode::OK);
    // The same offer again: the same answer for the file stream, no new transfer.
    let again = reinvite(&dialog, with_file).await;
    assert_eq!(&again[again.rfind("m=message").unwrap()..], file_section);
    // An offer without it: only the chat.
    assert_eq!(reinvite(&dialog, chat_offer).await.matches("m=message ").count(), 1);
    assert_eq!(server.chat.transfer_count(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_file_shared_over_sip_and_msrp_over_tls_with_digest() {
    let dir = file_dir();
    let (server_tls, client_tls, pem, _) = common::tls_for("localhost");
    let server = common::sip::start_sip_chat_tls(options(&dir, None), false, Some(server_tls)).await;
    let _alice = Participant::join(&server.chat, "lobby", ALICE).await;
    let uac = common::sip::start_uac_tls(&server.token, Some(pem)).await;
    let data = content(90_000);
    let sel = selector_of("secret.bin", &data);
    let local =
        msrp::Uri::parse(msrp::ByteString::from(format!("msrps://127.0.0.1:9/{};tcp", msrp::id::random_session_id())))
            .unwrap();
    let sdp = file_offer(local.as_str(), "sendonly", &sel).replace("TCP/MSRP", "TCP/TLS/MSRP");
    let target = server.target("lobby", Transport::Tls);
    let (_, ok) = uac.invite(&target, ALICE, Some(sdp), Some(("alice", "alicepw"))).await;
    assert_eq!(ok.status_code.code(), 200, "challenged, then admitted");
    let answer = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(answer.contains("TCP/TLS/MSRP") && answer.contains("a=path:msrps://"), "{answer}");
    let remote = common::answer_path(&answer);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", remote.first().port().unwrap())).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_tls).connect(name, tcp).await.unwrap();
    let (r, w) = tokio::io::split(tls);
    let mut up = Participant::over(ALICE, local, remote, String::new(), Box::new(r), Box::new(w));
    up.bind().await;
    assert_eq!(upload(&mut up, &data, 40_000).await.0, vec![StatusCode::OK; 3]);
    until("the room holds it", || server.chat.room_files("lobby") == [("secret.bin".to_owned(), 90_000)]).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_file_stream_dropped_by_a_later_offer_ends_and_leaves_nothing() {
    let dir = file_dir();
    let server = start_sip_chat(options(&dir, None), true).await;
    let uac = common::sip::start_uac(&server.token).await;
    let (dialog, chat_offer, _alice) = chat_call(&server, &uac, Transport::Udp).await;
    let data = content(100_000);
    let sel = selector_of("half.bin", &data);
    let file_local = Participant::local_uri();
    let file_part = file_offer(file_local.as_str(), "sendonly", &sel);
    let with_file = format!("{chat_offer}{}", &file_part[file_part.find("m=").unwrap()..]);
    let answer = reinvite(&dialog, with_file.clone()).await;
    let file_section = answer[answer.rfind("m=message").unwrap()..].to_owned();
    let up = Participant::answered(ALICE, file_local, &file_section, String::new()).await;
    let first = Request::new(TransactionId::random(), Method::Send)
        .with(Header::MessageId(MessageId::random()))
        .with(Header::ByteRange(ByteRange::chunk(1, 50_000, Some(100_000))));
    up.send_chunk(first, "application/octet-stream", &data[..50_000], false).await;
    until("a part on disk", || std::fs::read_dir(&dir).unwrap().count() == 1).await;
    // The next offer has only the chat: the half-sent file ends, its part goes.
    assert_eq!(reinvite(&dialog, chat_offer.clone()).await.matches("m=message ").count(), 1);
    until("nothing left", || server.chat.transfer_count() == 0 && std::fs::read_dir(&dir).unwrap().count() == 0).await;
    assert!(server.chat.room_files("lobby").is_empty());

    // A file stream added again, then an offer that drops the chat but keeps that file
    // stream: no file rides without the chat.
    let file_local = Participant::local_uri();
    let file_part = file_offer(file_local.as_str(), "sendonly", &sel);
    let with_file = format!("{chat_offer}{}", &file_part[file_part.find("m=").unwrap()..]);
    let answer = reinvite(&dialog, with_file.clone()).await;
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert_eq!(server.chat.transfer_count(), 1);
    // (The chat stream comes first in the offer: only its port goes to 0.)
    let answer = reinvite(&dialog, with_file.replacen("m=message 9 ", "m=message 0 ", 1)).await;
    assert!(!answer.contains("a=recvonly"), "the file stream refused too: {answer}");
    until("the file stream ended with the chat", || server.chat.transfer_count() == 0).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_reoffer_may_carry_several_file_streams_and_move_them() {
    let dir = file_dir();
    let server = start_sip_chat(options(&dir, None), true).await;
    let uac = common::sip::start_uac(&server.token).await;
    let (dialog, chat_offer, _alice) = chat_call(&server, &uac, Transport::Udp).await;
    let media = |name: &str| {
        let o = file_offer(Participant::local_uri().as_str(), "sendonly", &selector_of(name, &content(10)));
        o[o.find("m=").unwrap()..].to_owned()
    };
    let (a, b) = (media("a.txt"), media("b.txt"));
    let answer = reinvite(&dialog, format!("{chat_offer}{a}{b}")).await;
    assert_eq!((answer.matches("a=recvonly").count(), server.chat.transfer_count()), (2, 2), "{answer}");
    let b_section = answer[answer.rfind("m=message").unwrap()..].to_owned();
    // A dropped, B moved up a slot: B's transfer and answer stay, A's ends.
    let answer = reinvite(&dialog, format!("{chat_offer}{b}")).await;
    assert_eq!(&answer[answer.rfind("m=message").unwrap()..], b_section);
    assert_eq!(server.chat.transfer_count(), 1);
    let _ = std::fs::remove_dir_all(dir);
}
