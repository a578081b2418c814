//! REFER to a room (RFC 4579 §5.5 and §5.8 over RFC 3515), as AG's SDK sends it: out of any
//! dialog, to `sip:room@domain`, with `Refer-To: <sip:carol@…;method=INVITE>` (invite Carol
//! in) or `;method=BYE` (remove her).
//!
//! - Who may: an authenticated participant of the room (403 from anyone else), where the
//!   room's `refer` policy lets participants (403 when it is `none`); within
//!   `max_pending_per_user` (403) and `max_pending` (503) referrals in progress.
//! - 202, then the focus acts: it INVITEs the invitee with a chat stream offer of its own
//!   ([`Chat::invite`]; From the room, Contact with `;isfocus`, Referred-By the referrer,
//!   through `outbound_proxy` when set) and makes the answer a session of the room; or it
//!   ends the named user's sessions with BYE.
//! - Progress goes to the referrer as `message/sipfrag` NOTIFYs in the REFER's dialog
//!   (`Event: refer`): 100 at once, each provisional status, and the final one with
//!   `Subscription-State: terminated`. `Refer-Sub: false` (RFC 4488) asks for none.
//!
//! [`Chat::invite`]: crate::server::Chat::invite

use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::outgoing::{self, Outgoing};
use super::{State, door, hangup_for, name_addr, refuse};
use crate::identity::Identity;
use crate::options::{InviteTransport, ReferPolicy};
use crate::room::Room;

/// The event package of a REFER's implicit subscription (RFC 3515 §2.4.4).
pub(crate) const EVENT: &str = "refer";
/// The body of its NOTIFYs (RFC 3515 §2.4.5).
const SIPFRAG: &str = "message/sipfrag;version=2.0";
/// How long a NOTIFY to the referrer may go unanswered before the focus stops reporting.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(32);
/// Added to the referral timeout for the subscription's `expires`: the final NOTIFY comes
/// before it runs out.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// A referral whose referrer follows it (the implicit subscription).
pub(crate) struct Referral {
    /// Where the NOTIFYs go.
    target: super::notify::Target,
    /// The TCP/TLS flow the REFER came over, kept open while it lasts.
    pub flow: Option<door::FlowKey>,
    /// The referrer unsubscribed: the next NOTIFY is the last.
    quit: CancellationToken,
}

/// What the referrer is told: the latest status line, and whether it is final.
#[derive(Clone, PartialEq, Eq)]
struct Status {
    code: u16,
    reason: String,
}

/// Keeps one referral counted against `max_pending` and `max_pending_per_user`.
struct Pending {
    st: Arc<State>,
    user: String,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut map = self.st.refer_pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// What a Refer-To asks: the target's URI (without `method`) and identity, and the method.
struct Ask {
    uri: rsipstack::sip::Uri,
    identity: Identity,
    bye: bool,
}

/// Reads `Refer-To: <uri;method=M?headers>`: `Err(why)` when it cannot be acted on.
fn read_refer_to(req: &Request) -> Result<Ask, &'static str> {
    let value = req.header_value("Refer-To").or_else(|| req.header_value("r")).ok_or("no Refer-To")?;
    let (display, uri) = name_addr(&value);
    // Embedded headers (`?Replaces=…`) are not for a focus: dropped (RFC 3515 §2.1).
    let uri = uri.split('?').next().unwrap_or("");
    let mut method = "INVITE".to_owned();
    let mut kept = Vec::new();
    for (i, part) in uri.split(';').enumerate() {
        match part.split_once('=') {
            Some((name, value)) if i > 0 && name.eq_ignore_ascii_case("method") => method = value.to_ascii_uppercase(),
            _ => kept.push(part),
        }
    }
    // AG's SDK puts `method` among the header's parameters (`<sip:carol@…>;method=BYE`)
    // rather than the URI's (RFC 3515 §2.1): both are read, the header's winning.
    if let Some((_, params)) = value.rsplit_once('>') {
        for p in params.split(';') {
            if let Some((name, v)) = p.split_once('=')
                && name.trim().eq_ignore_ascii_case("method")
            {
                method = v.trim().to_ascii_uppercase();
            }
        }
    }
    let uri = kept.join(";");
    let bye = match method.as_str() {
        "INVITE" => false,
        "BYE" => true,
        _ => return Err("Refer-To asks for a method other than INVITE or BYE"),
    };
    let identity = Identity::new(&uri, display.as_deref()).ok_or("Refer-To names no user")?;
    let uri = rsipstack::sip::Uri::try_from(uri.as_str()).map_err(|_| "Refer-To is not a SIP URI")?;
    Ok(Ask { uri, identity, bye })
}

/// A REFER to a room from `identity` (already authenticated).
pub(super) async fn on_refer(st: Arc<State>, mut tx: Transaction, identity: Identity) {
    let req = tx.original.clone();
    let opts = st.chat.options();
    let Some(name) = req.uri.user().map(str::to_lowercase) else {
        return refuse(tx, 404, vec![]).await;
    };
    if !opts.rooms.allows(&name) {
        return refuse(tx, 404, vec![]).await;
    }
    // An empty room has nobody who may refer it.
    let room = st.chat.active_room(&name);
    let Some(room) = room.filter(|r| r.lock().has_user(&identity.key)) else {
        info!(room = %name, user = %identity.uri, "REFER from outside the room: 403");
        return refuse(tx, 403, vec![]).await;
    };
    if st.chat.settings_of(&room.name).refer.unwrap_or(opts.refer.policy) == ReferPolicy::Nobody {
        info!(room = %room.uri, user = %identity.uri, "REFER refused (403): the room's refer policy is none");
        return refuse(tx, 403, vec![]).await;
    }
    let ask = match read_refer_to(&req) {
        Ok(a) => a,
        Err(why) => {
            info!(room = %room.uri, user = %identity.uri, "REFER refused (400): {why}");
            return refuse(tx, 400, vec![]).await;
        }
    };
    let Some(pending) = count_in(&st, &identity.key) else {
        info!(room = %room.uri, user = %identity.uri, "REFER refused: too many referrals in progress");
        return refuse(tx, 403, vec![]).await;
    };
    let Some(pending) = pending else {
        info!(max_pending = opts.refer.max_pending, "REFER refused (503): too many referrals in progress");
        return refuse(tx, 503, vec![Header::Other("Retry-After".into(), door::RETRY_AFTER.into())]).await;
    };
    let Some(conn) = tx.connection.clone() else { return };
    let contact = super::local_contact(&st, &conn, &room.name);
    let subscribed = !req.header_value("Refer-Sub").is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let (status_tx, status_rx) = watch::channel(Status { code: 100, reason: "Trying".into() });
    let mut headers = vec![Header::Contact(format!("<{contact}>").into())];
    if subscribed {
        let Some((dialog, target)) = super::open_subscription(&st, &tx, &conn, &contact) else {
            return refuse(tx, 400, vec![]).await;
        };
        let id = dialog.id();
        let referral = Arc::new(Referral { target, flow: door::flow_key(&conn), quit: CancellationToken::new() });
        st.refers.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), referral.clone());
        // 202 (RFC 3515 §2.4.2) with the dialog's tag, so that the NOTIFYs match it.
        let mut tagged = req.clone();
        if let Ok(to) = req.to_header() {
            tagged.headers.unique_push(to.clone().with_tag(id.local_tag.clone().into()).into());
        }
        let mut resp = st.endpoint.make_response(&tagged, StatusCode::Accepted, None);
        resp.headers.extend(headers);
        let _ = tx.respond(resp).await;
        tokio::spawn(reporter(st.clone(), id, referral, status_rx));
    } else {
        headers.push(Header::Other("Refer-Sub".into(), "false".into()));
        let _ = tx.reply_with(StatusCode::Accepted, headers, None).await;
    }
    info!(room = %room.uri, user = %identity.uri, target = %ask.identity.uri, bye = ask.bye, "REFER accepted");
    tokio::spawn(act(st.clone(), room, identity, ask, status_tx, pending));
    // Absorbs retransmissions of the REFER until the transaction ends.
    while tx.receive().await.is_some() {}
}

/// Counts one more referral of `user`: `None` over `max_pending_per_user`, `Some(None)` over
/// `max_pending`.
fn count_in(st: &Arc<State>, user: &str) -> Option<Option<Pending>> {
    let limits = &st.chat.options().refer;
    let mut map = st.refer_pending.lock().unwrap_or_else(|e| e.into_inner());
    if map.get(user).is_some_and(|n| *n >= limits.max_pending_per_user) {
        return None;
    }
    if map.values().sum::<usize>() >= limits.max_pending {
        return Some(None);
    }
    *map.entry(user.to_owned()).or_default() += 1;
    Some(Some(Pending { st: st.clone(), user: user.to_owned() }))
}

/// Does what the REFER asks, leaving each status in `status`; the last is final.
async fn act(
    st: Arc<State>,
    room: Arc<Room>,
    referrer: Identity,
    ask: Ask,
    status: watch::Sender<Status>,
    _n: Pending,
) {
    let done = |code: u16, reason: &str| {
        status.send_replace(Status { code, reason: reason.to_owned() });
    };
    if ask.bye {
        let why = format!("removed by {}", referrer.uri);
        match st.chat.remove_user(&room.name, &ask.identity.key, &why) {
            0 => done(404, "Not Found"),
            _ => done(200, "OK"),
        }
        return;
    }
    let (code, reason) = invite(&st, &room, &referrer, ask, &status).await;
    info!(room = %room.uri, referrer = %referrer.uri, code, "referral done: {reason}");
    done(code, &reason);
}

/// INVITEs the invitee into the room; the final status for the referrer.
async fn invite(
    st: &Arc<State>,
    room: &Arc<Room>,
    referrer: &Identity,
    ask: Ask,
    status: &watch::Sender<Status>,
) -> (u16, String) {
    let opts = st.chat.options();
    let secure = match opts.refer.transport {
        InviteTransport::Tcp => false,
        InviteTransport::Tls => true,
        InviteTransport::Auto => referrer_secure(st, &room.name, &referrer.key)
            .unwrap_or(opts.msrp_port.is_none() && opts.msrps_port.is_some()),
    };
    let invitation = match st.chat.invite(&room.name, ask.identity.clone(), secure) {
        Ok(i) => i,
        Err(e) => return (e.sip_status(), e.to_string()),
    };
    let offer = invitation.offer.clone();
    let call = Outgoing {
        room,
        target: ask.uri.clone(),
        display: room.name.clone(),
        offer: offer.clone(),
        headers: vec![Header::Other("Referred-By".into(), format!("<{}>", referrer.uri))],
        timeout: opts.refer.timeout,
    };
    // Provisional answers go to the referrer, unless a final status is there already.
    let report = status.clone();
    let provisional = move |code: u16, reason: String| {
        report.send_if_modified(|now| {
            let changed = now.code < 200 && now.code != code;
            if changed {
                *now = Status { code, reason };
            }
            changed
        });
    };
    let answered = match outgoing::invite(st, call, provisional).await {
        Ok(a) => a,
        Err(failed) => return failed,
    };
    let device = answered.device();
    match st.chat.accept_answer(invitation, &answered.resp.body, device, hangup_for(st, &answered.id)).await {
        Ok(sid) => match outgoing::keep_call(st, &answered, &sid, room, ask.identity, offer) {
            true => (200, "OK".into()),
            false => (480, "the invitee hung up at once".into()),
        },
        Err(e) => {
            info!(room = %room.uri, target = %ask.uri, "invitee's answer not usable: {e}");
            outgoing::hang_up(st, &answered.id).await;
            (e.sip_status(), e.to_string())
        }
    }
}

/// Whether the referrer's own chat session in `room` carries MSRP over TLS.
fn referrer_secure(st: &State, room: &str, key: &str) -> Option<bool> {
    let sids: Vec<String> = st
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|c| c.room.eq_ignore_ascii_case(room) && c.identity.key == key)
        .filter_map(|c| c.session_id.clone())
        .collect();
    // Its chat call's, not a file call's (which is no session of the chat).
    sids.iter().find_map(|sid| st.chat.session_is_secure(sid))
}

/// Sends the referrer a NOTIFY per status change until the final one, then forgets the
/// referral's dialog.
async fn reporter(st: Arc<State>, id: DialogId, referral: Arc<Referral>, mut status: watch::Receiver<Status>) {
    let expires = st.chat.options().refer.timeout + EXPIRY_MARGIN;
    loop {
        let now = status.borrow_and_update().clone();
        let last = now.code >= 200 || referral.quit.is_cancelled();
        let state = if last {
            "terminated;reason=noresource".to_owned()
        } else {
            format!("active;expires={}", expires.as_secs())
        };
        let headers = vec![
            Header::Event(EVENT.into()),
            Header::SubscriptionState(state.into()),
            Header::ContentType(SIPFRAG.into()),
        ];
        let body = format!("SIP/2.0 {} {}\r\n", now.code, now.reason).into_bytes();
        match referral.target.notify(&st.endpoint, headers, Some(body), NOTIFY_TIMEOUT).await {
            Ok(code) if (200..300).contains(&code) => {}
            other => {
                debug!(dialog = %id, ?other, "referrer did not take the NOTIFY: no more reports");
                break;
            }
        }
        if last {
            break;
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { break },
            _ = referral.quit.cancelled() => {}
        }
    }
    st.refers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    st.dialogs.remove_dialog(&id);
}

/// A SUBSCRIBE in a referral's dialog: a refresh (200), or `Expires: 0`, after which one
/// last NOTIFY ends the reports (RFC 6665 §4.2.1.4).
pub(super) fn on_refresh(st: &State, id: &DialogId, req: &Request) -> Option<(StatusCode, Vec<Header>)> {
    let referral = st.refers.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()?;
    let expires = req.header_value("Expires").and_then(|v| v.trim().parse::<u32>().ok());
    if expires == Some(0) {
        referral.quit.cancel();
        return Some((StatusCode::OK, vec![Header::Expires(0.into())]));
    }
    let granted = (st.chat.options().refer.timeout + EXPIRY_MARGIN).as_secs() as u32;
    Some((StatusCode::OK, vec![Header::Expires(granted.into())]))
}

/// Referrals followed now (for the idle-flow sweep).
pub(super) fn flows(st: &State) -> Vec<door::FlowKey> {
    st.refers.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(|r| r.flow).collect()
}
