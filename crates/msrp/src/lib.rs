//! Sans-IO MSRP (RFC 4975) codec.
//!
//! No sockets, no runtime, no clock: callers feed bytes in and take frames out, so the relay,
//! the chat server, the load generator and the tests all share one implementation and drive it
//! with whatever I/O (or none) they like.
//!
//! - [`uri`]: `msrp://` / `msrps://` URIs with RFC 4975 §6.1 comparison.
//! - [`header`]: every registered header, typed; unknown headers kept verbatim.
//! - [`message`]: requests, responses, methods, status codes.
//! - [`decode`]: a resumable streaming decoder that hands bodies out in pieces.
//! - [`lex`]: complete small frames split in place, for a relay's fast path.
//! - [`encode`]: frames out, with end-line collision checks.
//! - [`report`]: when to answer, when to REPORT, and how those frames look (RFC 4975 §7).
//! - [`id`]: random transaction, message and session identifiers.

pub mod decode;
pub mod encode;
pub mod header;
pub mod id;
pub mod lex;
pub mod message;
pub mod report;
mod syntax;
pub mod uri;

pub use bytes::{Bytes, BytesMut};
pub use bytestring::ByteString;
pub use decode::{DecodeError, Decoder, Event, Limits};
pub use header::{Header, Headers};
pub use message::{Continuation, Message, Method, Request, Response, StatusCode};
pub use uri::Uri;
