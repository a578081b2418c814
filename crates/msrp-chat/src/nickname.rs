//! Chat nicknames (RFC 7701: NICKNAME with `Use-Nickname`): which names are acceptable
//! (else 424), and the key under which two names count as the same (else 425 when another
//! user holds it).
//!
//! The key is NFKC (compatibility forms fold: full-width `Ａｌｉｃｅ`, ligatures, superscripts)
//! followed by lower-casing, then NFKC again, with white space collapsed — so `Alice`,
//! `ALICE`, `Ａｌｉｃｅ` and ` alice ` all collide.

use unicode_normalization::UnicodeNormalization;

/// Longest nickname accepted, in characters.
pub const MAX_NICKNAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NicknameError {
    #[error("nickname longer than {MAX_NICKNAME_CHARS} characters")]
    TooLong,
    #[error("nickname holds control or invisible formatting characters")]
    BadCharacter,
    #[error("nickname has no visible character")]
    Blank,
}

/// A nickname as its owner wrote it (trimmed), and its comparison key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname {
    pub display: String,
    pub key: String,
}

/// Characters refused anywhere in a nickname: controls, and the zero-width and
/// direction-override characters used to make different-looking names look alike.
fn forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

impl Nickname {
    /// Validates `value` (a `Use-Nickname` value, unquoted). An empty value is not a nickname:
    /// callers treat it as releasing the current one.
    pub fn parse(value: &str) -> Result<Nickname, NicknameError> {
        let display = value.trim();
        if display.chars().any(forbidden) {
            return Err(NicknameError::BadCharacter);
        }
        if display.chars().count() > MAX_NICKNAME_CHARS {
            return Err(NicknameError::TooLong);
        }
        let folded: String = display.nfkc().collect::<String>().to_lowercase().nfkc().collect();
        let key = folded.split_whitespace().collect::<Vec<_>>().join(" ");
        if key.is_empty() {
            return Err(NicknameError::Blank);
        }
        Ok(Nickname { display: display.to_owned(), key })
    }

    /// True when the two names may not be held by different users.
    pub fn collides(&self, other: &Nickname) -> bool {
        self.key == other.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        Nickname::parse(s).unwrap().key
    }

    #[test]
    fn look_alikes_collide() {
        let alice = Nickname::parse("Alice").unwrap();
        for other in ["alice", "ALICE", "Ａｌｉｃｅ", "  Alice  ", "Al\u{0069}ce"] {
            assert!(alice.collides(&Nickname::parse(other).unwrap()), "{other:?}");
        }
        assert_eq!(key("ﬁsh"), "fish", "ligatures fold");
        assert_eq!(key("Ｂｏｂ   Smith"), "bob smith", "inner white space collapses");
        assert_eq!(key("e\u{0301}"), key("\u{00e9}"), "composed and decomposed accents are one name");
        assert!(!alice.collides(&Nickname::parse("Alicia").unwrap()));
    }

    #[test]
    fn display_form_is_kept() {
        assert_eq!(Nickname::parse("  Ｎｅｏ ").unwrap().display, "Ｎｅｏ");
    }

    #[test]
    fn malformed_names_are_refused() {
        assert_eq!(Nickname::parse("a\u{7}b"), Err(NicknameError::BadCharacter));
        assert_eq!(Nickname::parse("ad\u{200B}min"), Err(NicknameError::BadCharacter), "zero-width space");
        assert_eq!(Nickname::parse("\u{202E}nimda"), Err(NicknameError::BadCharacter), "right-to-left override");
        assert_eq!(Nickname::parse(&"x".repeat(65)), Err(NicknameError::TooLong));
        assert!(Nickname::parse(&"x".repeat(64)).is_ok());
        assert_eq!(Nickname::parse("   "), Err(NicknameError::Blank));
    }
}
