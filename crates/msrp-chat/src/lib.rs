//! The chat focus of RFC 7701. First piece: CPIM (RFC 3862), the envelope every chat message
//! travels in; rooms, participants and the SIP side follow (issue 4).

pub mod cpim;
pub mod nickname;
