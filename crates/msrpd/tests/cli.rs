//! The `msrpd` binary as operators use it: `user` commands, `check-config`, and `serve`
//! answering a Digest AUTH on a real socket, then exiting 0 on SIGTERM.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use msrp::header::{Header, Path as MsrpPath};
use msrp::message::TransactionId;
use msrp::{Continuation, Decoder, Event, Message, Method, Request, StatusCode, Uri};
use msrp_relay::digest::DigestResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn msrpd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msrpd"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("msrpd-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_config(dir: &Path, plain: u16, tls: u16) -> PathBuf {
    let path = dir.join("msrpd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[relay]\nlisten = [\"msrp://127.0.0.1:{plain}\", \"msrps://127.0.0.1:{tls}\"]\nhostname = \"127.0.0.1\"\ndomains = [\"example.com\"]\n\
             [chat]\ndomain = \"example.com\"\nsip_listen = [\"udp://127.0.0.1:{sip}\", \"tcp://127.0.0.1:{sip}\"]\nmsrp_listen = [\"msrp://127.0.0.1:{msrp}\"]\n",
            dir.display(),
            sip = free_port(),
            msrp = free_port(),
        ),
    )
    .unwrap();
    path
}

fn add_user(config: &Path, account: &str, password: &str) -> std::process::Output {
    let mut child = msrpd()
        .args(["user", "add", account, "--password-stdin", "-c"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_commands_and_check_config() {
    let dir = TempDir::new("users");
    let config = write_config(&dir.0, free_port(), free_port());
    assert!(add_user(&config, "alice@example.com", "alicepw").status.success());
    let again = add_user(&config, "alice@example.com", "x");
    assert!(!again.status.success(), "adding twice fails");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let list = msrpd().args(["user", "list", "-c"]).arg(&config).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "alice@example.com");
    let db = std::fs::read(dir.0.join("msrpd.sqlite")).unwrap();
    assert!(!db.windows(7).any(|w| w == b"alicepw"), "the password is never stored");
    let removed = msrpd().args(["user", "remove", "alice@example.com", "-c"]).arg(&config).output().unwrap();
    assert!(removed.status.success());
    let list = msrpd().args(["user", "list", "-c"]).arg(&config).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");

    let checked = msrpd().arg("check-config").env("MSRPD_CONFIG", &config).output().unwrap();
    assert!(checked.status.success());
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(text.contains("hostname = \"127.0.0.1\""), "{text}");
    assert!(text.contains("max_expires = 3600"), "defaults are printed too: {text}");

    // The focus's SIP password is masked (the output goes into bug reports).
    let account = dir.0.join("account.toml");
    let chat = "\n[chat]\noutbound_proxy = \"sip:127.0.0.1:5070\"\noutbound_username = \"focus\"\n\
                outbound_password = \"s3cret-pw\"\n";
    std::fs::write(&account, std::fs::read_to_string(&config).unwrap().replacen("\n[chat]\n", chat, 1)).unwrap();
    let checked = msrpd().args(["check-config", "-c"]).arg(&account).output().unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert!(text.contains("outbound_username = \"focus\"") && !text.contains("s3cret-pw"), "{text}");

    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, "[relay]\nlisten = [\"http://x\"]\n").unwrap();
    let out = msrpd().args(["check-config", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("msrps://"));
}

#[test]
fn the_first_hour_gets_clear_answers() {
    // Issue 14, from a newcomer's run of the README.
    let dir = TempDir::new("firsthour");
    let config = write_config(&dir.0, free_port(), free_port());
    // The store in use is named (on stderr; the list on stdout stays the accounts).
    let list = msrpd().args(["user", "list", "-c"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stderr).contains("msrpd.sqlite"), "{:?}", list);
    // A piped password without --password-stdin: the flag is named, not "os error 6".
    let mut child = msrpd()
        .args(["user", "add", "bob@example.com", "-c"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-stdin"), "{out:?}");
    // An existing account is refused before any password is asked for.
    assert!(add_user(&config, "carol@example.com", "pw").status.success());
    let again = msrpd().args(["user", "add", "carol@example.com", "-c"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"), "{again:?}");
    // check-config loads the certificate as serve does.
    let missing = dir.0.join("missing.toml");
    let text = std::fs::read_to_string(&config).unwrap()
        + "[tls]\ncertificate = \"/nonexistent/cert.pem\"\nprivate_key = \"/nonexistent/key.pem\"\n";
    std::fs::write(&missing, text).unwrap();
    let out = msrpd().args(["check-config", "-c"]).arg(&missing).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cert.pem"), "{out:?}");
    // A database that cannot be opened is named.
    let baddb = dir.0.join("baddb.toml");
    // Its directory cannot be made: a file stands where it should be.
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!("[database]\nurl = \"sqlite://{}/x.sqlite\"\n", config.display());
    std::fs::write(&baddb, text).unwrap();
    let out = msrpd().args(["user", "list", "-c"]).arg(&baddb).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("x.sqlite"), "{out:?}");
}

/// Reads frames until a complete response arrives.
async fn read_response(stream: &mut tokio::net::TcpStream, dec: &mut Decoder, buf: &mut BytesMut) -> msrp::Response {
    let mut head = None;
    loop {
        while let Some(ev) = dec.decode(buf).unwrap() {
            match ev {
                Event::Head(Message::Response(r)) => head = Some(r),
                Event::Head(other) => panic!("unexpected {other:?}"),
                Event::Body(_) => {}
                Event::End(_) => return head.take().unwrap(),
            }
        }
        assert!(stream.read_buf(buf).await.unwrap() > 0, "relay closed the connection");
    }
}

async fn authenticate(port: u16) -> msrp::Response {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let relay: Uri = format!("msrp://127.0.0.1:{port};tcp").parse().unwrap();
    let me: Uri = "msrp://client.example.com:9999/s1234567;tcp".parse().unwrap();
    let req = Request::new(TransactionId::random(), Method::Auth)
        .with(Header::ToPath(MsrpPath::single(relay.clone())))
        .with(Header::FromPath(MsrpPath::single(me)));
    let (mut dec, mut buf) = (Decoder::default(), BytesMut::new());
    let mut out = BytesMut::new();
    msrp::encode::encode_request(&req, None, Continuation::Complete, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let challenge = read_response(&mut stream, &mut dec, &mut buf).await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let c = challenge.headers.challenges().next().unwrap();
    assert_eq!(c.realm(), Some("example.com"));
    assert!(c.opaque().is_some(), "the relay's challenge carries an opaque value");
    let answer = DigestResponse::answer(c, "alice", "alicepw", "AUTH", relay.as_str(), 1, "c0ffee").unwrap();
    let creds = answer.header_value(false);
    let mut second = req.clone();
    second.tid = TransactionId::random();
    second.headers.set(Header::Authorization(Box::new(msrp::header::Credentials::parse(&creds).unwrap())));
    out.clear();
    msrp::encode::encode_request(&second, None, Continuation::Complete, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    read_response(&mut stream, &mut dec, &mut buf).await
}

/// Kills a daemon when a failed assertion unwinds past it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("sh").args(["-c", &format!("kill -9 {}", self.0)]).status();
    }
}

/// GET `path` from the metrics listener: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[test]
fn serve_authenticates_and_stops_on_sigterm() {
    let dir = TempDir::new("serve");
    let (plain, tls, metrics) = (free_port(), free_port(), free_port());
    let config = write_config(&dir.0, plain, tls);
    let text = std::fs::read_to_string(&config).unwrap() + &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n");
    std::fs::write(&config, text).unwrap();
    assert!(add_user(&config, "alice@example.com", "alicepw").status.success());
    let mut child = msrpd().arg("-c").arg(&config).stderr(Stdio::piped()).spawn().unwrap();
    // A failed assertion must not leave the daemon running (it would hold the test's output).
    let guard = KillOnDrop(child.id());
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", plain)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "msrpd did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let resp = runtime.block_on(authenticate(plain));
    assert_eq!(resp.status, StatusCode::OK);
    let use_path = resp.headers.use_path().unwrap();
    assert_eq!(use_path.first().port(), Some(plain));
    assert!(std::net::TcpStream::connect(("127.0.0.1", tls)).is_ok(), "the TLS listener is up too");
    assert!(dir.0.join("127.0.0.1.cert.pem").exists(), "a certificate was generated into data_dir");

    // Prometheus text after that workload (issue 14): one challenge, one accepted AUTH.
    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    for line in [
        "msrpd_up 1",
        "msrpd_relay_auth_total{outcome=\"challenged\"} 1",
        "msrpd_relay_auth_total{outcome=\"accepted\"} 1",
        "msrpd_relay_responses_total{status=\"401\"} 1",
        "msrpd_relay_responses_total{status=\"200\"} 1",
        "msrpd_relay_sessions{transport=\"tls\"} 0",
        "# TYPE msrpd_chat_rooms gauge",
        "msrpd_sip_calls 0",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} missing from:\n{body}");
    }
    // The AUTH's connection has closed by now, or is closing: its session is 1 or 0.
    assert!(
        body.lines()
            .any(|l| l == "msrpd_relay_sessions{transport=\"tcp\"} 1"
                || l == "msrpd_relay_sessions{transport=\"tcp\"} 0"),
        "{body}"
    );
    assert!(http_get(metrics, "/health").0.contains("200"));
    assert!(http_get(metrics, "/nope").0.contains("404"));

    // The shell's builtin `kill`: no dependency on procps being installed.
    let killed = Command::new("sh").args(["-c", &format!("kill -TERM {}", child.id())]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "msrpd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    std::mem::forget(guard);
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("relay listening"), "{log}");
    assert!(log.contains("SIP listening") && log.contains("chat MSRP listening"), "the chat service started: {log}");
    assert!(log.contains("user add"), "the log says how to add a user: {log}");
    assert!(log.contains("msrpd -c "), "with the config file in use (issue 14): {log}");
    assert!(log.contains("fingerprint"), "{log}");
}

#[test]
fn serve_refuses_a_certificate_that_does_not_name_the_hostname() {
    let dir = TempDir::new("san");
    let ck = rcgen::generate_simple_self_signed(vec!["other.example.net".to_owned()]).unwrap();
    std::fs::write(dir.0.join("c.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.0.join("k.pem"), ck.signing_key.serialize_pem()).unwrap();
    let config = dir.0.join("msrpd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}\"\n[tls]\ncertificate = \"{d}/c.pem\"\nprivate_key = \"{d}/k.pem\"\n[relay]\nlisten = [\"msrps://127.0.0.1:{p}\"]\nhostname = \"relay.example.com\"\n[chat]\nenabled = false\n",
            d = dir.0.display(),
            p = free_port()
        ),
    )
    .unwrap();
    let out = msrpd().arg("-c").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not name relay.hostname"), "{err}");
}
