//! The `a=file-selector` attribute of RFC 5547 §5: which file a stream carries, by name, type,
//! size and SHA-1 hash.

/// Longest file name kept (bytes); longer names are cut (on a character boundary).
const MAX_NAME: usize = 255;

/// A file as an SDP file-selector describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSelector {
    /// The name, as the sender gave it (percent-decoded, quotes and path dropped). Only ever
    /// shown and echoed: files are stored under names of the server's own.
    pub name: Option<String>,
    /// `type:` (a MIME type, parameters included).
    pub content_type: Option<String>,
    pub size: Option<u64>,
    /// `hash:sha-1:XX:…` as 20 bytes (other algorithms are not kept).
    pub sha1: Option<[u8; 20]>,
}

impl FileSelector {
    /// Reads the value of `a=file-selector`; unknown selectors are skipped, a malformed one
    /// makes the whole attribute unusable (`None`).
    pub fn parse(value: &str) -> Option<FileSelector> {
        let mut sel = FileSelector::default();
        let mut rest = value.trim();
        while !rest.is_empty() {
            let (item, tail) = if let Some(after) = rest.strip_prefix("name:\"") {
                let end = after.find('"')?;
                (&rest[..6 + end + 1], &after[end + 1..])
            } else {
                match rest.find(' ') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                }
            };
            rest = tail.trim_start();
            let (key, val) = item.split_once(':')?;
            match key.to_ascii_lowercase().as_str() {
                // RFC 5547 §5: a name may carry percent-encoded octets (a quote among them).
                "name" => sel.name = Some(clean_name(&msrp::uri::percent_decode(val.trim_matches('"')))),
                "type" => sel.content_type = Some(val.to_owned()).filter(|t| t.contains('/')),
                "size" => sel.size = Some(val.parse().ok()?),
                "hash" => {
                    let (alg, hex) = val.split_once(':')?;
                    if alg.eq_ignore_ascii_case("sha-1") {
                        sel.sha1 = Some(parse_hash(hex)?);
                    }
                }
                _ => {}
            }
        }
        Some(sel)
    }

    /// The attribute value the focus writes (RFC 5547 §5).
    pub fn to_sdp(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.name {
            parts.push(format!("name:\"{}\"", percent_encode(n)));
        }
        if let Some(t) = &self.content_type {
            parts.push(format!("type:{t}"));
        }
        if let Some(s) = self.size {
            parts.push(format!("size:{s}"));
        }
        if let Some(h) = &self.sha1 {
            parts.push(format!("hash:{}", hash_text(h)));
        }
        parts.join(" ")
    }
}

/// `sha-1:72:24:5F:…` (upper-case hex pairs, as RFC 5547 §5 writes them).
pub fn hash_text(h: &[u8; 20]) -> String {
    let pairs: Vec<String> = h.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha-1:{}", pairs.join(":"))
}

fn parse_hash(hex: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let pairs: Vec<&str> = hex.split(':').collect();
    if pairs.len() != 20 {
        return None;
    }
    for (o, p) in out.iter_mut().zip(pairs) {
        *o = u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2)?;
    }
    Some(out)
}

/// The last path component, without control characters or quotes, at most [`MAX_NAME`] bytes.
fn clean_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = base.chars().filter(|c| !c.is_control() && *c != '"').collect();
    if name.len() > MAX_NAME {
        let mut cut = MAX_NAME;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_rfc_5547_example() {
        let v = "name:\"My cool picture.jpg\" type:image/jpeg size:32349 \
                 hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E";
        let s = FileSelector::parse(v).unwrap();
        assert_eq!(s.name.as_deref(), Some("My cool picture.jpg"));
        assert_eq!((s.content_type.as_deref(), s.size), (Some("image/jpeg"), Some(32349)));
        assert_eq!(s.sha1.unwrap()[0], 0x72);
        assert_eq!(s.to_sdp(), v);
    }

    #[test]
    fn names_are_shown_never_trusted() {
        let s = FileSelector::parse("name:\"../../etc/pass%22wd\" size:1").unwrap();
        assert_eq!(s.name.as_deref(), Some("passwd"), "path and quote dropped");
        assert_eq!(FileSelector::parse("size:x"), None);
        assert_eq!(FileSelector::parse("hash:sha-1:72:24"), None, "a short hash");
        assert_eq!(FileSelector::parse("name:\"unterminated"), None);
        let other = FileSelector::parse("hash:md5:00 size:3").unwrap();
        assert_eq!((other.sha1, other.size), (None, Some(3)));
    }
}
