//! Files shared in a room (RFC 5547 over RFC 4975, as SylkServer does): a participant offers
//! a file to the room on a call of its own (an `m=message` stream with `a=file-selector`,
//! `sendonly`); the focus receives it into its file directory, checks its size and SHA-1
//! against the selector, tells the room (a notice, and conference-info's `resources`), and
//! offers it to every participant (a call from the focus with the file, `sendonly`; one who
//! declines is not offered the room's files again). Anyone in the room may pull a file it
//! holds (`recvonly` with the file's selector). The room's files go when the room ends, or
//! after `retention`.
//!
//! - [`selector`] and [`sdp`]: the SDP side.
//! - `transfer`: one file going over one MSRP session, either way.
//! - [`Store`] / [`RoomFile`]: the bytes on disk, bounded per room and in all.

pub(crate) mod join;
pub mod sdp;
pub mod selector;
pub(crate) mod transfer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use selector::FileSelector;

use crate::identity::Identity;

/// Prefix of the files the store writes: the only ones it removes from its directory.
const PREFIX: &str = "msrpd-file-";

/// Limits and behaviour of file sharing in rooms (`[chat]` `max_file_size` and the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// Where received files are kept; `None`: file sharing is off (file streams get 488).
    pub dir: Option<PathBuf>,
    /// Largest file accepted (488 above, from the offer's `size`).
    pub max_file_size: u64,
    /// Files one room holds at once (488 beyond).
    pub max_room_files: usize,
    /// Bytes one room holds at once (488 beyond).
    pub max_room_bytes: u64,
    /// Bytes all rooms hold at once, uploads in progress included (488 beyond).
    pub max_total_bytes: u64,
    /// File transfers (uploads, pulls, and the focus's offers being made or sent) at once in
    /// the service (503 beyond; offers beyond it are skipped).
    pub max_transfers: usize,
    /// Uploads and pulls of one user at once (486 beyond).
    pub max_user_transfers: usize,
    /// How long a room keeps a file (`None`: until the room ends).
    pub retention: Option<Duration>,
    /// Offer each new file to every participant (as SylkServer's `push_file_transfer`).
    pub push: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            dir: None,
            max_file_size: 100 * 1024 * 1024,
            max_room_files: 50,
            max_room_bytes: 1024 * 1024 * 1024,
            max_total_bytes: 10 * 1024 * 1024 * 1024,
            max_transfers: 100,
            max_user_transfers: 4,
            retention: Some(Duration::from_secs(24 * 3600)),
            push: true,
        }
    }
}

/// The directory files are kept in, and the bytes reserved in it.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    used: AtomicU64,
    max: u64,
}

impl Store {
    /// Opens (creates) `dir` and removes the files an earlier run left (rooms do not outlive
    /// the process, so neither do their files).
    pub fn open(dir: PathBuf, max: u64) -> std::io::Result<Store> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Store { dir, used: AtomicU64::new(0), max })
    }

    /// Reserves `n` bytes; false when that would exceed the store's bound.
    pub fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(n).filter(|t| *t <= self.max))
            .is_ok()
    }

    pub fn release(&self, n: u64) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(n)));
    }

    /// Where file `id` lives: a name of the store's own, never the sender's.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{PREFIX}{id}"))
    }
}

/// A file a room holds. Dropped with the last holder (the room, a transfer sending it): its
/// bytes are then removed and released.
#[derive(Debug)]
pub(crate) struct RoomFile {
    /// The upload's MSRP session-id: names the file in logs.
    pub id: String,
    /// Name, type, size and hash, all known.
    pub selector: FileSelector,
    pub sender: Identity,
    pub path: PathBuf,
    pub added: Instant,
    store: Arc<Store>,
}

impl RoomFile {
    pub fn size(&self) -> u64 {
        self.selector.size.unwrap_or(0)
    }

    /// The name people see.
    pub fn name(&self) -> &str {
        self.selector.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("unnamed")
    }
}

impl Drop for RoomFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        self.store.release(self.size());
    }
}

/// Files named in a joiner's welcome at most (the rest are counted).
const WELCOME_FILES: usize = 10;

/// What a joiner's welcome says of the room's files (empty when it holds none): later joiners
/// learn what they can pull.
pub(crate) fn welcome_line(files: &[Arc<RoomFile>]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let named: Vec<String> =
        files.iter().rev().take(WELCOME_FILES).map(|f| format!("{} ({})", f.name(), human_size(f.size()))).collect();
    let more = files.len().saturating_sub(WELCOME_FILES);
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!(" Files shared here: {}{tail}.", named.join(", "))
}

/// `12.3 KB`-style sizes for notices.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} bytes") } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_bounded_and_removes_only_its_own_leftovers() {
        let dir = std::env::temp_dir().join(format!("msrpd-store-{}", msrp::id::random_ident()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("msrpd-file-old"), b"x").unwrap();
        std::fs::write(dir.join("keep.txt"), b"x").unwrap();
        let store = Store::open(dir.clone(), 10).unwrap();
        assert!(!dir.join("msrpd-file-old").exists() && dir.join("keep.txt").exists());
        assert!(store.reserve(6) && !store.reserve(5) && store.reserve(4));
        store.release(6);
        assert!(store.reserve(6));
        assert_eq!(human_size(1536), "1.5 KB");
        let _ = std::fs::remove_dir_all(dir);
    }
}
