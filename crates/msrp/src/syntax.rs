//! Character classes and small scanners shared by the header and URI parsers
//! (RFC 4975 §9 ABNF, which borrows its core rules from RFC 3261 and RFC 3986).

/// Builds a 256-entry membership table: these predicates run for every byte of every header
/// name, id and URI on the hot path, and one indexed load beats a chain of comparisons.
pub(crate) const fn table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

static IDENT_CHARS: [bool; 256] = table(b".-+%=");
static TOKEN_CHARS: [bool; 256] = table(b"-.!%*_+`'~");

/// `ident-char = alphanum / "." / "-" / "+" / "%" / "="` (RFC 4975 §9).
pub(crate) fn is_ident_char(b: u8) -> bool {
    IDENT_CHARS[b as usize]
}

/// `ident = alphanum 3*31ident-char` (RFC 4975 §9): 4 to 32 characters.
pub(crate) fn is_ident(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    (4..=max).contains(&b.len()) && b[0].is_ascii_alphanumeric() && b.iter().all(|&c| is_ident_char(c))
}

/// A request method as clients send it. RFC 4975 §9 says `method = 1*UPALPHA`, but AG's
/// msrplib (Blink, SylkServer) sends `FILE_OFFSET` before every file transfer, so a relay
/// that holds to the grammar drops real clients: a letter, then letters, digits, `_` or `-`.
/// The leading letter keeps a method apart from a status code.
pub(crate) fn is_method(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_alphabetic)
        && s.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// RFC 3261 `token` characters (used by auth schemes, parameter names, MIME types).
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN_CHARS[b as usize]
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// RFC 2045 §5.1 `token`: visible ASCII except `tspecials`.
static MIME_TOKEN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x21;
    while c < 0x7f {
        t[c] = true;
        c += 1;
    }
    let specials = b"()<>@,;:\\\"/[]?=";
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] = false;
        i += 1;
    }
    t
};

pub(crate) fn is_mime_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| MIME_TOKEN_CHARS[b as usize])
}

/// `utf8text`: any text without control characters other than tab (RFC 4975 §9 `utf8text`
/// allows HTAB, SP and visible UTF-8).
pub(crate) fn is_utf8text(s: &str) -> bool {
    s.chars().all(|c| c == '\t' || !c.is_control())
}

/// Parses a `quoted-string` at the start of `s` (RFC 3261 §25.1: `"` … `"` with `\` escapes).
/// Returns the unescaped content and the rest of the input after the closing quote.
pub(crate) fn quoted_string(s: &str) -> Option<(std::borrow::Cow<'_, str>, &str)> {
    let inner = s.strip_prefix('"')?;
    let bytes = inner.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => {
                let raw = &inner[..i];
                let rest = &inner[i + 1..];
                let value = if escaped {
                    let mut out = String::with_capacity(raw.len());
                    let mut chars = raw.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' {
                            out.extend(chars.next());
                        } else {
                            out.push(c);
                        }
                    }
                    std::borrow::Cow::Owned(out)
                } else {
                    std::borrow::Cow::Borrowed(raw)
                };
                return Some((value, rest));
            }
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

/// Writes `value` as a `quoted-string`, escaping `"` and `\`.
pub(crate) fn write_quoted(out: &mut impl std::fmt::Write, value: &str) -> std::fmt::Result {
    out.write_char('"')?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    out.write_char('"')
}

/// Parses a non-empty run of ASCII digits into a `u64`, refusing signs and overflow.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Strips spaces and tabs from both ends (byte-wise: header values are trimmed on the hot path).
#[inline]
pub(crate) fn trim_ws(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    while start < b.len() && (b[start] == b' ' || b[start] == b'\t') {
        start += 1;
    }
    let mut end = b.len();
    while end > start && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    &s[start..end]
}

/// The position of the first `needle` byte in a short string (header values: a plain loop
/// beats a SIMD search's set-up at these lengths).
#[inline]
pub(crate) fn find_byte(s: &str, needle: u8) -> Option<usize> {
    s.bytes().position(|b| b == needle)
}

/// Parses the `;name[=value]` parameter list that follows a MIME type or disposition
/// (RFC 2045 §5.1, RFC 2183 §2). Values may be tokens or quoted strings; quoted values are
/// returned unescaped.
pub(crate) fn mime_params(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Some(params);
        }
        rest = rest.strip_prefix(';')?.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            // A trailing `;` is common in the field and harmless.
            return Some(params);
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim_end();
        if !is_mime_token(name) {
            return None;
        }
        let after = rest[eq + 1..].trim_start_matches([' ', '\t']);
        let (value, tail) = if after.starts_with('"') {
            let (v, tail) = quoted_string(after)?;
            (v.into_owned(), tail)
        } else {
            let end = after.find([';', ' ', '\t']).unwrap_or(after.len());
            let v = &after[..end];
            if !is_mime_token(v) {
                return None;
            }
            (v.to_owned(), &after[end..])
        };
        params.push((name.to_ascii_lowercase(), value));
        rest = tail;
    }
}

/// Writes `;name=value` parameters, quoting values that are not MIME tokens.
pub(crate) fn write_mime_params(out: &mut std::fmt::Formatter<'_>, params: &[(String, String)]) -> std::fmt::Result {
    for (name, value) in params {
        write!(out, ";{name}=")?;
        if is_mime_token(value) {
            out.write_str(value)?;
        } else {
            write_quoted(out, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ident_bounds() {
        assert!(is_ident("abcd", 32));
        assert!(!is_ident("abc", 32));
        assert!(is_ident(&"a".repeat(32), 32));
        assert!(!is_ident(&"a".repeat(33), 32));
        assert!(!is_ident(".abc", 32));
        assert!(is_ident("a.b-c+d%e=f", 32));
        assert!(!is_ident("ab cd", 32));
    }

    #[test]
    fn tables_match_the_grammar() {
        for b in 0..=255u8 {
            let alnum = b.is_ascii_alphanumeric();
            assert_eq!(is_ident_char(b), alnum || b".-+%=".contains(&b), "ident {b}");
            assert_eq!(is_token_char(b), alnum || b"-.!%*_+`'~".contains(&b), "token {b}");
            let tspecial = b"()<>@,;:\\\"/[]?=".contains(&b);
            assert_eq!(is_mime_token(&(b as char).to_string()), b.is_ascii_graphic() && !tspecial, "mime {b}");
        }
    }

    #[test]
    fn quoted_strings() {
        let (v, rest) = quoted_string(r#""a\"b" tail"#).unwrap();
        assert_eq!(v, "a\"b");
        assert_eq!(rest, " tail");
        assert!(quoted_string("\"unterminated").is_none());
        let mut s = String::new();
        write_quoted(&mut s, "x\"y\\z").unwrap();
        assert_eq!(s, r#""x\"y\\z""#);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("1a"), None);
        assert_eq!(parse_u64("+1"), None);
    }

    #[test]
    fn trims() {
        assert_eq!(trim_ws(" \t a b \t"), "a b");
        assert_eq!(trim_ws("   "), "");
        assert_eq!(trim_ws(""), "");
    }

    #[test]
    fn params() {
        let p = mime_params(r#"; charset=utf-8 ;name="a b.txt";"#).unwrap();
        assert_eq!(p, vec![("charset".into(), "utf-8".into()), ("name".into(), "a b.txt".into())]);
        assert!(mime_params("; =x").is_none());
        assert!(mime_params("junk").is_none());
    }
}
