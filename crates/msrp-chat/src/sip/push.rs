//! Offering a file just shared in a room to a participant (as SylkServer's
//! `push_file_transfer`): the focus calls it with the file (`sendonly`, the file's selector
//! with its hash), `Subject: File shared by …`; an answer starts the transfer, a refusal marks
//! the participant as one who declines (not offered the room's files again).

use std::sync::{Arc, Weak};

use rsipstack::sip::Header;
use tracing::{debug, info};

use super::outgoing::{self, Outgoing};
use super::{State, hangup_for};
use crate::files::RoomFile;
use crate::identity::Identity;
use crate::room::Room;

/// Answers by which a participant refuses a file (RFC 3261 §21: Busy Here, Not Acceptable
/// Here, Unsupported Media Type, Decline, Not Acceptable).
const DECLINES: [u16; 5] = [486, 488, 415, 603, 606];

/// Lets the chat service offer new files through this SIP front end.
pub(super) fn install(st: &Arc<State>) {
    let weak: Weak<State> = Arc::downgrade(st);
    let pusher: crate::server::Pusher = Arc::new(move |room, file, identity, device, secure| {
        if let Some(st) = weak.upgrade() {
            tokio::spawn(push(st, room, file, identity, device, secure));
        }
    });
    let _ = st.chat.inner.pusher.set(pusher);
}

async fn push(
    st: Arc<State>,
    room: Arc<Room>,
    file: Arc<RoomFile>,
    identity: Identity,
    device: Option<String>,
    secure: bool,
) {
    let opts = st.chat.options();
    let invitation = match st.chat.offer_file(&room, &file, &identity, secure) {
        Ok(i) => i,
        Err(e) => {
            debug!(room = %room.uri, user = %identity.uri, "file not offered: {e}");
            return;
        }
    };
    // Through the proxy, to the user (any of its devices may take it); without one, to the
    // device that is in the room.
    let target = match (&opts.outbound_proxy, &device) {
        (None, Some(d)) => d.clone(),
        _ => identity.uri.clone(),
    };
    let Ok(target) = rsipstack::sip::Uri::try_from(target.as_str()) else { return };
    let sender = file.sender.display.clone().unwrap_or_else(|| file.sender.uri.clone());
    let offer = invitation.offer.clone();
    let call = Outgoing {
        room: &room,
        target,
        display: format!("{} (file from {sender})", room.name),
        offer: offer.clone(),
        headers: vec![Header::Subject(format!("File shared by {sender}: {}", file.name()).into())],
        timeout: opts.refer.timeout,
    };
    let answered = match outgoing::invite(&st, call, |_, _| {}).await {
        Ok(a) => a,
        Err((code, reason)) => {
            // Only a refusal by the participant means no more offers: not a call nobody
            // answered (480, 408, the 487 of the focus's own CANCEL), nor a failure on the way.
            let declined = DECLINES.contains(&code);
            if declined {
                st.chat.declined(&room, &identity.key);
            }
            info!(room = %room.uri, user = %identity.uri, file = file.name(), code, declined, "file not taken: {reason}");
            return;
        }
    };
    match st.chat.accept_file_answer(invitation, &answered.resp.body, hangup_for(&st, &answered.id)) {
        Ok(sid) => {
            outgoing::keep_call(&st, &answered, &sid, &room, identity, offer);
        }
        Err(e) => {
            info!(room = %room.uri, user = %identity.uri, "answer to a file offer not usable: {e}");
            outgoing::hang_up(&st, &answered.id).await;
        }
    }
}
