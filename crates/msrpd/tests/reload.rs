//! SIGHUP (issue 14): the certificate is replaced while a transfer runs over TLS; the
//! transfer finishes on the old one and a new connection sees the new one. A reload that
//! fails leaves the running certificate, and a restart-only change is named in the log.

use msrp_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Endpoint, connector};
use msrp::header::Path as MsrpPath;
use msrp::{Continuation, StatusCode, Uri};
use rustls::pki_types::CertificateDer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A self-signed certificate for 127.0.0.1 written to `dir/NAME.{cert,key}.pem`.
fn certificate(dir: &Path, name: &str) -> CertificateDer<'static> {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join(format!("{name}.cert.pem")), ck.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key.pem")), ck.signing_key.serialize_pem()).unwrap();
    ck.cert.der().clone()
}

/// Puts certificate `name` where the configuration points (as an operator renews one).
fn install(dir: &Path, name: &str) {
    for part in ["cert", "key"] {
        std::fs::copy(dir.join(format!("{name}.{part}.pem")), dir.join(format!("live.{part}.pem"))).unwrap();
    }
}

struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn hup(&self) {
        let sent = Command::new("sh").args(["-c", &format!("kill -HUP {}", self.child.id())]).status().unwrap();
        assert!(sent.success());
    }

    /// Waits until the log holds `needle` `count` times.
    fn wait_log(&self, needle: &str, count: usize) {
        let started = Instant::now();
        while self.log().matches(needle).count() < count {
            assert!(started.elapsed() < Duration::from_secs(10), "no {needle:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn write_config(dir: &Path, port: u16, hostname: &str) {
    std::fs::write(
        dir.join("msrpd.toml"),
        format!(
            "data_dir = \"{d}\"\n[tls]\ncertificate = \"{d}/live.cert.pem\"\nprivate_key = \"{d}/live.key.pem\"\nsystem_roots = false\n\
             [relay]\nlisten = [\"msrps://127.0.0.1:{port}\"]\nhostname = \"{hostname}\"\ndomains = [\"example.com\"]\n\
             [chat]\nenabled = false\n",
            d = dir.display()
        ),
    )
    .unwrap();
}

/// The leaf certificate a new TLS connection to `port` is shown.
async fn presented(port: u16, trust: &[CertificateDer<'static>]) -> CertificateDer<'static> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector(trust).connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_replaces_the_certificate_without_dropping_a_transfer() {
    let dir = std::env::temp_dir().join(format!("msrpd-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (old, new) = (certificate(&dir, "old"), certificate(&dir, "new"));
    install(&dir, "old");
    let port = free_port();
    write_config(&dir, port, "127.0.0.1");
    let config = dir.join("msrpd.toml");
    for user in ["alice", "bob"] {
        use std::io::Write;
        let mut add = Command::new(env!("CARGO_BIN_EXE_msrpd"))
            .args(["user", "add", &format!("{user}@example.com"), "--password-stdin", "-c"])
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        add.stdin.take().unwrap().write_all(format!("{user}pw\n").as_bytes()).unwrap();
        assert!(add.wait().unwrap().success());
    }
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_msrpd"))
        .arg("-c")
        .arg(&config)
        .env_remove("RUST_LOG") // it would win over the file's filter
        .stderr(log)
        .spawn()
        .unwrap();
    let d = Daemon { child, dir: dir.clone() };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "msrpd did not start:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let trust = [old.clone(), new.clone()];
    assert_eq!(presented(port, &trust).await, old);

    // Alice starts a 200 KiB SEND to Bob over TLS and stops half-way.
    let relay = Uri::new(true, "127.0.0.1", Some(port), None).unwrap();
    let tls = connector(&trust);
    let mut a = Endpoint::connect_to(([127, 0, 0, 1], port).into(), "127.0.0.1", "alice", Some(&tls)).await;
    let ua = a.authenticate(&relay, "alice", "alicepw").await.headers.use_path().unwrap().clone();
    let mut b = Endpoint::connect_to(([127, 0, 0, 1], port).into(), "127.0.0.1", "bob", Some(&tls)).await;
    let ub = b.authenticate(&relay, "bob", "bobpw").await.headers.use_path().unwrap().clone();
    let to = MsrpPath::new(ua.uris().iter().chain(ub.uris()).chain(b.path().uris()).cloned().collect()).unwrap();
    let body: Vec<u8> = (0..200 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let send = a.send(to.clone(), &body);
    let mut frame = BytesMut::new();
    msrp::encode::encode_request(&send, Some(&body), Continuation::Complete, &mut frame).unwrap();
    let half = frame.len() / 2;
    a.write(&frame[..half]).await;

    // The certificate is renewed and msrpd told; a new connection is shown the new one.
    install(&dir, "new");
    d.hup();
    d.wait_log("configuration reloaded", 1);
    assert_eq!(presented(port, &trust).await, new, "new connections get the new certificate");

    // The transfer finishes on the connections that started it.
    a.write(&frame[half..]).await;
    let got = b.frame().await;
    assert_eq!(got.body, body);
    b.ok(got.request()).await;
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
    let again = a.send(to, b"after the reload");
    a.send_request(&again, Some(b"after the reload")).await;
    assert_eq!(b.frame().await.body, b"after the reload");

    // A reload that fails (a key that is not the certificate's) changes nothing.
    std::fs::copy(dir.join("old.key.pem"), dir.join("live.key.pem")).unwrap();
    d.hup();
    d.wait_log("reload refused", 1);
    assert_eq!(presented(port, &trust).await, new, "the running certificate stays");

    // A restart-only change is applied to nothing and named.
    install(&dir, "new");
    let text = std::fs::read_to_string(&config).unwrap().replace("[relay]\n", "[relay]\nmax_expires = 7200\n");
    std::fs::write(&config, text).unwrap();
    d.hup();
    d.wait_log("configuration reloaded", 2);
    d.wait_log("take effect only after a restart", 1);
    assert!(d.log().contains("relay.max_expires"), "{}", d.log());

    // The log filter follows the file: at `warn`, an accepted AUTH is no longer logged.
    let accepted = d.log().matches("AUTH accepted").count();
    assert!(accepted >= 2, "{}", d.log());
    let text = std::fs::read_to_string(&config).unwrap() + "[log]\nfilter = \"warn\"\n";
    std::fs::write(&config, text).unwrap();
    d.hup();
    d.wait_log("take effect only after a restart", 2);
    let mut c = Endpoint::connect_to(([127, 0, 0, 1], port).into(), "127.0.0.1", "alice", Some(&tls)).await;
    c.authenticate(&relay, "alice", "alicepw").await;
    assert_eq!(d.log().matches("AUTH accepted").count(), accepted, "{}", d.log());

    // Limits are reloaded too: with one session per account, Bob (who has one) gets no more.
    let text = std::fs::read_to_string(&config).unwrap() + "[relay.limits]\nuser_sessions = 1\n";
    std::fs::write(&config, text).unwrap();
    d.hup();
    d.wait_log("take effect only after a restart", 3);
    let mut b2 = Endpoint::connect_to(([127, 0, 0, 1], port).into(), "127.0.0.1", "bob2", Some(&tls)).await;
    let resp = b2.try_authenticate(&relay, "bob", "bobpw", None, true).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.comment.as_deref(), Some("Too many sessions for this account"));
}
