//! The focus as a caller: an INVITE of its own (for a REFER to a room, or to offer a room's
//! file to a participant), from the room, with a Contact marked `;isfocus` (by `FocusContact`),
//! through `chat.outbound_proxy` when set, answering a 401 or 407 with the service's account
//! for the focus (`outbound_auth`) when one is set. The dialog is rsipstack's; its later events (BYE,
//! re-INVITE, end) reach the loop that follows every dialog, and a session made from its
//! answer is a `Call` like any participant's.

use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::DialogId;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Response, Transport};
use rsipstack::transport::SipAddr;
use tracing::debug;

use super::{Call, State, name_addr};
use crate::identity::Identity;
use crate::room::Room;

/// How long a CANCELled INVITE may take to end.
const CANCEL_WAIT: Duration = Duration::from_secs(32);

/// What the focus's INVITE is.
pub(super) struct Outgoing<'a> {
    pub room: &'a Room,
    /// Whom it calls (the Request-URI and To).
    pub target: rsipstack::sip::Uri,
    /// The From's display name.
    pub display: String,
    pub offer: String,
    pub headers: Vec<Header>,
    /// How long the callee may take to answer before a CANCEL.
    pub timeout: Duration,
}

/// A 2xx: the dialog and the answer.
pub(super) struct Answered {
    pub id: DialogId,
    pub resp: Response,
    /// The focus's Contact in this dialog.
    pub contact: String,
}

impl Answered {
    /// The callee's device: the Contact of its answer.
    pub fn device(&self) -> Option<String> {
        self.resp.contact_header().ok().map(|c| name_addr(c.value()).1).filter(|u| !u.is_empty())
    }
}

/// Sends the INVITE and waits for its final answer; each provisional one goes to
/// `provisional` first. `Err((status, reason))` for anything but a 2xx.
pub(super) async fn invite(
    st: &Arc<State>,
    call: Outgoing<'_>,
    provisional: impl Fn(u16, String) + Send + 'static,
) -> Result<Answered, (u16, String)> {
    let opts = st.chat.options();
    let destination = match opts.outbound_proxy.as_deref().map(rsipstack::sip::Uri::try_from) {
        Some(Ok(proxy)) => SipAddr::try_from(&proxy).ok(),
        _ => None,
    };
    let transport = destination
        .as_ref()
        .and_then(|d| d.r#type)
        .or_else(|| {
            call.target.params.iter().find_map(|p| match p {
                rsipstack::sip::Param::Transport(t) => Some(*t),
                _ => None,
            })
        })
        .unwrap_or(Transport::Udp);
    let contact = focus_contact(st, &call.room.name, transport)
        .ok_or_else(|| (503, format!("no SIP listener to send an INVITE over {transport}")))?;
    let caller = rsipstack::sip::Uri::try_from(call.room.uri.as_str())
        .map_err(|_| (500, "the room's URI is not a SIP URI".to_owned()))?;
    let mut headers = call.headers;
    headers.push(Header::Allow(super::ALLOW.into()));
    let option = InviteOption {
        caller_display_name: Some(call.display),
        caller,
        callee: call.target.clone(),
        destination,
        content_type: Some("application/sdp".into()),
        offer: Some(call.offer.into_bytes()),
        contact: contact.clone(),
        headers: Some(headers),
        // rsipstack answers a 401 or 407 with these once (and challenges in the dialog later).
        credential: opts.outbound_auth.as_ref().map(|a| Credential {
            username: a.username.clone(),
            password: a.password.clone(),
            realm: None,
            auth_username: None,
        }),
        ..Default::default()
    };
    let (states, mut progress) = st.dialogs.new_dialog_state_channel();
    let (dialog, pending) =
        st.dialogs.do_invite_async(option, states).map_err(|e| (500, format!("the INVITE could not be made: {e}")))?;
    // Provisional answers to the caller's hook; every state goes on to the loop that follows
    // all dialogs.
    let forward = st.state_tx.clone();
    tokio::spawn(async move {
        while let Some(s) = progress.recv().await {
            if let DialogState::Early(_, resp) = &s {
                provisional(resp.status_code.code(), reason_of(resp));
            }
            if forward.send(s).is_err() {
                return;
            }
        }
    });
    tokio::pin!(pending);
    let result = match tokio::time::timeout(call.timeout, &mut pending).await {
        Ok(r) => r,
        Err(_) => {
            debug!(room = %call.room.uri, target = %call.target, "no answer in time: CANCEL");
            let _ = dialog.cancel().await;
            tokio::time::timeout(CANCEL_WAIT, pending).await.map_err(|_| (408, "Request Timeout".to_owned()))?
        }
    };
    let (id, resp) = match result {
        Ok(Ok((id, Some(resp)))) => (id, resp),
        Ok(Ok((_, None))) => return Err((408, "Request Timeout".into())),
        Err(e) => return Err((500, format!("the INVITE's task failed: {e}"))),
        Ok(Err(e)) => {
            let e = e.to_string();
            let code = if e.to_ascii_lowercase().contains("timeout") { 408 } else { 503 };
            return Err((code, format!("the INVITE failed: {e}")));
        }
    };
    if resp.status_code.code() >= 300 {
        return Err((resp.status_code.code(), reason_of(&resp)));
    }
    // A 2xx that crossed the focus's CANCEL was hung up by rsipstack and left unregistered.
    if st.dialogs.get_dialog(&id).is_none() {
        return Err((487, "Request Terminated".into()));
    }
    Ok(Answered { id, resp, contact: contact.to_string() })
}

/// Makes an answered INVITE a call of `identity` in `room` carrying session `sid`; `false`
/// (and the session ended) when the callee hung up already.
pub(super) fn keep_call(st: &State, a: &Answered, sid: &str, room: &Room, identity: Identity, offer: String) -> bool {
    st.calls.lock().unwrap_or_else(|e| e.into_inner()).insert(
        a.id.clone(),
        Call {
            session_id: Some(sid.to_owned()),
            answer: offer,
            contact: a.contact.clone(),
            flow: None,
            room: room.name.clone(),
            identity,
            device: a.device(),
            files: Vec::new(),
            renegotiating: false,
        },
    );
    if st.dialogs.get_dialog(&a.id).is_none() {
        st.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&a.id);
        st.chat.leave(sid);
        return false;
    }
    true
}

/// Hangs up an answered INVITE whose answer could not be used.
pub(super) async fn hang_up(st: &State, id: &DialogId) {
    if let Some(rsipstack::dialog::dialog::Dialog::Invite(d)) = st.dialogs.get_dialog(id) {
        let _ = d.bye().await;
    }
}

fn reason_of(resp: &Response) -> String {
    resp.reason_phrase().unwrap_or(resp.status_code.text()).to_owned()
}

/// The focus's Contact for a request it sends over `transport` (`;transport` given, so that
/// rsipstack keeps it), from the listener of that transport.
fn focus_contact(st: &State, room: &str, transport: Transport) -> Option<rsipstack::sip::Uri> {
    let (_, addr) = st.listeners.iter().find(|(t, _)| *t == transport)?;
    let uri = super::focus_uri(st, room, transport, *addr, addr.ip().is_unspecified(), ";transport=udp");
    rsipstack::sip::Uri::try_from(uri.as_str()).ok()
}
