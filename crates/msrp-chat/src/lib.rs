//! The chat focus of RFC 7701: multi-party chat rooms joined by a SIP INVITE, with MSRP
//! (RFC 4975) sessions carrying CPIM (RFC 3862) messages.
//!
//! - [`cpim`], [`nickname`], [`identity`], [`judge`], [`sdp`]: the rules, as plain code.
//! - [`server::Chat`]: rooms, sessions, MSRP connections and fan-out on tokio.
//! - [`history`]: where past messages are kept.
//! - [`sip`]: the SIP user agent server that joins and hangs up participants.

pub mod conference;
mod conn;
pub mod cpim;
pub mod files;
pub mod history;
pub mod identity;
mod invite;
pub mod judge;
pub mod nickname;
pub mod options;
mod room;
pub mod sdp;
pub mod server;
mod session;
pub mod sip;
pub mod time;

pub use history::{History, MemoryHistory, Stored};
pub use identity::Identity;
pub use invite::Invitation;
pub use options::{
    ChatOptions, ConferenceOptions, InviteTransport, OutboundAuth, ReferOptions, ReferPolicy, RoomPolicy, RoomSettings,
    acl_entry_is_valid,
};
pub use server::{Chat, JoinError, JoinRequest, Joined};
