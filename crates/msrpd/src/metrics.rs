//! `[metrics] listen`: Prometheus text at `/metrics` and `/health`, read from the services'
//! own counters when scraped (nothing is recorded per event here).
//!
//! Written out rather than taken from `metrics-exporter-prometheus`: its HTTP listener brings
//! hyper and h2 (about 30 crates), and even without it ~16 (evmap, quanta, …), for what is a
//! handful of relaxed atomics the services keep anyway and a text format of one line per
//! value. The listener below answers one GET per connection, bounded in size, time and number.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use msrp_chat::Chat;
use msrp_chat::sip::SipServer;
use msrp_relay::Relay;
use msrp_relay::stats::AuthOutcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Scrapes served at once; more wait for a slot.
const MAX_SCRAPES: usize = 16;
/// A scrape's request must arrive within this, and fit in this many bytes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 8 * 1024;

/// What the exporter reads.
#[derive(Clone, Default)]
pub struct Sources {
    pub relay: Option<Relay>,
    pub chat: Option<(Chat, Arc<SipServer>)>,
    pub credentials: Option<Arc<crate::store::CachedCredentials>>,
}

/// Serves `/metrics` and `/health` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, sources: Sources) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics at http://{addr}/metrics");
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (mut stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut buf = Vec::with_capacity(1024);
            let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
                    let mut chunk = [0u8; 1024];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            });
            if !matches!(read.await, Ok(true)) {
                debug!(%peer, "metrics request incomplete");
                return;
            }
            let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let mut words = line.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (status, kind, body) = match (method, path) {
                ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", render(&sources)),
                ("GET", "/health") => ("200 OK", "text/plain", "ok\n".to_owned()),
                ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
                _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
        });
    }
}

/// One metric family: HELP and TYPE, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The Prometheus text exposition (version 0.0.4) of every counter the services keep.
pub fn render(sources: &Sources) -> String {
    let mut out = String::with_capacity(4096);
    family(&mut out, "msrpd_up", "gauge", "1 while msrpd serves.", &[("", 1)]);
    if let Some(relay) = &sources.relay {
        let (tcp, tls) = relay.connections_by_transport();
        family(
            &mut out,
            "msrpd_relay_connections",
            "gauge",
            "Open relay connections, accepted and dialled.",
            &[("transport=\"tcp\"", tcp as u64), ("transport=\"tls\"", tls as u64)],
        );
        let (tcp, tls) = relay.sessions_by_transport();
        family(
            &mut out,
            "msrpd_relay_sessions",
            "gauge",
            "Relay sessions (RFC 4976 AUTH), by their client's transport.",
            &[("transport=\"tcp\"", tcp as u64), ("transport=\"tls\"", tls as u64)],
        );
        let stats = relay.stats();
        let labels: Vec<String> = AuthOutcome::ALL.iter().map(|o| format!("outcome=\"{}\"", o.label())).collect();
        let samples: Vec<(&str, u64)> =
            AuthOutcome::ALL.iter().zip(&labels).map(|(o, l)| (l.as_str(), stats.auth_count(*o))).collect();
        family(&mut out, "msrpd_relay_auth_total", "counter", "AUTH requests by outcome.", &samples);
        let (chunks, bytes) = stats.forwarded_totals();
        family(
            &mut out,
            "msrpd_relay_forwarded_chunks_total",
            "counter",
            "Chunks and requests written to a next hop.",
            &[("", chunks)],
        );
        family(&mut out, "msrpd_relay_forwarded_bytes_total", "counter", "Body bytes relayed.", &[("", bytes)]);
        by_status(&mut out, "msrpd_relay_responses_total", "Responses the relay sent, by status.", stats.responses());
        by_status(&mut out, "msrpd_relay_failure_reports_total", "Failure REPORTs the relay made.", stats.reports());
        let _ = writeln!(
            out,
            "# HELP msrpd_relay_throttled_seconds_total Time senders were read more slowly to keep [relay.limits] rates."
        );
        let _ = writeln!(out, "# TYPE msrpd_relay_throttled_seconds_total counter");
        let _ = writeln!(out, "msrpd_relay_throttled_seconds_total {:.6}", stats.throttled_seconds());
        family(
            &mut out,
            "msrpd_relay_fast_path_frames_total",
            "counter",
            "Frames taken by the relay's fast path.",
            &[("", relay.fast_path_frames())],
        );
    }
    if let Some(credentials) = &sources.credentials {
        let db = credentials.stats();
        family(
            &mut out,
            "msrpd_db_lookups_total",
            "counter",
            "Account lookups that reached the database (not answered by the cache).",
            &[("", db.queries)],
        );
        family(
            &mut out,
            "msrpd_db_errors_total",
            "counter",
            "Account lookups that failed (database down, slow or refusing).",
            &[("", db.failures)],
        );
        let _ = writeln!(out, "# HELP msrpd_db_lookup_seconds_total Time spent in account lookups.");
        let _ = writeln!(out, "# TYPE msrpd_db_lookup_seconds_total counter");
        let _ = writeln!(out, "msrpd_db_lookup_seconds_total {:.6}", db.query_seconds);
    }
    if let Some((chat, sip)) = &sources.chat {
        let (fanned, dropped) = chat.counters();
        family(&mut out, "msrpd_chat_rooms", "gauge", "Chat rooms.", &[("", chat.room_count() as u64)]);
        family(
            &mut out,
            "msrpd_chat_participants",
            "gauge",
            "Chat sessions (a participant's device).",
            &[("", chat.session_count() as u64)],
        );
        family(
            &mut out,
            "msrpd_chat_messages_fanned_out_total",
            "counter",
            "Messages offered to participants, one per recipient.",
            &[("", fanned)],
        );
        family(
            &mut out,
            "msrpd_chat_participants_dropped_total",
            "counter",
            "Participants dropped as too slow.",
            &[("", dropped)],
        );
        family(&mut out, "msrpd_sip_calls", "gauge", "SIP calls into rooms.", &[("", sip.call_count() as u64)]);
        family(
            &mut out,
            "msrpd_sip_connections",
            "gauge",
            "SIP TCP/TLS connections.",
            &[("", sip.connection_count() as u64)],
        );
        let (answered, dropped) = sip.door_counters();
        family(
            &mut out,
            "msrpd_sip_stateless_answers_total",
            "counter",
            "SIP requests answered without a transaction (challenges, refusals, OPTIONS).",
            &[("", answered)],
        );
        family(
            &mut out,
            "msrpd_sip_rate_dropped_total",
            "counter",
            "SIP requests dropped over their source's rate.",
            &[("", dropped)],
        );
    }
    out
}

fn by_status(out: &mut String, name: &str, help: &str, counts: impl Iterator<Item = (u16, u64)>) {
    let labels: Vec<(String, u64)> = counts
        .map(|(s, n)| (if s == 0 { "status=\"other\"".to_owned() } else { format!("status=\"{s}\"") }, n))
        .collect();
    let samples: Vec<(&str, u64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    family(out, name, "counter", help, &samples);
}

/// Binds the metrics listener when `[metrics] listen` is set.
pub fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, String> {
    let Some(addr) = addr else { return Ok(None) };
    crate::listen::bind(addr).map(Some).map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))
}
