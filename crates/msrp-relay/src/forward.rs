//! Streaming one forwarded request to the next hop: body pieces queued as zero-copy slices
//! of the read buffer, written out as whole chunks with exact Byte-Ranges and a transaction id
//! checked against their bytes (RFC 4975 §7.1), and the transaction each chunk opens recorded
//! for its response, timeout or loss (RFC 4976 §7).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;

use bytes::{Bytes, BytesMut};
use msrp::encode::{self, SEAM, continues_safely, keep_tail, safe_tid_for_pieces};
use msrp::header::{ByteRange, Header, Path};
use msrp::message::TransactionId;
use msrp::{Continuation, Method, Request, Uri};

use crate::conn::{Conn, Io, KeptId, Pending, Reporting, Touched, write_timed};
use crate::server::Shared;
use crate::sessions::ConnId;

/// A request being streamed to the next hop.
pub(crate) struct Forwarding {
    /// The connection the request came from (where its response and REPORTs go).
    pub(crate) source: ConnId,
    pub(crate) req: Request,
    pub(crate) target: Arc<Conn>,
    pub(crate) to: Path,
    pub(crate) from: Path,
    /// Our URI as the sender addressed it (To-Path[0]): From-Path of our responses and REPORTs.
    pub(crate) reporter: Uri,
    /// Absolute position (1-based) of the next body byte, from the request's Byte-Range.
    pub(crate) next_byte: u64,
    pub(crate) total: Option<u64>,
    /// Body bytes seen so far (a frame with none is forwarded as one bodiless frame).
    pub(crate) seen_body: bool,
    /// Body pieces read but not yet written, and their total length.
    pub(crate) queued: Vec<Bytes>,
    pub(crate) queued_len: usize,
    pub(crate) failed: bool,
    /// Some chunk of this frame went out (else abandoning it needs no `#` frame).
    pub(crate) sent_any: bool,
    /// The chunk being streamed to the target, when the frame outlasted a read batch.
    pub(crate) open: Option<Open>,
}

/// A chunk whose head (and first bytes) are written and whose end is not: the target's writer
/// is held until it ends, so nothing else can come between its bytes. It ends with the
/// incoming frame, at `max_chunk` bytes, before a piece that would hold its end-line, or when
/// the sender stalls for `chunk_hold` (then with `+`, and the target is free for others).
pub(crate) struct Open {
    writer: OwnedMutexGuard<Io>,
    tid: TransactionId,
    since: Instant,
    /// Position of the chunk's first body byte and the body bytes written so far.
    start: u64,
    len: u64,
    /// The last body bytes written (at most [`SEAM`]): an end-line may straddle two pieces.
    last: Vec<u8>,
}

impl Forwarding {
    /// Whether the frame has a body section (RFC 4975 §9 `content-stuff`), perhaps empty.
    fn body_section(&self) -> bool {
        self.seen_body || self.req.headers.content_type().is_some()
    }

    pub(crate) async fn body(&mut self, mut piece: Bytes, shared: &Shared, touched: &mut Touched) {
        self.seen_body = true;
        while !piece.is_empty() && !self.failed {
            if self.open.is_some() {
                self.stream(&mut piece, shared).await;
                continue;
            }
            let room = shared.opts.max_chunk.saturating_sub(self.queued_len).max(1);
            let part = piece.split_to(piece.len().min(room));
            self.queued_len += part.len();
            self.queued.push(part);
            if self.queued_len >= shared.opts.max_chunk {
                self.flush(Continuation::More, shared, touched).await;
            }
        }
    }

    /// How long the open chunk has held its target, if one is open.
    pub(crate) fn open_for(&self) -> Option<std::time::Duration> {
        self.open.as_ref().map(|o| o.since.elapsed())
    }

    /// The read batch is used up in the middle of this SEND: its chunk is started with what
    /// is queued and kept open for the rest, rather than cut at a read boundary (a client
    /// such as msrplib cannot reassemble a chat message that arrives in two chunks).
    pub(crate) async fn open_queued(&mut self, shared: &Shared) {
        if self.open.is_some() || self.failed || self.queued_len == 0 || self.req.method != Method::Send {
            return;
        }
        let pieces = std::mem::take(&mut self.queued);
        let len = std::mem::take(&mut self.queued_len) as u64;
        let tid = safe_tid_for_pieces(&pieces);
        let start = self.next_byte;
        // The sender's end when this chunk can carry all of its frame, else unknown (`*`,
        // RFC 4975 §7.1.1): the chunk may still end early (`+`) like any interrupted chunk.
        let declared = self.req.headers.byte_range().and_then(|r| r.end);
        let end = declared.filter(|&e| e >= start && e - start < shared.opts.max_chunk as u64);
        let mut head = BytesMut::with_capacity(512);
        self.write_head(tid, Some(ByteRange { start, end, total: self.total }), true, &mut head);
        let mut writer = self.target.writer_owned().await;
        // Recorded before the head leaves, with the range known so far: a next hop may answer
        // (413, 481) before the chunk ends; `end_open` sets the final range. No response is
        // due before the end-line, however long the chunk stays open: the timer starts there.
        self.track(tid, ByteRange { start, end: None, total: self.total }, far_future());
        // Whatever others queued for the target leaves first.
        let mut ok = self.target.flush_locked(&mut writer, shared).await;
        ok = ok && write_timed(&mut writer, &head, &self.target, shared).await;
        for p in &pieces {
            ok = ok && write_timed(&mut writer, p, &self.target, shared).await;
        }
        if !ok {
            self.failed = true;
            self.target.untrack(&tid);
            self.target.release_closed(&mut writer).await;
            return;
        }
        let mut last = Vec::with_capacity(SEAM);
        for p in &pieces {
            keep_tail(&mut last, p);
        }
        self.sent_any = true;
        shared.stats.forwarded(1, len);
        self.open = Some(Open { writer, tid, since: Instant::now(), start, len, last });
    }

    /// Writes the front of `piece` into the open chunk (what fits in `max_chunk`), or ends the
    /// chunk first when that part would carry the chunk's end-line (the sender may have
    /// learnt our transaction id from the receiver); the caller queues what is left.
    async fn stream(&mut self, piece: &mut Bytes, shared: &Shared) {
        let Some(open) = self.open.as_mut() else { return };
        let room = (shared.opts.max_chunk as u64).saturating_sub(open.len).max(1);
        let take = piece.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if !continues_safely(&open.last, &piece[..take], &open.tid) {
            self.end_open(Continuation::More, shared).await;
            return;
        }
        let part = piece.split_to(take);
        // A target closed meanwhile (its `close` could not take the writer this chunk holds)
        // takes no more of it: the chunk fails here as a failed write would.
        if self.target.is_closed() || !write_timed(&mut open.writer, &part, &self.target, shared).await {
            if let Some(mut open) = self.open.take() {
                self.target.untrack(&open.tid);
                self.target.release_closed(&mut open.writer).await;
            }
            self.failed = true;
            return;
        }
        open.len += part.len() as u64;
        shared.stats.forwarded(0, part.len() as u64);
        keep_tail(&mut open.last, &part);
        if open.len >= shared.opts.max_chunk as u64 {
            self.end_open(Continuation::More, shared).await;
        }
    }

    /// Ends the open chunk with `flag`, records its transaction, writes what others queued for
    /// the target meanwhile, and lets the target go.
    pub(crate) async fn end_open(&mut self, flag: Continuation, shared: &Shared) {
        let Some(mut open) = self.open.take() else { return };
        let range = ByteRange { start: open.start, end: Some(open.start + open.len - 1), total: self.total };
        // The final range, unless the next hop has answered already, and the response's clock
        // starts now, at the end-line (the chunk may have been open longer than
        // transaction_timeout on a slow uplink).
        if let Some(Pending::Send { range: r, deadline, .. }) = crate::lock(&self.target.pending).get_mut(&open.tid) {
            *r = range;
            *deadline = Instant::now() + shared.opts.transaction_timeout;
        }
        let mut out = BytesMut::with_capacity(64);
        end_chunk(&open.tid, flag, true, &mut out);
        let ok = write_timed(&mut open.writer, &out, &self.target, shared).await
            && self.target.flush_locked(&mut open.writer, shared).await;
        if !ok {
            self.failed = true;
            self.target.untrack(&open.tid);
        }
        self.target.release_closed(&mut open.writer).await;
        self.next_byte += open.len;
    }

    /// Writes the queued bytes as one chunk ending with `flag`, and records what its outcome
    /// owes the sender.
    pub(crate) async fn flush(&mut self, flag: Continuation, shared: &Shared, touched: &mut Touched) {
        let pieces = std::mem::take(&mut self.queued);
        let len = std::mem::take(&mut self.queued_len) as u64;
        let start = self.next_byte;
        let body_section = self.body_section();
        // A transaction id whose end-line occurs nowhere in this chunk (RFC 4975 §7.1).
        let tid = safe_tid_for_pieces(&pieces);
        // Exact, even for an empty final chunk (`N-(N-1)`).
        let range = ByteRange { start, end: Some(start + len - 1), total: self.total };
        // Only a SEND is re-chunked (RFC 4975 §7.1.1); any other request (a REPORT, whose
        // Byte-Range names what the far end received) keeps the headers it came with.
        let with_range = self.req.method == Method::Send && (body_section || self.req.headers.byte_range().is_some());
        // Small chunks are queued whole with the target's other output (one system call per
        // read batch); large ones are written as head, pieces (no copy), end.
        // Recorded before the chunk can leave: another task may flush the target's output at
        // any moment, and the response must find its transaction.
        let tracked = self.track(tid, range, Instant::now() + shared.opts.transaction_timeout);
        let mut out = BytesMut::with_capacity(512 + if len < SMALL_CHUNK { len as usize } else { 0 });
        self.write_head(tid, with_range.then_some(range), body_section, &mut out);
        let ok = if len < SMALL_CHUNK {
            for p in &pieces {
                out.extend_from_slice(p);
            }
            end_chunk(&tid, flag, body_section, &mut out);
            let queued = self.target.queue_forwarded(&tid, tracked, |o| o.extend_from_slice(&out));
            touched.queued(&self.target, queued.full);
            touched.relieve(shared).await;
            !queued.lost
        } else {
            let mut writer = self.target.writer_owned().await;
            let mut ok = self.target.flush_locked(&mut writer, shared).await;
            ok = ok && write_timed(&mut writer, &out, &self.target, shared).await;
            for p in &pieces {
                ok = ok && write_timed(&mut writer, p, &self.target, shared).await;
            }
            out.clear();
            end_chunk(&tid, flag, body_section, &mut out);
            let ok = ok && write_timed(&mut writer, &out, &self.target, shared).await;
            if !ok {
                self.target.release_closed(&mut writer).await;
            }
            ok
        };
        if !ok {
            // (A small chunk's transaction is already out of the table.)
            self.failed = true;
            self.target.untrack(&tid);
            return;
        }
        self.sent_any = true;
        shared.stats.forwarded(1, len);
        self.next_byte += len;
    }

    /// The rewritten head, straight from the received one (no intermediate `Request`: the
    /// relay's profile showed cloning every header per chunk): start line, the new paths, the
    /// other headers as received, the chunk's Byte-Range (when given: a SEND's), the Content-*
    /// headers, and the blank line when the frame has a body section (RFC 4975 §9 order).
    fn write_head(&self, tid: TransactionId, range: Option<ByteRange>, body_section: bool, out: &mut BytesMut) {
        let ours = range.is_some();
        let passed = |h: &&Header| match h {
            Header::ToPath(_) | Header::FromPath(_) => false,
            Header::ByteRange(_) => !ours,
            _ => true,
        };
        let head = ForwardedHead { tid: &tid, method: self.req.method.as_str().as_bytes(), range, body_section };
        head.write(
            out,
            |out| {
                encode::encode_header(&Header::ToPath(self.to.clone()), out);
                encode::encode_header(&Header::FromPath(self.from.clone()), out);
            },
            |out| {
                for h in self.req.headers.iter().filter(passed).filter(|h| !h.is_content()) {
                    encode::encode_header(h, out);
                }
            },
            |out| {
                for h in self.req.headers.iter().filter(passed).filter(|h| h.is_content()) {
                    encode::encode_header(h, out);
                }
            },
        );
    }

    /// Records the transaction a chunk opens, if any; true when it did.
    fn track(&self, tid: TransactionId, range: ByteRange, deadline: Instant) -> bool {
        let pending = match self.req.method {
            Method::Report => return false,
            Method::Send => {
                let failure = self.req.headers.failure_report();
                let Some(report_to) = self.req.headers.from_path().cloned() else { return false };
                let reporting = Arc::new(Reporting { report_to, reporter: self.reporter.clone() });
                let message_id = || self.req.headers.message_id().and_then(|m| KeptId::new(m.as_str()));
                let Some(pending) = Pending::send(self.source, &reporting, message_id, range, failure, deadline) else {
                    return false;
                };
                pending
            }
            _ => {
                let Some(reply_to) = self.req.headers.from_path().map(|p| p.first().clone()) else { return false };
                Pending::Relay {
                    source: self.source,
                    tid: self.req.tid,
                    reply_to,
                    reporter: self.reporter.clone(),
                    deadline,
                }
            }
        };
        crate::lock(&self.target.pending).insert(tid, pending);
        true
    }
}

/// The head of a forwarded request, in the order RFC 4975 §9 gives and both of the relay's
/// paths write it: the start line, the rewritten To-Path and From-Path, the other headers as
/// received, the chunk's Byte-Range (when the relay sets it), the Content-* headers, and the
/// blank line that opens a body section. The callers write the parts they hold.
pub(crate) struct ForwardedHead<'a> {
    pub(crate) tid: &'a TransactionId,
    pub(crate) method: &'a [u8],
    pub(crate) range: Option<ByteRange>,
    pub(crate) body_section: bool,
}

impl ForwardedHead<'_> {
    #[inline(always)]
    pub(crate) fn write(
        &self,
        out: &mut BytesMut,
        paths: impl FnOnce(&mut BytesMut),
        others: impl FnOnce(&mut BytesMut),
        content: impl FnOnce(&mut BytesMut),
    ) {
        out.extend_from_slice(b"MSRP ");
        out.extend_from_slice(self.tid.as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(self.method);
        out.extend_from_slice(b"\r\n");
        paths(out);
        others(out);
        if let Some(range) = self.range {
            encode::encode_header(&Header::ByteRange(range), out);
        }
        content(out);
        if self.body_section {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A deadline that does not come (an open chunk's transaction, until its end-line).
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(std::time::Duration::from_secs(100 * 365 * 86_400)).unwrap_or(now)
}

/// Chunks below this size are copied into the target's output queue; larger ones are written
/// straight from the read buffer.
const SMALL_CHUNK: u64 = 16 * 1024;

fn end_chunk(tid: &TransactionId, flag: Continuation, body_section: bool, out: &mut BytesMut) {
    if body_section {
        encode::encode_body_end(tid, flag, out);
    } else {
        encode::encode_end_line(tid, flag, out);
    }
}
