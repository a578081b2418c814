//! Two msrpd processes chained over TLS (RFC 4976): each is configured with its own
//! certificate and trusts the other's (`[tls] certificate`, `private_key`,
//! `trusted_certificates`); A on relay 1 reaches B on relay 2.

use msrp_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Endpoint, connector};
use msrp::header::Path as MsrpPath;
use msrp::{StatusCode, Uri};

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes a PEM certificate and key for `host` into `dir`.
fn certificate(dir: &Path, host: &str) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().clone())
}

fn start(name: &str, host: &str, realm: &str, port: u16, cert: &Path, key: &Path, trust: &Path) -> Daemon {
    let dir = std::env::temp_dir().join(format!("msrpd-chain-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("msrpd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}\"\n[tls]\ncertificate = \"{c}\"\nprivate_key = \"{k}\"\ntrusted_certificates = [\"{t}\"]\nsystem_roots = false\n\
             [relay]\nlisten = [\"msrps://127.0.0.1:{port}\"]\nhostname = \"{host}\"\ndomains = [\"{realm}\"]\n[chat]\nenabled = false\n",
            d = dir.display(),
            c = cert.display(),
            k = key.display(),
            t = trust.display()
        ),
    )
    .unwrap();
    for user in ["alice", "bob"] {
        let mut add = Command::new(env!("CARGO_BIN_EXE_msrpd"))
            .args(["user", "add", &format!("{user}@{realm}"), "--password-stdin", "-c"])
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        add.stdin.take().unwrap().write_all(format!("{user}pw\n").as_bytes()).unwrap();
        assert!(add.wait().unwrap().success());
    }
    let child = Command::new(env!("CARGO_BIN_EXE_msrpd")).arg("-c").arg(&config).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "{name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon { child, dir }
}

#[tokio::test]
async fn two_daemons_chain_over_verified_tls() {
    let certs = std::env::temp_dir().join(format!("msrpd-chain-certs-{}", std::process::id()));
    let (d1, d2) = (certs.join("one"), certs.join("two"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let (c1, k1, der1) = certificate(&d1, "127.0.0.1");
    let (c2, k2, der2) = certificate(&d2, "localhost");
    let (p1, p2) = (free_port(), free_port());
    let _one = start("one", "127.0.0.1", "one.test", p1, &c1, &k1, &c2);
    let _two = start("two", "localhost", "two.test", p2, &c2, &k2, &c1);
    let relay1 = Uri::new(true, "127.0.0.1", Some(p1), None).unwrap();
    let relay2 = Uri::new(true, "localhost", Some(p2), None).unwrap();

    let mut a =
        Endpoint::connect_to(([127, 0, 0, 1], p1).into(), "127.0.0.1", "alice", Some(&connector(&[der1]))).await;
    let ua = a.authenticate(&relay1, "alice", "alicepw").await.headers.use_path().unwrap().clone();
    let mut b = Endpoint::connect_to(([127, 0, 0, 1], p2).into(), "localhost", "bob", Some(&connector(&[der2]))).await;
    let ub = b.authenticate(&relay2, "bob", "bobpw").await.headers.use_path().unwrap().clone();
    let to = MsrpPath::new(ua.uris().iter().chain(ub.uris()).chain(b.path().uris()).cloned().collect()).unwrap();
    let send = a.send(to, b"between daemons");
    a.send_request(&send, Some(b"between daemons")).await;
    let got = b.frame().await;
    assert_eq!(got.body, b"between daemons");
    b.ok(got.request()).await;
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
    let _ = std::fs::remove_dir_all(&certs);
}
