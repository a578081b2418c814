//! The focus inviting someone into a room, and removing a participant, for a REFER to the
//! room (RFC 4579 §5.5 and §5.8). Here the focus is the offerer: it writes a chat stream offer
//! of its own ([`Chat::invite`]), and the invitee's answer makes the session
//! ([`Chat::accept_answer`]). The SIP side (`sip::refer`) carries both.

use msrp::Uri;
use tracing::info;

use crate::identity::Identity;
use crate::sdp::{AnswerParams, Connect, Offer};
use crate::server::{Chat, Entry, Invited, JoinError};

/// How long a participant removed by REFER has to answer its BYE before its session is ended
/// anyway.
const REMOVAL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A chat stream the focus offered to an invitee, waiting for the answer. Dropping it (the
/// invitee declined, or never answered) forgets the offer.
pub struct Invitation {
    /// The SDP offer for the INVITE.
    pub offer: String,
    invited: Invited,
    local: Uri,
    room: String,
    identity: Identity,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation").field("room", &self.room).field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl Chat {
    /// An offer inviting `identity` into room `room` over MSRP `secure` or not, if it may be
    /// in it (the room's access lists, `max_sessions`: the same refusals as a join).
    pub fn invite(&self, room: &str, identity: Identity, secure: bool) -> Result<Invitation, JoinError> {
        let settings = self.admission(room, &identity)?;
        let inner = &self.inner;
        let opts = &inner.opts;
        // The invitee connects to the focus unless it answers otherwise (and AG's SDK always
        // connects): a listener of that transport is needed.
        let (sid, local) = inner.new_local(secure, Connect::Inbound)?;
        let params = AnswerParams {
            local: &local,
            max_size: opts.max_message_size,
            private_messages: self.private_messages_in(room, &settings),
            wrapped_types: &opts.wrapped_types,
            version: self.next_sdp_version(),
        };
        let offer = crate::sdp::offer(&params);
        Ok(Invitation { offer, invited: Invited::new(inner, sid), local, room: room.to_owned(), identity })
    }

    /// The invitee answered `answer` from `device`: the session it makes, a member of the room
    /// from now on. `on_end` is called if the server ends it (to send the SIP BYE). Refused
    /// (and the INVITE's dialog to be ended by the caller) when the answer has no usable chat
    /// stream of the offered transport, or the room is full.
    pub async fn accept_answer(
        &self,
        inv: Invitation,
        answer: &[u8],
        device: Option<String>,
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Result<String, JoinError> {
        let answer = Offer::parse(answer).map_err(|_| JoinError::NotAcceptable("unreadable SDP answer"))?;
        let stream = answer.answered_stream().ok_or(JoinError::NotAcceptable("no usable chat stream in the answer"))?;
        if stream.secure != inv.local.is_secure() {
            return Err(JoinError::NotAcceptable("the answer changed the MSRP transport"));
        }
        let entry = Entry {
            room: inv.room.clone(),
            identity: inv.identity.clone(),
            device,
            stream,
            sid: inv.invited.sid.clone(),
            local: inv.local.clone(),
        };
        let session = self.enter(entry, on_end).await?;
        // Dropped once the session is in the table: a connection waiting for it finds it.
        drop(inv);
        Ok(session.id.clone())
    }

    /// Ends every session of user `key` in room `room` (a REFER with `method=BYE`); how many
    /// there were. The BYE goes first and its dialog's end ends the session, so the client
    /// sees a hang-up rather than its MSRP connection dropped under it (AG's SDK reports the
    /// latter as a stream failure); one that does not answer is ended `REMOVAL_GRACE` later.
    pub fn remove_user(&self, room: &str, key: &str, why: &str) -> usize {
        let Some(room) = self.active_room(room) else { return 0 };
        let sessions: Vec<_> = room.lock().members.iter().filter(|s| s.identity.key == key).cloned().collect();
        for s in &sessions {
            let Some(hang_up) = s.take_on_end() else {
                self.inner.end_session(s, why, false);
                continue;
            };
            hang_up();
            let (inner, s, why) = (self.inner.clone(), s.clone(), why.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(REMOVAL_GRACE).await;
                inner.end_session(&s, &why, false);
            });
        }
        if !sessions.is_empty() {
            info!(room = %room.uri, user = key, sessions = sessions.len(), "removed from the room: {why}");
        }
        sessions.len()
    }

    /// Whether session `sid` carries MSRP over TLS (`None`: no such session).
    pub fn session_is_secure(&self, sid: &str) -> Option<bool> {
        Some(self.inner.session(sid)?.stream.secure)
    }
}
