//! File streams in SDP (RFC 5547): an `m=message` section with `a=file-selector` and a
//! direction. A participant's `sendonly` stream uploads a file to the room; a `recvonly` one
//! asks for a file the room holds. The focus also offers files itself (`sendonly`, pushed to
//! participants).

use msrp::Uri;

use super::selector::FileSelector;
use crate::sdp::{Connect, DEFAULT_MSRP_PORT, Offer, msrp_endpoint, session_head};

/// Which way a file goes, from the participant's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The participant sends (its stream is `sendonly`).
    Upload,
    /// The participant receives (`recvonly`).
    Download,
}

/// A file stream of an offer (or of the answer to the focus's offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStream {
    pub index: usize,
    pub secure: bool,
    /// The peer's path, first hop first.
    pub path: Vec<Uri>,
    pub connect: Connect,
    pub direction: Direction,
    pub selector: FileSelector,
    /// `a=file-transfer-id` (RFC 5547 §8), echoed in the answer.
    pub transfer_id: Option<String>,
}

impl FileStream {
    /// The chat-stream view of it, for the connection code shared with chat sessions.
    pub fn as_chat_stream(&self) -> crate::sdp::ChatStream {
        crate::sdp::ChatStream {
            index: self.index,
            secure: self.secure,
            path: self.path.clone(),
            connect: self.connect,
        }
    }
}

/// The first usable file stream of a participant's offer (`answer` false) or of an answer to
/// the focus's own file offer (`answer` true: the direction is then the answerer's, `recvonly`).
pub fn file_stream(offer: &Offer, answer: bool) -> Option<FileStream> {
    file_streams(offer, answer).into_iter().next()
}

/// Every usable file stream of an offer (or answer), in order.
pub fn file_streams(offer: &Offer, answer: bool) -> Vec<FileStream> {
    offer
        .media
        .iter()
        .enumerate()
        .filter_map(|(index, m)| {
            // An answer should repeat the selector (RFC 5547 §8); the focus knows its own file, so
            // one that does not is taken all the same.
            let selector = match m.attr("file-selector") {
                Some(v) => FileSelector::parse(v)?,
                None if answer && m.kind.eq_ignore_ascii_case("message") => FileSelector::default(),
                None => return None,
            };
            let direction = if m.has_flag("sendonly") {
                Direction::Upload
            } else if m.has_flag("recvonly") {
                Direction::Download
            } else {
                return None;
            };
            let (secure, path, connect) = msrp_endpoint(m, answer)?;
            let transfer_id = m.attr("file-transfer-id").map(str::to_owned);
            Some(FileStream { index, secure, path, connect, direction, selector, transfer_id })
        })
        .collect()
}

/// The `m=message` section of a file stream the focus writes: its path, the selector, its own
/// direction and who connects.
fn file_media(local: &Uri, sel: &FileSelector, ours: Direction, setup: &str, transfer_id: Option<&str>) -> String {
    let proto = if local.is_secure() { "TCP/TLS/MSRP" } else { "TCP/MSRP" };
    let port = local.port().unwrap_or(DEFAULT_MSRP_PORT);
    // The focus's own direction: it receives an upload and sends a download.
    let direction = match ours {
        Direction::Upload => "sendonly",
        Direction::Download => "recvonly",
    };
    let mut out = format!(
        "m=message {port} {proto} *\r\na=path:{path}\r\na=accept-types:*\r\na=file-selector:{sel}\r\n\
         a={direction}\r\na=setup:{setup}\r\n",
        path = local.as_str(),
        sel = sel.to_sdp(),
    );
    if let Some(id) = transfer_id {
        out.push_str(&format!("a=file-transfer-id:{id}\r\n"));
    }
    out
}

/// The answer to an offer whose file stream is `stream`: that stream accepted (the selector
/// `sel`, the offer's with the focus's size and hash for a download), the rest refused.
pub fn answer(offer: &Offer, stream: &FileStream, local: &Uri, sel: &FileSelector, version: u64) -> String {
    let mut out = session_head(local.host_unbracketed(), version);
    let setup = match stream.connect {
        Connect::Inbound => "passive",
        Connect::Outbound => "active",
    };
    // The focus's direction is the opposite of the participant's.
    let ours = match stream.direction {
        Direction::Upload => Direction::Download,
        Direction::Download => Direction::Upload,
    };
    for (i, m) in offer.media.iter().enumerate() {
        if i == stream.index {
            out.push_str(&file_media(local, sel, ours, setup, stream.transfer_id.as_deref()));
        } else {
            out.push_str(&m.rejected_line());
        }
    }
    out
}

/// The focus's offer of a room file to a participant (a push): `sendonly`, `actpass`.
pub fn offer(local: &Uri, sel: &FileSelector, transfer_id: &str, version: u64) -> String {
    let mut out = session_head(local.host_unbracketed(), version);
    out.push_str(&file_media(local, sel, Direction::Upload, "actpass", Some(transfer_id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use msrp::ByteString;

    const UPLOAD: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=message 7654 TCP/MSRP *\r\na=path:msrp://127.0.0.1:7654/up1;tcp\r\na=accept-types:*\r\n\
        a=file-selector:name:\"a b.txt\" type:text/plain size:3 hash:sha-1:A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D\r\n\
        a=file-transfer-id:t1\r\na=sendonly\r\na=setup:actpass\r\n";

    #[test]
    fn an_upload_is_answered_recvonly_with_its_selector() {
        let offer = Offer::parse(UPLOAD.as_bytes()).unwrap();
        assert_eq!(offer.chat_stream(), None, "a file stream is not a chat stream");
        let f = file_stream(&offer, false).unwrap();
        assert_eq!((f.direction, f.connect, f.selector.size), (Direction::Upload, Connect::Outbound, Some(3)));
        let local = Uri::parse(ByteString::from("msrp://192.0.2.1:2857/srv;tcp")).unwrap();
        let a = answer(&offer, &f, &local, &f.selector, 4);
        assert!(a.contains("a=recvonly\r\n") && a.contains("a=setup:active\r\n"), "{a}");
        assert!(a.contains("a=file-selector:name:\"a b.txt\" type:text/plain size:3 hash:sha-1:A9:99"), "{a}");
        assert!(a.contains("a=file-transfer-id:t1\r\n"), "{a}");
        let pull = UPLOAD.replace("a=sendonly", "a=recvonly");
        let f = file_stream(&Offer::parse(pull.as_bytes()).unwrap(), false).unwrap();
        assert_eq!(f.direction, Direction::Download);
        let neither = UPLOAD.replace("a=sendonly\r\n", "");
        assert_eq!(file_stream(&Offer::parse(neither.as_bytes()).unwrap(), false), None);
    }
}
