//! Who a participant is: the address-of-record it joined with (SIP From, or P-Asserted-Identity
//! from a trusted proxy), and the key under which CPIM `From`/`To` addresses are compared to it.

/// A participant's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sip:user@host` as it appears in CPIM headers the server writes.
    pub uri: String,
    /// The display name of the SIP From, used until a nickname is chosen.
    pub display: Option<String>,
    /// Comparison key, see [`key`].
    pub key: String,
}

impl Identity {
    /// From a SIP/SIPS/IM URI. `None` when it names no user.
    pub fn new(uri: &str, display: Option<&str>) -> Option<Identity> {
        let key = key(uri)?;
        Some(Identity { uri: format!("sip:{key}"), display: display.filter(|d| !d.is_empty()).map(str::to_owned), key })
    }
}

/// `user@host` with the host lower-cased and scheme, port, parameters and headers dropped, so
/// `<sip:Alice@Example.COM;transport=tcp>`, `sips:Alice@example.com:5061` and the CPIM
/// `im:Alice@example.com` all name the same participant. The user part stays case-sensitive
/// (RFC 3261 §19.1.4).
pub fn key(uri: &str) -> Option<String> {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let (scheme, rest) = uri.split_once(':')?;
    if !["sip", "sips", "im", "pres", "tel"].iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return None;
    }
    let rest = rest.split([';', '?', '>']).next()?;
    let (user, host) = rest.rsplit_once('@')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    if user.is_empty() || host.is_empty() {
        return None;
    }
    Some(format!("{user}@{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_for_one_address() {
        for u in [
            "sip:alice@example.com",
            "<sip:alice@Example.COM;transport=tcp>",
            "sips:alice@example.com:5061",
            "im:alice@example.com",
            "sip:alice@example.com?subject=x",
        ] {
            assert_eq!(key(u).as_deref(), Some("alice@example.com"), "{u}");
        }
        assert_ne!(key("sip:Alice@example.com"), key("sip:alice@example.com"));
        assert_eq!(key("sip:bob@[::1]:5060").as_deref(), Some("bob@::1"));
        assert_eq!(key("sip:example.com"), None);
        assert_eq!(key("http://a@b"), None);
        let id = Identity::new("sip:alice@Example.com", Some("")).unwrap();
        assert_eq!((id.uri.as_str(), id.display), ("sip:alice@example.com", None));
    }
}
