//! Someone the focus calls (after a REFER), written from SIP's text: a UAS on UDP that
//! answers the focus's INVITE as the test says, ACKs nothing itself, and can hang up.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::WAIT;
use super::subscriber::Msg;

pub struct Callee {
    sock: UdpSocket,
    pub addr: SocketAddr,
    /// Where the focus's requests came from (its UDP listener).
    focus: Option<SocketAddr>,
    /// Our tag on the dialog, once answered.
    pub tag: String,
}

impl Callee {
    pub async fn udp() -> Callee {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        Callee { sock, addr, focus: None, tag: msrp::id::random_ident() }
    }

    /// The next request (any method), answering nothing.
    pub async fn request(&mut self) -> Msg {
        loop {
            let m = self.recv().await;
            if m.status().is_none() {
                return m;
            }
        }
    }

    /// The next request of `method`; others are skipped (INVITE retransmissions included).
    pub async fn expect(&mut self, method: &str) -> Msg {
        loop {
            let m = self.request().await;
            if m.start.starts_with(&format!("{method} ")) {
                return m;
            }
        }
    }

    /// Answers `req` with `code reason`, with our tag on a non-100 answer, our Contact, and
    /// `sdp` as the body.
    pub async fn reply(&mut self, req: &Msg, code: u16, reason: &str, sdp: Option<&str>) {
        self.reply_with(req, code, reason, "", sdp).await;
    }

    /// [`Callee::reply`] with `extra` header lines (each ending in CRLF).
    pub async fn reply_with(&mut self, req: &Msg, code: u16, reason: &str, extra: &str, sdp: Option<&str>) {
        let mut resp = format!("SIP/2.0 {code} {reason}\r\n{extra}");
        for (n, v) in &req.headers {
            match n.to_ascii_lowercase().as_str() {
                "via" | "from" | "call-id" | "cseq" => resp.push_str(&format!("{n}: {v}\r\n")),
                "to" if code > 100 && !v.contains(";tag=") => resp.push_str(&format!("{n}: {v};tag={}\r\n", self.tag)),
                "to" => resp.push_str(&format!("{n}: {v}\r\n")),
                _ => {}
            }
        }
        resp.push_str(&format!("Contact: <sip:carol@{}>\r\n", self.addr));
        let body = sdp.unwrap_or("");
        if sdp.is_some() {
            resp.push_str("Content-Type: application/sdp\r\n");
        }
        resp.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.send(&resp).await;
    }

    /// Hangs up the call `invite` set up (BYE to the focus's Contact); the focus's answer.
    pub async fn bye(&mut self, invite: &Msg) -> Msg {
        let h = |n: &str| invite.header(n).unwrap().to_owned();
        let contact = h("Contact");
        let target = contact.trim_start_matches('<').split('>').next().unwrap();
        let req = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\n\
             From: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            addr = self.addr,
            branch = msrp::id::random_ident(),
            to = h("To"),
            tag = self.tag,
            from = h("From"),
            cid = h("Call-ID"),
        );
        self.send(&req).await;
        loop {
            let m = self.recv().await;
            if m.status().is_some_and(|s| s >= 200) {
                return m;
            }
        }
    }

    async fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.focus.expect("the focus wrote first")).await.unwrap();
    }

    async fn recv(&mut self) -> Msg {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
                .await
                .expect("a SIP message in time")
                .unwrap();
            self.focus = Some(from);
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                return Msg::parse(head, body.to_owned());
            }
        }
    }
}
