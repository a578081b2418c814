//! Calls that carry a file rather than the chat: an upload to the room or a pull from it
//! (the participant's INVITE), a push to a participant (the focus's INVITE); a new file
//! reaching the room; files expiring.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use msrp::Uri;
use tracing::{info, warn};

use super::RoomFile;
use super::sdp::{Direction, FileStream, file_stream};
use super::selector::FileSelector;
use super::transfer::{self, Kind, Transfer};
use crate::identity::Identity;
use crate::judge;
use crate::room::Room;
use crate::sdp::{Connect, Offer};
use crate::server::{Chat, Inner, Invited, JoinError, JoinRequest, Joined};
use crate::session::Out;
use crate::time::now_rfc3339;

/// How often rooms are checked for files past their retention.
const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// A file the focus offered a participant, waiting for the answer (dropping it forgets it).
pub(crate) struct FileInvitation {
    /// Counted against `max_transfers` while the offer is out.
    _pending: PushSlot,
    pub offer: String,
    invited: Invited,
    local: Uri,
    room: Arc<Room>,
    identity: Identity,
    file: Arc<RoomFile>,
}

/// One offer being made, counted in `Inner::pushes`.
struct PushSlot(Arc<Inner>);

impl Drop for PushSlot {
    fn drop(&mut self) {
        self.0.pushes.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Chat {
    /// A participant's call with a file stream (`join` found no chat stream): an upload of a
    /// new file to the room, or a pull of one it holds. The caller must be in the room (a chat
    /// session of its own there; 480 for a room nobody is in, 403 otherwise).
    pub(crate) async fn join_file(
        &self,
        req: JoinRequest,
        offer: &Offer,
        stream: FileStream,
    ) -> Result<Joined, JoinError> {
        let inner = &self.inner;
        let opts = &inner.opts.files;
        let store = inner.files.clone().ok_or(JoinError::NotAcceptable("file sharing is off"))?;
        let room = self.active_room(&req.room).ok_or(JoinError::Empty)?;
        if inner.transfers_of(&req.identity.key) >= opts.max_user_transfers {
            info!(room = %room.uri, user = %req.identity.uri, "file call refused (486): max_user_file_transfers");
            return Err(JoinError::UserBusy);
        }
        // Only those in the room share into it or take from it: the focus offers every new file
        // to everyone, so a stranger must not be able to post one.
        if !room.lock().has_user(&req.identity.key) {
            info!(room = %room.uri, user = %req.identity.uri, "file call refused (403): not in the room");
            return Err(JoinError::Forbidden);
        }
        let (kind, selector) = match stream.direction {
            Direction::Upload => {
                let size = stream.selector.size.ok_or(JoinError::NotAcceptable("the file's size is not given"))?;
                if size == 0 {
                    return Err(JoinError::NotAcceptable("the file is empty"));
                }
                if size > opts.max_file_size {
                    return Err(JoinError::NotAcceptable("the file is larger than max_file_size"));
                }
                if !store.reserve(size) {
                    warn!(room = %room.uri, size, "file refused: the file store is full (max_file_bytes)");
                    return Err(JoinError::NotAcceptable("the file store is full"));
                }
                {
                    // Uploads in progress count with the files held: concurrent ones cannot
                    // overshoot the room's bounds and be dropped after their sender was told 200.
                    let mut st = room.lock();
                    let held: u64 = st.files.iter().map(|f| f.size()).sum::<u64>() + st.uploading.1;
                    let refused = if st.files.len() + st.uploading.0 >= opts.max_room_files {
                        Some("the room holds max_room_files files")
                    } else if held + size > opts.max_room_bytes {
                        Some("the room's files would exceed max_room_bytes")
                    } else {
                        None
                    };
                    if let Some(why) = refused {
                        drop(st);
                        store.release(size);
                        return Err(JoinError::NotAcceptable(why));
                    }
                    st.uploading.0 += 1;
                    st.uploading.1 += size;
                }
                let id = msrp::id::random_session_id();
                let rx = transfer::receiving(store.clone(), store.path(&id), size, room.clone());
                (Kind::Upload(Box::new(tokio::sync::Mutex::new(rx))), stream.selector.clone())
            }
            Direction::Download => {
                let file = find(&room, &stream.selector).ok_or(JoinError::NoSuchFile)?;
                let sel = FileSelector { name: Some(file.name().to_owned()), ..file.selector.clone() };
                (Kind::Download(file), sel)
            }
        };
        let (sid, local) = inner.new_local(stream.secure, stream.connect)?;
        let answer = super::sdp::answer(offer, &stream, &local, &selector, self.next_sdp_version());
        let t =
            Arc::new(Transfer::new(sid.clone(), local, room.clone(), req.identity, stream, kind, false, req.on_end));
        inner.add_transfer(t.clone())?;
        let what = match t.stream.direction {
            Direction::Upload => "uploading",
            Direction::Download => "fetching",
        };
        info!(room = %room.uri, user = %t.identity.uri, transfer = %sid, file = selector.name.as_deref().unwrap_or(""), size = ?selector.size, "{what} a file");
        transfer::start(inner, &t);
        Ok(Joined { session_id: sid, answer })
    }

    /// The focus's offer of `file` to the participant `identity` (a push), over MSRP `secure`
    /// or not.
    pub(crate) fn offer_file(
        &self,
        room: &Arc<Room>,
        file: &Arc<RoomFile>,
        identity: &Identity,
        secure: bool,
    ) -> Result<FileInvitation, JoinError> {
        let inner = &self.inner;
        // Offers being made count with the transfers: a burst of new files cannot start more
        // calls than `max_transfers`.
        let slot = {
            use std::sync::atomic::Ordering;
            let held = inner.pushes.fetch_add(1, Ordering::AcqRel);
            let slot = PushSlot(inner.clone());
            if held + inner.transfer_count() >= inner.opts.files.max_transfers {
                return Err(JoinError::Busy);
            }
            slot
        };
        let (sid, local) = inner.new_local(secure, Connect::Inbound)?;
        let sel = FileSelector { name: Some(file.name().to_owned()), ..file.selector.clone() };
        // A file-transfer-id of its own per offer (RFC 5547 §8).
        let offer = super::sdp::offer(&local, &sel, &sid, self.next_sdp_version());
        Ok(FileInvitation {
            _pending: slot,
            offer,
            invited: Invited::new(inner, sid),
            local,
            room: room.clone(),
            identity: identity.clone(),
            file: file.clone(),
        })
    }

    /// The participant took the pushed file: its answer starts the transfer.
    pub(crate) fn accept_file_answer(
        &self,
        inv: FileInvitation,
        answer: &[u8],
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Result<String, JoinError> {
        let parsed = Offer::parse(answer).map_err(|_| JoinError::NotAcceptable("unreadable SDP answer"))?;
        let mut stream =
            file_stream(&parsed, true).ok_or(JoinError::NotAcceptable("no usable file stream in the answer"))?;
        if stream.secure != inv.local.is_secure() {
            return Err(JoinError::NotAcceptable("the answer changed the MSRP transport"));
        }
        stream.direction = Direction::Download;
        stream.selector = inv.file.selector.clone();
        let t = Arc::new(Transfer::new(
            inv.invited.sid.clone(),
            inv.local.clone(),
            inv.room.clone(),
            inv.identity.clone(),
            stream,
            Kind::Download(inv.file.clone()),
            true,
            on_end,
        ));
        self.inner.add_transfer(t.clone())?;
        transfer::start(&self.inner, &t);
        let sid = inv.invited.sid.clone();
        // Dropped once the transfer is in the table: a connection waiting for it finds it.
        drop(inv);
        Ok(sid)
    }

    /// `key` declined a file the focus offered: it is not offered the room's files again.
    pub(crate) fn declined(&self, room: &Room, key: &str) {
        room.lock().declined.insert(key.to_owned());
    }

    /// Whether `sid` is a file transfer's (its call carries a file, not the chat).
    pub fn is_file_call(&self, sid: &str) -> bool {
        self.inner.transfer(sid).is_some()
    }

    /// File transfers in progress.
    pub fn transfer_count(&self) -> usize {
        self.inner.transfer_count()
    }

    /// Files held by room `name` (names and sizes), for operators and tests.
    pub fn room_files(&self, name: &str) -> Vec<(String, u64)> {
        let Some(room) = self.active_room(name) else { return Vec::new() };
        room.lock().files.iter().map(|f| (f.name().to_owned(), f.size())).collect()
    }
}

/// The room's file a pull names: by hash, else by name.
fn find(room: &Room, sel: &FileSelector) -> Option<Arc<RoomFile>> {
    let st = room.lock();
    let by = |f: &&Arc<RoomFile>| match (&sel.sha1, &sel.name) {
        (Some(h), _) => f.selector.sha1.as_ref() == Some(h),
        (None, Some(n)) => f.name() == n,
        (None, None) => false,
    };
    st.files.iter().rev().find(by).cloned()
}

impl Inner {
    /// A file arrived whole: the room holds it (in place of its upload's reservation; dropped if
    /// the room closed or its sender left meanwhile), is told, and every participant but its
    /// sender (and those who declined one before) is offered it.
    pub(crate) fn add_file(self: &Arc<Self>, room: &Arc<Room>, file: RoomFile) {
        let opts = &self.opts.files;
        let file = Arc::new(file);
        let mut targets: Vec<(Identity, Option<String>, bool)> = Vec::new();
        {
            let mut st = room.lock();
            st.uploading.0 = st.uploading.0.saturating_sub(1);
            st.uploading.1 = st.uploading.1.saturating_sub(file.size());
            if st.closed {
                info!(room = %room.uri, file = file.name(), "file dropped: the room closed meanwhile");
                drop(st);
                return;
            }
            if !st.has_user(&file.sender.key) {
                info!(room = %room.uri, file = file.name(), "file dropped: its sender left the room meanwhile");
                drop(st);
                return;
            }
            st.files.push(file.clone());
            st.roster.touch_room();
            for m in st.members.iter() {
                let key = &m.identity.key;
                if *key == file.sender.key || st.declined.contains(key) || targets.iter().any(|(i, ..)| i.key == *key) {
                    continue;
                }
                targets.push((m.identity.clone(), m.device.clone(), m.stream.secure));
            }
        }
        let who = file.sender.display.clone().unwrap_or_else(|| file.sender.uri.clone());
        let text = format!("{who} shared the file {} ({})", file.name(), super::human_size(file.size()));
        info!(room = %room.uri, user = %file.sender.uri, file = file.name(), id = %file.id, size = file.size(), "file shared");
        let body = judge::notice(&room.uri, &now_rfc3339(), &text);
        self.notice_all(room, Out { body, quiet: false });
        if !opts.push {
            return;
        }
        if let Some(push) = self.pusher.get() {
            for (identity, device, secure) in targets {
                push(room.clone(), file.clone(), identity, device, secure);
            }
        }
    }
}

/// Drops files older than `keep` from every open room, once a minute, until the service ends.
pub(crate) async fn expire(inner: Weak<Inner>, keep: Duration) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        for room in inner.open_rooms() {
            // Taken out under the lock, dropped (their bytes removed) outside it.
            let expired: Vec<Arc<RoomFile>> = {
                let mut st = room.lock();
                let (old, kept): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut st.files).into_iter().partition(|f| now.duration_since(f.added) >= keep);
                st.files = kept;
                if !old.is_empty() {
                    st.roster.touch_room();
                }
                old
            };
            if !expired.is_empty() {
                info!(room = %room.uri, removed = expired.len(), "files past their retention removed");
            }
        }
    }
}
