//! What an operator alerts on, counted where it happens with relaxed atomic adds (the fast
//! path adds once per read batch) and read by whoever exports them (msrpd's `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use msrp::StatusCode;

/// Status codes counted one by one; any other falls in the last slot (`"other"`).
pub const COUNTED_STATUSES: [u16; 11] = [200, 400, 401, 403, 408, 413, 423, 481, 500, 501, 0];

/// Outcomes of an AUTH request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Answered 401 with a challenge.
    Challenged,
    Accepted,
    /// Checked and refused (403, 423, …).
    Refused,
    /// Refused unchecked: the account or address is blocked for guessing.
    Blocked,
}

impl AuthOutcome {
    pub const ALL: [AuthOutcome; 4] =
        [AuthOutcome::Challenged, AuthOutcome::Accepted, AuthOutcome::Refused, AuthOutcome::Blocked];

    pub fn label(self) -> &'static str {
        match self {
            AuthOutcome::Challenged => "challenged",
            AuthOutcome::Accepted => "accepted",
            AuthOutcome::Refused => "refused",
            AuthOutcome::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    auth: [AtomicU64; 4],
    /// Chunks (and other requests) written to a next hop, and their body bytes.
    chunks: AtomicU64,
    bytes: AtomicU64,
    /// Responses the relay sent, and failure REPORTs it made, by status.
    responses: [AtomicU64; COUNTED_STATUSES.len()],
    reports: [AtomicU64; COUNTED_STATUSES.len()],
    /// Time readers waited to keep a rate (`[relay.limits]`), microseconds.
    throttled_micros: AtomicU64,
}

fn slot(status: StatusCode) -> usize {
    COUNTED_STATUSES.iter().position(|s| *s == status.0).unwrap_or(COUNTED_STATUSES.len() - 1)
}

impl Stats {
    pub(crate) fn auth(&self, outcome: AuthOutcome) {
        self.auth[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forwarded(&self, chunks: u64, bytes: u64) {
        self.chunks.fetch_add(chunks, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn responded(&self, status: StatusCode, n: u64) {
        self.responses[slot(status)].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn reported(&self, status: StatusCode) {
        self.reports[slot(status)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn throttled(&self, wait: std::time::Duration) {
        self.throttled_micros.fetch_add(wait.as_micros() as u64, Ordering::Relaxed);
    }

    /// Seconds readers waited to keep a session's or an account's rate.
    pub fn throttled_seconds(&self) -> f64 {
        self.throttled_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    pub fn auth_count(&self, outcome: AuthOutcome) -> u64 {
        self.auth[outcome as usize].load(Ordering::Relaxed)
    }

    /// Chunks and requests written to next hops, and their body bytes.
    pub fn forwarded_totals(&self) -> (u64, u64) {
        (self.chunks.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    /// `(status, count)` of responses sent, 0 standing for any other status.
    pub fn responses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        COUNTED_STATUSES.iter().zip(&self.responses).map(|(s, n)| (*s, n.load(Ordering::Relaxed)))
    }

    /// `(status, count)` of failure REPORTs made, 0 standing for any other status.
    pub fn reports(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        COUNTED_STATUSES.iter().zip(&self.reports).map(|(s, n)| (*s, n.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_slot_or_other() {
        let s = Stats::default();
        s.responded(StatusCode::OK, 3);
        s.responded(StatusCode(599), 1);
        s.reported(StatusCode::REQUEST_TIMEOUT);
        let r: Vec<_> = s.responses().filter(|(_, n)| *n > 0).collect();
        assert_eq!(r, [(200, 3), (0, 1)]);
        assert_eq!(s.reports().find(|(c, _)| *c == 408), Some((408, 1)));
    }
}
