//! Conference-info subscriptions (RFC 4575 over RFC 6665): `SUBSCRIBE sip:room@domain` with
//! `Event: conference` gets 200 and a NOTIFY with the room's roster, then one NOTIFY per
//! change while the subscription lasts.
//!
//! - Who may subscribe: whoever may join the room (the same Digest or trusted network, the
//!   room's access lists: 403), to a room that has participants now (480 otherwise, as
//!   SylkServer answers).
//! - Bounds: subscriptions per room (503) and per user and room (403), `Expires` between
//!   `min_expires` (423 below) and `max_expires` (cut to it).
//! - One NOTIFY in flight per subscriber: changes that come meanwhile go out together in the
//!   next one, so a subscriber that answers slowly costs one pending document, not a queue.
//!   One that does not answer within `notify_timeout` (or refuses) loses its subscription.
//! - It ends with a final NOTIFY (`Subscription-State: terminated`) on `Expires: 0`, expiry,
//!   the room's closing or the subscriber's leaving it, if it was in (`noresource`), or
//!   shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{State, door, refuse};
use crate::conference::CONTENT_TYPE;
use crate::identity::Identity;
use crate::room::Room;

/// The one event package the focus serves (RFC 4575 §3.1).
pub(crate) const EVENT: &str = "conference";

/// A live subscription.
pub(crate) struct Sub {
    /// Lower-case room name and the subscriber's identity key, for the caps.
    pub room: String,
    pub user: String,
    /// The TCP/TLS flow it came over, kept open while it lasts.
    pub flow: Option<door::FlowKey>,
    expires_at: Mutex<Instant>,
    /// A refresh: the next NOTIFY carries the whole roster and the new expiry.
    refreshed: tokio::sync::Notify,
    /// Ends it (with a final NOTIFY giving `reason`).
    end: CancellationToken,
    reason: Mutex<&'static str>,
    /// Where its NOTIFYs go.
    target: super::notify::Target,
}

impl Sub {
    fn expires_at(&self) -> Instant {
        *self.expires_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the subscription; its final NOTIFY says `reason` (RFC 6665 §4.1.3).
    pub(crate) fn end(&self, reason: &'static str) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        self.end.cancel();
    }
}

/// The event package a request names (its `Event` token, lower-case).
fn event_of(req: &Request) -> Option<String> {
    let v = req.header_value("Event").or_else(|| req.header_value("o"))?;
    Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// Whether a SUBSCRIBE is for the one event package served here (`conference`); if not, the
/// headers of its 489 Bad Event (RFC 6665 §4.2.2: `Allow-Events` names what is). The one
/// check for the front door, the transaction handler and in-dialog refreshes.
pub(crate) fn bad_event(req: &Request) -> Option<Vec<Header>> {
    (event_of(req).as_deref() != Some(EVENT)).then(|| vec![Header::Other("Allow-Events".into(), EVENT.into())])
}

/// What a SUBSCRIBE's Expires asks for: `Ok(duration granted)`, 0 for a one-time fetch,
/// or `Err(min)` when it is too short (423).
fn granted(req: &Request, min: Duration, max: Duration) -> Result<Duration, Duration> {
    let asked = req.header_value("Expires").and_then(|v| v.trim().parse::<u64>().ok());
    match asked {
        None => Ok(max),
        Some(0) => Ok(Duration::ZERO),
        Some(s) if Duration::from_secs(s) < min => Err(min),
        Some(s) => Ok(Duration::from_secs(s).min(max)),
    }
}

/// A new subscription from `identity` (already authenticated).
pub(super) async fn on_subscribe(st: Arc<State>, mut tx: Transaction, identity: Identity) {
    let req = tx.original.clone();
    let opts = st.chat.options().conference.clone();
    let Some(name) = req.uri.user().map(str::to_lowercase) else {
        return refuse(tx, 404, vec![]).await;
    };
    if !st.chat.options().rooms.allows(&name) {
        return refuse(tx, 404, vec![]).await;
    }
    let Some(room) = st.chat.active_room(&name) else {
        debug!(room = %name, "conference subscription to a room without participants: 480");
        return refuse(tx, 480, vec![]).await;
    };
    if !st.chat.settings_of(&room.name).admits(&identity.key) {
        info!(room = %room.uri, user = %identity.uri, "conference subscription refused: not admitted by the room's access lists");
        return refuse(tx, 403, vec![]).await;
    }
    let expires = match granted(&req, opts.min_expires, opts.max_expires) {
        Ok(d) => d,
        Err(min) => {
            return refuse(tx, 423, vec![Header::Other("Min-Expires".into(), min.as_secs().to_string())]).await;
        }
    };
    let (in_room, of_user) = {
        let subs = st.subs.lock().unwrap_or_else(|e| e.into_inner());
        let in_room: Vec<_> = subs.values().filter(|s| s.room == name).collect();
        (in_room.len(), in_room.iter().filter(|s| s.user == identity.key).count())
    };
    if of_user >= opts.max_per_user {
        info!(room = %room.uri, user = %identity.uri, max = opts.max_per_user, "conference subscription refused: too many for this user");
        return refuse(tx, 403, vec![]).await;
    }
    if in_room >= opts.max_per_room {
        info!(room = %room.uri, max = opts.max_per_room, "conference subscription refused: too many for this room");
        return refuse(tx, 503, vec![Header::Other("Retry-After".into(), door::RETRY_AFTER.into())]).await;
    }
    let Some(conn) = tx.connection.clone() else { return };
    let contact = super::local_contact(&st, &conn, &room.name);
    let Some((dialog, target)) = super::open_subscription(&st, &tx, &conn, &contact) else {
        return refuse(tx, 400, vec![]).await;
    };
    let id = dialog.id();
    let headers = vec![
        Header::Contact(format!("<{contact}>").into()),
        Header::Expires((expires.as_secs() as u32).into()),
        Header::Other("Allow-Events".into(), EVENT.into()),
    ];
    if let Err(e) = dialog.accept(Some(headers), None) {
        debug!(error = %e, "SUBSCRIBE not accepted");
        st.dialogs.remove_dialog(&id);
        return;
    }
    let sub = Arc::new(Sub {
        room: name,
        user: identity.key.clone(),
        flow: door::flow_key(&conn),
        expires_at: Mutex::new(Instant::now() + expires),
        refreshed: tokio::sync::Notify::new(),
        end: CancellationToken::new(),
        reason: Mutex::new("timeout"),
        target,
    });
    st.subs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), sub.clone());
    // The 200 goes out before the first NOTIFY (RFC 6665 allows either order; simple UACs
    // such as SIPp scenarios expect this one): `accept` queued it on the transaction, which
    // sends it here rather than in the loop below.
    use rsipstack::transaction::transaction::TransactionEvent;
    match tx.tu_receiver.try_recv() {
        Ok(TransactionEvent::Respond(resp)) => {
            let _ = tx.respond(resp).await;
        }
        Ok(other) => {
            let _ = tx.tu_sender.send(other);
        }
        Err(_) => {}
    }
    let full_state = opts.wants_full_state(req.header_value("User-Agent").as_deref());
    info!(room = %room.uri, user = %identity.uri, expires = expires.as_secs(), full_state, "conference subscription");
    tokio::spawn(notifier(st.clone(), id, sub, room, full_state));
    // Sends the 200, then absorbs retransmissions of the SUBSCRIBE until the transaction ends.
    while tx.receive().await.is_some() {}
}

/// What a refresh sets off once it is answered (so that its 200 leaves before the NOTIFY).
pub(super) enum Then {
    Nothing,
    /// The whole roster again, with the new expiry.
    Notify(Arc<Sub>),
    /// The final NOTIFY.
    End(Arc<Sub>),
}

impl Then {
    pub(super) fn run(self) {
        match self {
            Then::Nothing => {}
            Then::Notify(sub) => sub.refreshed.notify_one(),
            Then::End(sub) => sub.end("timeout"),
        }
    }
}

/// A SUBSCRIBE inside a subscription's dialog: a refresh, or `Expires: 0` to end it.
pub(super) fn on_refresh(st: &State, id: &DialogId, req: &Request) -> (StatusCode, Vec<Header>, Then) {
    let Some(sub) = st.subs.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned() else {
        return (StatusCode::CallTransactionDoesNotExist, vec![], Then::Nothing);
    };
    if let Some(headers) = bad_event(req) {
        return (StatusCode::BadEvent, headers, Then::Nothing);
    }
    let opts = &st.chat.options().conference;
    match granted(req, opts.min_expires, opts.max_expires) {
        Err(min) => {
            let headers = vec![Header::Other("Min-Expires".into(), min.as_secs().to_string())];
            (StatusCode::IntervalTooBrief, headers, Then::Nothing)
        }
        Ok(d) if d.is_zero() => (StatusCode::OK, vec![Header::Expires(0.into())], Then::End(sub)),
        Ok(d) => {
            // A refresh is a target refresh request (RFC 6665 §4.1.2.1).
            if let Some(contact) = req.contact_header().ok().and_then(|c| c.typed().ok()) {
                *sub.target.contact.lock().unwrap_or_else(|e| e.into_inner()) = contact.uri;
            }
            *sub.expires_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + d;
            (StatusCode::OK, vec![Header::Expires((d.as_secs() as u32).into())], Then::Notify(sub))
        }
    }
}

/// Sends the subscription's NOTIFYs until it ends, then forgets it.
async fn notifier(st: Arc<State>, id: DialogId, sub: Arc<Sub>, room: Arc<Room>, full_state: bool) {
    let timeout = st.chat.options().conference.notify_timeout;
    let mut roster = room.lock().roster.subscribe();
    let mut version = 0u32;
    let mut seen: Option<u64> = None;
    let mut whole = true;
    // A participant's subscription ends when it leaves the room (its last device): the
    // subscription was its view of a room it is no longer in, and AG's SDK crashes on a
    // NOTIFY that says `active` while it is tearing its session down.
    let mut was_member: Option<bool> = None;
    loop {
        roster.borrow_and_update();
        let now = Instant::now();
        let expires_at = sub.expires_at();
        let since = if whole { None } else { seen };
        let doc = room.conference_info(since, version.wrapping_add(1), full_state);
        let closed = doc.as_ref().is_some_and(|d| d.2);
        let member = room.lock().has_user(&sub.user);
        let left = was_member.replace(member) == Some(true) && !member;
        let ending = if sub.end.is_cancelled() {
            Some(*sub.reason.lock().unwrap_or_else(|e| e.into_inner()))
        } else if now >= expires_at {
            Some("timeout")
        } else if closed || left {
            Some("noresource")
        } else {
            None
        };
        if doc.is_some() || ending.is_some() || whole {
            let state = match ending {
                Some(reason) => format!("terminated;reason={reason}"),
                None => format!("active;expires={}", expires_at.saturating_duration_since(now).as_secs().max(1)),
            };
            let mut headers = vec![Header::Event(EVENT.into()), Header::SubscriptionState(state.into())];
            let body = doc.as_ref().map(|(body, _, _)| {
                headers.push(Header::ContentType(CONTENT_TYPE.into()));
                body.clone().into_bytes()
            });
            match sub.target.notify(&st.endpoint, headers, body, timeout).await {
                Ok(code) if (200..300).contains(&code) => {}
                other => {
                    let why = match other {
                        Ok(code) => format!("answered {code}"),
                        Err(e) => e,
                    };
                    info!(room = %room.uri, user = %sub.user, "conference subscription ended: NOTIFY {why}");
                    break;
                }
            }
            if let Some((_, seq, _)) = doc {
                version = version.wrapping_add(1);
                seen = Some(seq);
            }
            whole = false;
            if let Some(reason) = ending {
                debug!(room = %room.uri, user = %sub.user, reason, "conference subscription ended");
                break;
            }
        }
        tokio::select! {
            _ = roster.changed() => {}
            _ = tokio::time::sleep_until(sub.expires_at().into()) => {}
            _ = sub.refreshed.notified() => whole = true,
            _ = sub.end.cancelled() => {}
        }
    }
    st.subs.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    st.dialogs.remove_dialog(&id);
}
