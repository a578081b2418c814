//! Room history: the last public messages of each room, replayed to whoever joins.
//!
//! The chat server only sees this trait; the daemon stores history in its database (so it
//! outlives the room and the process), and [`MemoryHistory`] serves tests and deployments that
//! do not want it kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

pub use msrp_auth::BoxFuture;

/// One stored public message, as it was fanned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The sender's identity URI (`sip:alice@example.com`).
    pub sender: String,
    /// The display name it was sent under (its nickname then).
    pub display: Option<String>,
    /// RFC 3339 time of the message (its CPIM DateTime).
    pub datetime: String,
    /// Inner content type.
    pub content_type: String,
    pub body: Bytes,
}

/// Where a room's history lives.
pub trait History: Send + Sync + 'static {
    /// Appends `msg` to `room` and forgets all but the newest `keep` messages of that room.
    fn append<'a>(&'a self, room: &'a str, msg: &'a Stored, keep: usize) -> BoxFuture<'a, Result<(), String>>;

    /// Appends messages of several rooms in order, keeping the newest `keep` per room. Stores
    /// should do this in one transaction: the server hands over everything that queued up
    /// while the previous batch was written.
    fn append_batch<'a>(&'a self, batch: &'a [(String, Stored)], keep: usize) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            for (room, msg) in batch {
                self.append(room, msg, keep).await?;
            }
            Ok(())
        })
    }

    /// The newest `limit` messages of `room`, oldest first.
    fn recent<'a>(&'a self, room: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<Stored>, String>>;
}

/// History kept in memory: bounded per room, lost on restart.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    rooms: Mutex<HashMap<String, VecDeque<Stored>>>,
}

impl History for MemoryHistory {
    fn append<'a>(&'a self, room: &'a str, msg: &'a Stored, keep: usize) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            let list = rooms.entry(room.to_owned()).or_default();
            list.push_back(msg.clone());
            while list.len() > keep {
                list.pop_front();
            }
            Ok(())
        })
    }

    fn recent<'a>(&'a self, room: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<Stored>, String>> {
        Box::pin(async move {
            let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            let list = rooms.get(room).map(|l| l.iter().rev().take(limit).rev().cloned().collect());
            Ok(list.unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Stored {
        Stored {
            sender: "sip:a@x".into(),
            display: None,
            datetime: "2026-01-01T00:00:00Z".into(),
            content_type: "text/plain".into(),
            body: Bytes::from(vec![n]),
        }
    }

    #[tokio::test]
    async fn keeps_the_newest_in_order() {
        let h = MemoryHistory::default();
        for n in 0..5 {
            h.append("r", &msg(n), 3).await.unwrap();
        }
        let got: Vec<u8> = h.recent("r", 10).await.unwrap().iter().map(|m| m.body[0]).collect();
        assert_eq!(got, [2, 3, 4]);
        let got: Vec<u8> = h.recent("r", 2).await.unwrap().iter().map(|m| m.body[0]).collect();
        assert_eq!(got, [3, 4]);
        assert!(h.recent("other", 2).await.unwrap().is_empty());
    }
}
