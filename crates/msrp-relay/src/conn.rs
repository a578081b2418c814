//! One connection's shared half: its writer and output queue (the outbox and its one
//! back-pressure rule), its pending transactions, registration and teardown. Its reading side
//! is `reader`; what each forwarded transaction owes its sender is kept and settled in
//! `transactions` (RFC 4976 §7).
//!
//! Writes to a connection go through its writer lock, one whole chunk at a time. A forwarded
//! body is queued (as zero-copy slices of the read buffer) while a read batch is decoded, and
//! written out as one chunk — with an exact Byte-Range and a transaction id whose end-line is
//! not in it — when the frame ends or when `max_chunk` bytes are queued. A frame that outlasts
//! the batch is streamed instead (`Forwarding::open_queued`): the chunk stays open, holding the
//! target's writer, until the frame ends, `max_chunk`, or the sender is silent for
//! `chunk_hold` — so chunks are not cut at read boundaries, and other messages to the same
//! peer pass between chunks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use msrp::header::ByteRange;
use msrp::message::TransactionId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::reader::read_loop;
use crate::server::Shared;
use crate::sessions::ConnId;
use crate::transactions::Table;
pub(crate) use crate::transactions::{KeptId, Pending, Reporting, expire_pending, fail_all};

pub(crate) type Io = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// Largest Byte-Range start relayed (2^62): far beyond any real message, and low enough that
/// no chunk's end position can overflow. Larger ones are refused with 400.
pub(crate) const MAX_START: u64 = 1 << 62;

/// The Byte-Range a request stands for (RFC 4975 §7.1.1: none means `1-*/*`), or `None` when
/// its start is beyond [`MAX_START`] (400). The one rule for the fast and the general path.
pub(crate) fn chunk_range(given: Option<&ByteRange>) -> Option<ByteRange> {
    let range = given.copied().unwrap_or(ByteRange { start: 1, end: None, total: None });
    (range.start <= MAX_START).then_some(range)
}

/// A connection's shared half: its writer and its outstanding transactions.
pub struct Conn {
    pub id: ConnId,
    pub peer: SocketAddr,
    /// (TLS, local port) of the listener it arrived on; port 0 for outgoing connections.
    pub local: (bool, u16),
    pub(crate) writer: Arc<tokio::sync::Mutex<Io>>,
    /// Frames queued for the socket: whole frames appended by any task, written out with one
    /// system call per read batch (the relay's profile: one write per frame cost more than all
    /// the parsing). Drained only while holding `writer`, so frames leave in order.
    out: Mutex<Outbox>,
    pub(crate) pending: Mutex<Table>,
    closed: AtomicBool,
    pub(crate) close_notify: Notify,
    /// Output queued beyond either bound is written by its producer before it goes on
    /// (`relay.output_buffer` bytes, `relay.output_messages` frames: the back-pressure bounds
    /// per connection and direction).
    high_water: usize,
    high_water_frames: usize,
    /// Tasks waiting for `writer`: an open chunk that stalls is cut only when someone waits
    /// (or output is queued), so a slow sender with the connection to itself keeps one chunk.
    waiters: AtomicUsize,
    /// The rate buckets its reads are charged to, set by its first accepted AUTH.
    pub(crate) throttle: std::sync::OnceLock<crate::throttle::ConnThrottle>,
}

/// Complete frames queued for a connection's socket, and how many.
#[derive(Debug, Default)]
struct Outbox {
    buf: BytesMut,
    frames: usize,
}

impl Outbox {
    /// Appends what `write` writes (complete frames) as one entry; true when either bound is
    /// reached, so that the producer writes out before it produces more: the one
    /// back-pressure rule, whichever path queued.
    fn add(&mut self, write: impl FnOnce(&mut BytesMut), max_bytes: usize, max_frames: usize) -> bool {
        write(&mut self.buf);
        self.frames += 1;
        self.buf.len() >= max_bytes || self.frames >= max_frames
    }
}

/// What [`Conn::queue_forwarded`] did with a chunk.
pub(crate) struct Queued {
    pub(crate) full: bool,
    pub(crate) lost: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("id", &self.id).field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl Conn {
    /// Forgets transaction `tid` (its chunk never left whole); true if it was still pending.
    pub(crate) fn untrack(&self, tid: &TransactionId) -> bool {
        crate::lock(&self.pending).remove(tid).is_some()
    }

    /// Over TLS (accepted on a TLS listener, or dialled to an `msrps` hop).
    pub fn is_tls(&self) -> bool {
        self.local.0
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close_notify.notify_waiters();
        self.close_notify.notify_one();
    }

    /// Writes one complete frame now (with whatever was queued before it).
    pub(crate) async fn send(&self, frame: &[u8], shared: &Shared) -> bool {
        self.queue(frame);
        self.flush_out(shared).await
    }

    /// Appends a complete frame to the output; true when enough is queued that the caller
    /// should flush before producing more (back-pressure).
    pub(crate) fn queue(&self, frame: &[u8]) -> bool {
        self.queue_with(|out| out.extend_from_slice(frame))
    }

    /// Lets `write` append complete frames to the output; true when enough is queued that
    /// the caller should flush before producing more (back-pressure).
    pub(crate) fn queue_with(&self, write: impl FnOnce(&mut BytesMut)) -> bool {
        crate::lock(&self.out).add(write, self.high_water, self.high_water_frames)
    }

    /// Queues a forwarded chunk whose transaction, if it has one (`tracked`), is already in
    /// this connection's table. Returns whether the output is full (the caller flushes before
    /// going on) and whether the chunk is lost: the connection closed meanwhile and its closing
    /// has not reported the transaction (it would have taken it from the table), so the sender
    /// is told by our 481 instead. The one rule for both of the relay's paths.
    pub(crate) fn queue_forwarded(
        &self,
        tid: &TransactionId,
        tracked: bool,
        write: impl FnOnce(&mut BytesMut),
    ) -> Queued {
        let full = self.queue_with(write);
        let lost = self.is_closed() && (!tracked || self.untrack(tid));
        Queued { full, lost }
    }

    /// Lets a closed connection's socket go, from a writer that was held while it closed
    /// (`close` could not take it): shutdown (TLS close_notify) and a sink in its place.
    pub(crate) async fn release_closed(&self, w: &mut Io) {
        if !self.is_closed() {
            return;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.shutdown()).await;
        *w = Box::new(tokio::io::sink());
        *crate::lock(&self.out) = Outbox::default();
    }

    /// Writes everything queued, in order. A closed connection's output is dropped without
    /// waiting for its writer (which another reader's open chunk may hold until `chunk_hold`).
    pub(crate) async fn flush_out(&self, shared: &Shared) -> bool {
        if self.is_closed() {
            *crate::lock(&self.out) = Outbox::default();
            return false;
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let mut w = self.writer.lock().await;
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        self.flush_locked(&mut w, shared).await
    }

    /// The writer, owned (held across a chunk's pieces), counted among the waiters meanwhile.
    pub(crate) async fn writer_owned(&self) -> tokio::sync::OwnedMutexGuard<Io> {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let w = self.writer.clone().lock_owned().await;
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        w
    }

    /// Whether anyone else wants this connection: a task waiting for its writer, or output
    /// queued for it.
    pub(crate) fn is_wanted(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0 || !crate::lock(&self.out).buf.is_empty()
    }

    /// Writes everything queued; the caller holds the writer.
    pub(crate) async fn flush_locked(&self, w: &mut Io, shared: &Shared) -> bool {
        let data = {
            let mut out = crate::lock(&self.out);
            if out.buf.is_empty() {
                return !self.is_closed();
            }
            out.frames = 0;
            out.buf.split().freeze()
        };
        if self.is_closed() {
            return false;
        }
        write_timed(w, &data, self, shared).await
    }
}

/// The connections a read batch queued output for. Each is written once, at the batch's end
/// (one system call per target per batch), except one whose outbox reached a bound
/// ([`Conn::queue_with`] said so): that one is written before the reader produces anything
/// more. The one back-pressure action, whichever path queued.
#[derive(Default)]
pub(crate) struct Touched {
    conns: Vec<Arc<Conn>>,
    /// Those past a bound, for [`Touched::relieve`].
    full: Vec<Arc<Conn>>,
}

impl Touched {
    /// Notes output queued for `conn`; `full` is what queueing it answered.
    pub(crate) fn queued(&mut self, conn: &Arc<Conn>, full: bool) {
        if !self.conns.iter().any(|c| c.id == conn.id) {
            self.conns.push(conn.clone());
        }
        if full && !self.full.iter().any(|c| c.id == conn.id) {
            self.full.push(conn.clone());
        }
    }

    /// Some connection's output is past a bound: [`Touched::relieve`] before going on.
    pub(crate) fn must_relieve(&self) -> bool {
        !self.full.is_empty()
    }

    /// Writes out the connections whose output is past a bound.
    pub(crate) async fn relieve(&mut self, shared: &Shared) {
        for conn in std::mem::take(&mut self.full) {
            conn.flush_out(shared).await;
        }
    }

    /// The batch's end: writes out every connection touched.
    pub(crate) async fn flush(&mut self, shared: &Shared) {
        self.full.clear();
        for conn in std::mem::take(&mut self.conns) {
            conn.flush_out(shared).await;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Queues a complete frame for `conn`, written at the batch's end or, past a bound, now.
    pub(crate) async fn queue_frame(&mut self, conn: &Arc<Conn>, frame: &[u8], shared: &Shared) {
        let full = conn.queue(frame);
        self.queued(conn, full);
        self.relieve(shared).await;
    }
}

/// Writes `data` and flushes. The flush matters over TLS: tokio-rustls's `poll_write` returns
/// once rustls has taken the plaintext, even when the socket was full and the encrypted records
/// are still in rustls's buffer; nothing sends them until the next write or a flush. Without
/// it, the end of a transfer could sit there until the client's keep-alive (issue 10: 2 of 67
/// 20 MB msrplib transfers over TLS stalled for a minute). On plain TCP the flush is free.
pub(crate) async fn write_flush<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data).await?;
    w.flush().await
}

pub(crate) async fn write_timed(w: &mut Io, data: &[u8], conn: &Conn, shared: &Shared) -> bool {
    match tokio::time::timeout(shared.opts.transaction_timeout, write_flush(w, data)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            debug!(conn = conn.id, peer = %conn.peer, error = %e, "write failed");
            conn.close();
            false
        }
        Err(_) => {
            warn!(conn = conn.id, peer = %conn.peer, "peer stopped reading; closing the connection");
            conn.close();
            false
        }
    }
}

/// Registers a connection and spawns its reader; returns its shared half.
pub(crate) fn start<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    local: (bool, u16),
    outbound: bool,
) -> Arc<Conn>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let conn = register(&shared, wr, peer, local);
    tokio::spawn(read_loop(shared, conn.clone(), rd, outbound));
    conn
}

/// Runs an accepted connection to its end.
pub(crate) async fn run<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, local: (bool, u16), outbound: bool)
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let conn = register(&shared, wr, peer, local);
    read_loop(shared, conn, rd, outbound).await;
}

fn register<W: AsyncWrite + Send + Sync + Unpin + 'static>(
    shared: &Arc<Shared>,
    wr: WriteHalf<W>,
    peer: SocketAddr,
    local: (bool, u16),
) -> Arc<Conn> {
    let conn = Arc::new(Conn {
        id: shared.next_conn_id(),
        peer,
        local,
        writer: Arc::new(tokio::sync::Mutex::new(Box::new(wr) as Io)),
        out: Mutex::new(Outbox::default()),
        pending: Mutex::new(Table::default()),
        closed: AtomicBool::new(false),
        close_notify: Notify::new(),
        waiters: AtomicUsize::new(0),
        high_water: shared.opts.output_buffer,
        high_water_frames: shared.opts.output_messages,
        throttle: std::sync::OnceLock::new(),
    });
    crate::lock(&shared.conns).insert(conn.id, conn.clone());
    debug!(conn = conn.id, %peer, "connection open");
    conn
}

/// Tears a connection down: its sessions end and what was in flight through it is reported.
pub(crate) async fn close(shared: &Arc<Shared>, conn: &Arc<Conn>) {
    conn.close();
    crate::lock(&shared.conns).remove(&conn.id);
    let closed = crate::lock(&shared.sessions).close_conn(conn.id);
    for s in closed.ended {
        info!(session = %s.id, user = %s.user, realm = %s.realm, conn = conn.id, "session ended: connection closed");
    }
    // The other side learns that its peer is gone by the end of its own connection, where that
    // carried nothing else (`Sessions::close_conn`); each closes through its own reader.
    for id in closed.cascade {
        if let Some(other) = shared.conn(id) {
            debug!(conn = other.id, peer = %other.peer, after = conn.id, "closing: its peer's connection closed");
            other.close();
        }
    }
    fail_all(shared, conn).await;
    if let Ok(mut w) = tokio::time::timeout(std::time::Duration::from_secs(1), conn.writer.lock()).await {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.shutdown()).await;
        // Others may still hold this `Conn` (a route remembered by a sender's fast path, a
        // task finishing a write): what stays with it must not include the socket or output.
        *w = Box::new(tokio::io::sink());
    }
    *crate::lock(&conn.out) = Outbox::default();
    debug!(conn = conn.id, peer = %conn.peer, "connection closed");
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    #[test]
    fn the_outbox_asks_for_a_write_at_either_bound() {
        use super::Outbox;
        let mut out = Outbox::default();
        let frame = |n: usize| move |b: &mut bytes::BytesMut| b.extend_from_slice(&vec![b'x'; n]);
        assert!(!out.add(frame(10), 100, 3));
        assert!(!out.add(frame(10), 100, 3));
        assert!(out.add(frame(10), 100, 3), "the third frame reaches the frame bound");
        let mut out = Outbox::default();
        assert!(out.add(frame(100), 100, 3), "one large frame reaches the byte bound");
    }

    fn idle_conn() -> super::Conn {
        idle_conn_id(1)
    }

    fn idle_conn_id(id: super::ConnId) -> super::Conn {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        super::Conn {
            id,
            peer: "127.0.0.1:9".parse().unwrap(),
            local: (false, 2855),
            writer: std::sync::Arc::new(tokio::sync::Mutex::new(Box::new(tokio::io::sink()) as super::Io)),
            out: std::sync::Mutex::new(super::Outbox::default()),
            pending: std::sync::Mutex::new(super::Table::default()),
            closed: AtomicBool::new(false),
            close_notify: tokio::sync::Notify::new(),
            high_water: 1024,
            high_water_frames: 2,
            waiters: AtomicUsize::new(0),
            throttle: std::sync::OnceLock::new(),
        }
    }

    #[test]
    fn a_batch_writes_early_only_what_is_past_a_bound() {
        let (a, b) = (std::sync::Arc::new(idle_conn()), std::sync::Arc::new(idle_conn_id(2)));
        let mut touched = super::Touched::default();
        touched.queued(&a, false);
        touched.queued(&a, false);
        assert!(!touched.must_relieve() && touched.conns.len() == 1, "one write per target, at the end");
        touched.queued(&b, true);
        touched.queued(&b, true);
        assert!(touched.must_relieve());
        assert_eq!((touched.conns.len(), touched.full.len()), (2, 1));
    }

    #[test]
    fn a_chunk_queued_for_a_closed_connection_is_lost_unless_its_closing_reported_it() {
        use super::{KeptId, Pending, Reporting};
        use msrp::header::{ByteRange, FailureReport, Path};
        use msrp::message::TransactionId;
        let reporting = std::sync::Arc::new(Reporting {
            report_to: Path::single("msrp://a.example.com:7777/a1;tcp".parse().unwrap()),
            reporter: "msrp://relay.example.com:2855/r1;tcp".parse().unwrap(),
        });
        let range = ByteRange { start: 1, end: Some(1), total: Some(1) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let chunk = || Pending::send(3, &reporting, || KeptId::new("m1"), range, FailureReport::Yes, deadline).unwrap();
        let conn = idle_conn();
        let frame = |o: &mut bytes::BytesMut| o.extend_from_slice(b"x");
        let tid = TransactionId::random();
        crate::lock(&conn.pending).insert(tid, chunk());
        let q = conn.queue_forwarded(&tid, true, frame);
        assert!(!q.lost && !q.full, "an open connection takes it");
        assert!(conn.queue_forwarded(&TransactionId::random(), false, frame).full, "the frame bound");
        conn.close();
        let tid = TransactionId::random();
        crate::lock(&conn.pending).insert(tid, chunk());
        assert!(conn.queue_forwarded(&tid, true, frame).lost, "closed, still pending: the sender gets 481");
        assert!(crate::lock(&conn.pending).get(&tid).is_none(), "and no REPORT besides");
        let reported = TransactionId::random(); // its closing took it: the REPORT tells the sender
        assert!(!conn.queue_forwarded(&reported, true, frame).lost);
        assert!(conn.queue_forwarded(&reported, false, frame).lost, "nothing tracked: lost");
    }

    /// A writer that takes bytes into a buffer and sends them only when flushed, the way
    /// tokio-rustls behaves when the socket under it is full.
    #[derive(Default)]
    struct HoldsUntilFlushed {
        held: Vec<u8>,
        sent: Vec<u8>,
    }

    impl tokio::io::AsyncWrite for HoldsUntilFlushed {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            self.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let held = std::mem::take(&mut self.held);
            self.sent.extend_from_slice(&held);
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    #[tokio::test]
    async fn written_frames_leave_the_writers_buffer() {
        let mut w = HoldsUntilFlushed::default();
        super::write_flush(&mut w, b"MSRP abcd 200 OK\r\n").await.unwrap();
        assert_eq!(w.sent, b"MSRP abcd 200 OK\r\n", "nothing left behind in a TLS buffer");
    }
}
