//! An [`Endpoint`] that runs by itself: a task reads its frames, answers each SEND as told
//! (200 unless [`Auto::answer_with`] says otherwise; RFC 4975 §7.2), gathers chunked messages
//! by Message-ID and hands what came on a channel; another writes the test's bytes and those
//! answers in turn. What the chat's tests need of a participant.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msrp::{Continuation, Message, Method, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::Endpoint;
use crate::endpoint::ReadSide;

/// What an automatic endpoint got.
#[derive(Debug, Clone)]
pub enum Got {
    /// A complete message (all chunks), with the head of its last chunk.
    Send {
        req: Request,
        body: Bytes,
        chunks: usize,
    },
    Response(Response),
    Report(Request),
}

/// The running endpoint's handle.
pub struct Auto {
    wtx: mpsc::UnboundedSender<Bytes>,
    pub got: mpsc::UnboundedReceiver<Got>,
    /// Set to false to stop reading (a stalled peer: its senders' writes back up).
    reading: Arc<AtomicBool>,
    /// The status SENDs are answered with.
    answer: Arc<AtomicU16>,
}

impl Endpoint {
    /// Runs the endpoint by itself from now on (see the module).
    pub fn into_auto(self) -> Auto {
        let (_, rx, mut writer) = self.into_parts();
        let (tx, got) = mpsc::unbounded_channel();
        let (resp_tx, mut resp_rx) = mpsc::unbounded_channel::<Bytes>();
        let reading = Arc::new(AtomicBool::new(true));
        let answer = Arc::new(AtomicU16::new(200));
        tokio::spawn(read_task(rx, tx, resp_tx, reading.clone(), answer.clone()));
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            loop {
                let data = tokio::select! {
                    Some(d) = resp_rx.recv() => d,
                    Some(d) = wrx.recv() => d,
                    else => break,
                };
                if writer.write_all(&data).await.is_err() {
                    break;
                }
            }
        });
        Auto { wtx, got, reading, answer }
    }
}

impl Auto {
    /// Bytes to send, in order with the answers.
    pub fn write(&self, data: Bytes) {
        let _ = self.wtx.send(data);
    }

    /// Stops reading from the socket.
    pub fn stall(&self) {
        self.reading.store(false, Ordering::SeqCst);
    }

    /// Reads again.
    pub fn resume(&self) {
        self.reading.store(true, Ordering::SeqCst);
    }

    /// Answers SENDs with `status` from now on (200 when `None`).
    pub fn answer_with(&self, status: Option<StatusCode>) {
        self.answer.store(status.map_or(200, |s| s.0), Ordering::SeqCst);
    }

    /// The next event, within 5 s.
    pub async fn next(&mut self) -> Got {
        tokio::time::timeout(crate::WAIT, self.got.recv()).await.expect("an event in time").expect("open")
    }

    /// True when the peer closes the connection within `within` (what came before is read and
    /// dropped).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        self.resume();
        let end = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(end, self.got.recv()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(_)) => {}
            }
        }
    }
}

async fn read_task(
    mut rx: ReadSide,
    tx: mpsc::UnboundedSender<Got>,
    resp_tx: mpsc::UnboundedSender<Bytes>,
    reading: Arc<AtomicBool>,
    answer: Arc<AtomicU16>,
) {
    let mut partial: HashMap<String, (BytesMut, usize)> = HashMap::new();
    loop {
        while !reading.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(frame) = rx.frame().await else { return };
        let req = match frame.head {
            Message::Response(resp) => {
                let _ = tx.send(Got::Response(resp));
                continue;
            }
            Message::Request(req) => req,
        };
        if req.method == Method::Report {
            let _ = tx.send(Got::Report(req));
            continue;
        }
        let status = StatusCode(answer.load(Ordering::SeqCst));
        if let Some(to) = req.headers.to_path()
            && let Some(resp) = msrp::report::response(&req, status, to.first())
        {
            let mut out = BytesMut::new();
            msrp::encode::encode_response(&resp, &mut out);
            let _ = resp_tx.send(out.freeze());
        }
        if req.headers.content_type().is_none() {
            // An empty SEND, such as the one that binds a connection.
            let _ = tx.send(Got::Send { req, body: Bytes::new(), chunks: 1 });
            continue;
        }
        let id = req.headers.message_id().map(|m| m.as_str().to_owned()).unwrap_or_default();
        let entry = partial.entry(id.clone()).or_insert_with(|| (BytesMut::new(), 0));
        entry.0.extend_from_slice(&frame.body);
        entry.1 += 1;
        if frame.flag == Continuation::Complete {
            let (data, chunks) = partial.remove(&id).unwrap_or_default();
            let _ = tx.send(Got::Send { req, body: data.freeze(), chunks });
        }
    }
}
