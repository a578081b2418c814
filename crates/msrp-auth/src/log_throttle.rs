//! Warnings that a peer can trigger at will (refused connections, dropped messages) would
//! flood the log during an attack or an overload; they are counted and logged at most once a
//! second, with the count so far.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two log lines about the same kind of event.
const INTERVAL: Duration = Duration::from_secs(1);

/// Counts one kind of event and says when to log it.
#[derive(Debug, Default)]
pub struct LogThrottle {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl LogThrottle {
    /// Counts one more event; `Some(events so far)` when a log line is due now.
    pub fn note(&self) -> Option<u64> {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= INTERVAL) {
            *last = Some(Instant::now());
            return Some(n);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_running_count() {
        let t = LogThrottle::default();
        assert_eq!(t.note(), Some(1));
        assert_eq!((0..100).filter_map(|_| t.note()).count(), 0, "the rest of the second is quiet");
        *t.last.lock().unwrap() = Some(Instant::now() - INTERVAL);
        assert_eq!(t.note(), Some(102), "the next line carries the count");
    }
}
