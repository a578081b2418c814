//! Random identifiers: transaction ids, Message-IDs and relay session-ids.
//!
//! RFC 4975 §7.1 asks for transaction ids that are hard to guess and unique within a session;
//! relays use session-ids as capabilities (RFC 4976 §5: anyone who knows one can send into the
//! session), so both come from a CSPRNG (rand's thread-local ChaCha, seeded by the OS).

use rand::Rng;

/// Alphanumerics only: valid in `ident` (tids, Message-IDs) and in session-ids, and never the
/// `-` that starts an end-line.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters in a generated ident: 16 × log2(62) ≈ 95 random bits (RFC 4975 §7.1 asks for
/// at least 64 for tids; RFC 4976 §5 sessions get the same).
pub const IDENT_LEN: usize = 16;

/// A random 16-character alphanumeric identifier (≈ 95 bits).
pub fn random_ident() -> String {
    random_ident_bytes().iter().map(|&b| b as char).collect()
}

/// [`random_ident`] without the allocation.
pub fn random_ident_bytes() -> [u8; IDENT_LEN] {
    let mut rng = rand::rng();
    let mut out = [0u8; IDENT_LEN];
    // Six bits per character, the 2 of 64 values beyond the alphabet rejected: uniform, and
    // no 128-bit division (which showed in the relay's profile: one tid per forwarded chunk).
    // A 64-bit draw yields ten characters, so two draws almost always suffice.
    let mut filled = 0;
    while filled < IDENT_LEN {
        let mut x = rng.next_u64();
        for _ in 0..10 {
            let v = (x & 63) as usize;
            x >>= 6;
            if v < ALPHABET.len() {
                out[filled] = ALPHABET[v];
                filled += 1;
                if filled == IDENT_LEN {
                    break;
                }
            }
        }
    }
    out
}

/// A random session-id for a relay's Use-Path or an endpoint's a=path (≥ 80 bits, URL-safe).
pub fn random_session_id() -> String {
    random_ident()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn idents_are_valid_and_do_not_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| random_ident()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), IDENT_LEN);
            assert!(crate::syntax::is_ident(id, 32));
        }
    }

    #[test]
    fn every_position_varies() {
        // A broken draw (e.g. x exhausted to zero) would pin the last characters to '0'.
        let ids: Vec<Vec<u8>> = (0..200).map(|_| random_ident().into_bytes()).collect();
        for pos in 0..IDENT_LEN {
            let distinct: HashSet<u8> = ids.iter().map(|id| id[pos]).collect();
            assert!(distinct.len() > 20, "position {pos} barely varies");
        }
    }
}
