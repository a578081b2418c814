//! A new offer on a call (a re-INVITE, RFC 3261 §14.2, answered per RFC 3264 §8): the chat
//! stream kept, moved, dropped or added again.
//!
//! - Without an offer: the current answer again (the 200 carries an offer, RFC 3261 §14.2).
//! - The same MSRP session (the session-id of the path's last URI, RFC 6714; hosts may
//!   change): a new answer for it.
//! - Another MSRP session (a client that re-creates its chat stream): the participant moves to
//!   it; its nickname goes along; the room sees it leave and join.
//! - No usable chat stream (dropped, or port 0): the participant leaves the room and every
//!   stream is refused with port 0; the call stays up until its BYE, and a later offer with a
//!   chat stream joins the room again (Blink adds and removes chat on a call this way).
//! - A file stream beside the chat (RFC 5547; AG's SDK `add_stream`): an upload to the room or
//!   a pull from it, as on a call of its own, on this call; answered in place, kept while later
//!   offers keep it (same MSRP session), ended when one drops it. It never ends the call.
//! - Other media are refused with port 0 in every answer.
//! - Every answer keeps the call's `o=` origin, its version one up when the answer changed
//!   (RFC 3264 §8), whichever of the above made it.

use std::sync::Arc;

use bytes::Bytes;
use rsipstack::dialog::DialogId;
use tracing::info;

use super::{Call, State, hangup_for};
use crate::sdp::Offer;
use crate::server::JoinRequest;

/// The answer to `body` on call `id`, or the SIP status refusing it (the call then goes on
/// unchanged).
pub(super) async fn answer(st: &Arc<State>, id: &DialogId, body: &[u8]) -> Result<String, u16> {
    // One offer at a time per call (RFC 3261 §14.2: 491 to an overlapping one): two would
    // each work from the same view of the call's streams and one's changes would be lost.
    let call = {
        let mut calls = st.calls.lock().unwrap_or_else(|e| e.into_inner());
        let call = calls.get_mut(id).ok_or(481u16)?;
        if call.renegotiating {
            return Err(491);
        }
        call.renegotiating = true;
        call.clone()
    };
    let result = renegotiate(st, id, call, body).await;
    if let Some(c) = st.calls.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
        c.renegotiating = false;
    }
    result
}

async fn renegotiate(st: &Arc<State>, id: &DialogId, call: Call, body: &[u8]) -> Result<String, u16> {
    let current = call.session_id.as_deref().filter(|s| st.chat.has_session(s));
    // A call that carries a file keeps its stream as it is (a session refresh, say): a
    // transfer is neither moved nor turned into a chat.
    if body.is_empty() || current.is_some_and(|s| st.chat.is_file_call(s)) {
        return Ok(call.answer);
    }
    let offer = Offer::parse(body).map_err(|_| 488u16)?;
    let stream = offer.chat_stream();
    let answer = match (current, stream) {
        (Some(sid), Some(_)) => match st.chat.reanswer(sid, body) {
            Some(answer) => answer,
            None => {
                info!(session = %sid, "re-INVITE moves the chat to another MSRP session");
                let nickname = st.chat.nickname_of(sid);
                st.chat.leave(sid);
                let joined = join(st, id, &call, body).await?;
                if let Some(n) = nickname {
                    st.chat.restore_nickname(&joined.0, n);
                }
                set_session(st, id, Some(joined.0));
                joined.1
            }
        },
        (Some(sid), None) => {
            info!(session = %sid, "re-INVITE drops the chat stream: leaving the room");
            st.chat.leave(sid);
            set_session(st, id, None);
            crate::sdp::refuse_all(&offer, &st.chat.options().msrp_host, st.chat.next_sdp_version())
        }
        (None, Some(_)) => {
            let joined = join(st, id, &call, body).await?;
            set_session(st, id, Some(joined.0));
            joined.1
        }
        (None, None) => crate::sdp::refuse_all(&offer, &st.chat.options().msrp_host, st.chat.next_sdp_version()),
    };
    // Files ride beside the chat only: a call whose chat is gone carries none.
    let chatting = st.calls.lock().unwrap_or_else(|e| e.into_inner()).get(id).is_some_and(|c| c.session_id.is_some());
    let answer = if chatting {
        file_legs(st, id, &call, &offer, body, answer).await
    } else {
        for leg in &call.files {
            st.chat.leave(&leg.sid);
        }
        if let Some(c) = st.calls.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            c.files.clear();
        }
        answer
    };
    // The call's origin, its version one up when the answer changed (RFC 3264 §8).
    let answer = crate::sdp::follow_origin(&call.answer, &answer);
    if let Some(c) = st.calls.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
        c.answer = answer.clone();
    }
    Ok(answer)
}

/// A file stream a chat call carries beside its chat.
#[derive(Clone, Debug)]
pub(super) struct FileLeg {
    /// The transfer's MSRP session-id (the focus's).
    pub sid: String,
    /// The participant's session-id (its path's last URI): the same stream in a later offer.
    theirs: Option<String>,
    /// The focus's `m=` section for it, repeated while the stream stays.
    section: String,
}

/// The file streams of a re-offer on a chat call: the ones the call carries and the offer
/// keeps are answered as before, the ones it drops end, a new one starts (in the `answer`
/// the chat side wrote, where the stream was refused, its section goes in).
async fn file_legs(st: &Arc<State>, id: &DialogId, call: &Call, offer: &Offer, body: &[u8], answer: String) -> String {
    let theirs_of = |f: &crate::files::sdp::FileStream| f.path.last().and_then(|u| u.session_id().map(str::to_owned));
    let streams = crate::files::sdp::file_streams(offer, false);
    let offered: Vec<Option<String>> = streams.iter().map(theirs_of).collect();
    let mut legs = Vec::new();
    for leg in &call.files {
        // Kept while offered (at any position), even once its file went through: the same
        // answer again.
        if offered.contains(&leg.theirs) {
            legs.push(leg.clone());
        } else {
            st.chat.leave(&leg.sid);
        }
    }
    let mut answer = answer;
    for file in streams {
        let (index, theirs) = (file.index, theirs_of(&file));
        let kept = legs.iter().find(|l| l.theirs == theirs).map(|l| l.section.clone());
        let section = match kept {
            Some(section) => Some(section),
            None => {
                let req = JoinRequest {
                    room: call.room.clone(),
                    identity: call.identity.clone(),
                    offer: Bytes::copy_from_slice(body),
                    device: call.device.clone(),
                    // The transfer's end is not the call's: nothing to hang up.
                    on_end: Box::new(|| {}),
                };
                match st.chat.join_file(req, offer, file).await {
                    Ok(joined) => {
                        let section = crate::sdp::section(&joined.answer, index);
                        if let Some(section) = &section {
                            legs.push(FileLeg { sid: joined.session_id, theirs, section: section.clone() });
                        }
                        section
                    }
                    Err(e) => {
                        info!(error = %e, "file stream of a re-INVITE refused (port 0)");
                        None
                    }
                }
            }
        };
        if let Some(section) = section {
            answer = crate::sdp::replace_section(&answer, index, &section);
        }
    }
    let mut calls = st.calls.lock().unwrap_or_else(|e| e.into_inner());
    match calls.get_mut(id) {
        Some(c) => c.files = legs,
        None => {
            // Hung up meanwhile: nothing else would end the transfers started here.
            drop(calls);
            for leg in legs {
                st.chat.leave(&leg.sid);
            }
        }
    }
    answer
}

/// Joins the call's participant again with `offer`: (session-id, answer).
async fn join(st: &Arc<State>, id: &DialogId, call: &Call, offer: &[u8]) -> Result<(String, String), u16> {
    let req = JoinRequest {
        room: call.room.clone(),
        identity: call.identity.clone(),
        offer: Bytes::copy_from_slice(offer),
        device: call.device.clone(),
        on_end: hangup_for(st, id),
    };
    match st.chat.join(req).await {
        Ok(j) => Ok((j.session_id, j.answer)),
        Err(e) => {
            info!(error = %e, "re-INVITE's join refused");
            Err(e.sip_status())
        }
    }
}

fn set_session(st: &State, id: &DialogId, sid: Option<String>) {
    if let Some(c) = st.calls.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
        c.session_id = sid;
    }
}
