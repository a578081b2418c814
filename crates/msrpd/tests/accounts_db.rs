//! Accounts where the SIP platform keeps them (issue 13): msrpd on a real PostgreSQL and a
//! real MariaDB, reading Kamailio's `subscriber` table (created from Kamailio's own SQL files
//! and filled by `kamctl add` where Kamailio is installed) and OpenSIPS' table, at the relay
//! (MSRP AUTH) and at the chat (SIP INVITE Digest); then with the database cut mid-run.
//!
//! The servers come from `scripts/test-databases` (started by `.ci/run`), found through
//! `MSRPD_TEST_POSTGRES` and `MSRPD_TEST_MYSQL` (admin URLs; each test makes its own database).
//! Without them the tests say so and skip.

use msrp_testkit as common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Endpoint, credentials};
use msrp::header::{Header, Path as MsrpPath};
use msrp::message::TransactionId;
use msrp::{Response, StatusCode, Uri};
use msrp_relay::digest::{Algorithm, DigestResponse, ha1};
use sqlx::any::AnyPoolOptions;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Postgres,
    MySql,
}

impl Db {
    /// The admin URL of the running server, or None (and a line saying the test skips).
    fn admin(self) -> Option<String> {
        let var = match self {
            Db::Postgres => "MSRPD_TEST_POSTGRES",
            Db::MySql => "MSRPD_TEST_MYSQL",
        };
        let url = std::env::var(var).ok().filter(|v| !v.is_empty());
        if url.is_none() {
            eprintln!("SKIPPED: {var} is not set (scripts/test-databases start DIR sets it; .ci/run does)");
        }
        url
    }

    fn kamailio_dir(self) -> &'static str {
        match self {
            Db::Postgres => "/usr/share/kamailio/postgres",
            Db::MySql => "/usr/share/kamailio/mysql",
        }
    }
}

/// A new, empty database on the server of `admin`, named for the test; its URL.
async fn fresh_database(admin: &str, name: &str) -> String {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(admin).await.expect("admin connection");
    let db = format!("msrpd_{name}_{}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&pool).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&pool).await.unwrap();
    pool.close().await;
    format!("{}/{db}", admin.rsplit_once('/').unwrap().0)
}

async fn run_sql(url: &str, sql: &str) {
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Kamailio 5.x's `version` and `subscriber` tables: from the SQL files Kamailio ships
/// (Debian's kamailio-{postgres,mysql}-modules) when installed, else the same layout written
/// out here.
async fn kamailio_schema(url: &str, db: Db) -> &'static str {
    let dir = Path::new(db.kamailio_dir());
    if dir.join("auth_db-create.sql").exists() {
        for file in ["standard-create.sql", "auth_db-create.sql"] {
            run_sql(url, &std::fs::read_to_string(dir.join(file)).unwrap()).await;
        }
        return "Kamailio's own SQL files";
    }
    let columns = "password VARCHAR(64) DEFAULT '' NOT NULL, ha1 VARCHAR(128) DEFAULT '' NOT NULL, \
                   ha1b VARCHAR(128) DEFAULT '' NOT NULL";
    create_subscriber(url, db, columns).await;
    "the layout of Kamailio 5.6's auth_db-create.sql"
}

/// OpenSIPS 3's `subscriber` (table version 8): SHA-256 hashes beside MD5, no ha1b.
async fn opensips_schema(url: &str, db: Db) {
    let columns = "password VARCHAR(25) DEFAULT '' NOT NULL, ha1 VARCHAR(64) DEFAULT '' NOT NULL, \
                   ha1_sha256 VARCHAR(64) DEFAULT '' NOT NULL, ha1_sha512t256 VARCHAR(64) DEFAULT '' NOT NULL";
    create_subscriber(url, db, columns).await;
}

/// A `subscriber` table as both proxies lay it out: id, username, domain, then `columns`.
async fn create_subscriber(url: &str, db: Db, columns: &str) {
    let id = if db == Db::Postgres {
        "id SERIAL PRIMARY KEY NOT NULL"
    } else {
        "id INT AUTO_INCREMENT PRIMARY KEY NOT NULL"
    };
    let sql = format!(
        "CREATE TABLE subscriber ({id}, username VARCHAR(64) DEFAULT '' NOT NULL, \
         domain VARCHAR(64) DEFAULT '' NOT NULL, {columns}, CONSTRAINT subscriber_account_idx UNIQUE (username, domain))"
    );
    run_sql(url, &sql).await;
}

/// `kamctl add` against `url` when Kamailio's tools are installed; otherwise the row kamctl
/// writes (clear-text password, ha1, ha1b), inserted directly. Says which.
async fn kamailio_add(url: &str, db: Db, user: &str, domain: &str, password: &str) -> &'static str {
    if Path::new("/usr/sbin/kamctl").exists() {
        let rest = url.split_once("://").unwrap().1;
        let (auth, hostpart) = rest.split_once('@').unwrap();
        let (dbuser, dbpass) = auth.split_once(':').unwrap();
        let (hostport, dbname) = hostpart.split_once('/').unwrap();
        let (host, port) = hostport.split_once(':').unwrap();
        let out = Command::new("/usr/sbin/kamctl")
            .args(["add", &format!("{user}@{domain}"), password])
            .env("DBENGINE", if db == Db::Postgres { "PGSQL" } else { "MYSQL" })
            .envs([("DBHOST", host), ("DBPORT", port), ("DBNAME", dbname), ("SIP_DOMAIN", domain)])
            .envs([("DBRWUSER", dbuser), ("DBRWPW", dbpass), ("DBROUSER", dbuser), ("DBROPW", dbpass)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("added"), "kamctl add failed: {text}");
        return "kamctl add";
    }
    let row = format!(
        "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES ('{user}', '{domain}', '{password}', '{}', '{}')",
        ha1(Algorithm::Md5, user, domain, password),
        ha1(Algorithm::Md5, &format!("{user}@{domain}"), domain, password),
    );
    run_sql(url, &row).await;
    "the row kamctl writes"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `msrpd serve` with a relay on plain TCP and the chat on SIP/UDP.
struct Daemon {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
    relay: u16,
    sip: u16,
}

impl Daemon {
    fn start(name: &str, url: &str, extra: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("msrpd-accounts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (relay, sip, msrp) = (free_port(), free_port(), free_port());
        let config = dir.join("msrpd.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{d}\"\n[database]\nurl = \"{url}\"\ncache_seconds = 30\nconnect_timeout_ms = 1000\nquery_timeout_ms = 1000\n\
                 [relay]\nlisten = [\"msrp://127.0.0.1:{relay}\"]\nhostname = \"127.0.0.1\"\ndomains = [\"example.com\"]\n\
                 [chat]\ndomain = \"example.com\"\nsip_listen = [\"udp://127.0.0.1:{sip}\"]\nmsrp_listen = [\"msrp://127.0.0.1:{msrp}\"]\n{extra}",
                d = dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_msrpd"))
            .arg("-c")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon { child, dir, config, relay, sip };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", relay)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "msrpd did not start:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn relay_uri(&self) -> Uri {
        format!("msrp://127.0.0.1:{};tcp", self.relay).parse().unwrap()
    }

    async fn endpoint(&self, name: &str) -> Endpoint {
        Endpoint::connect_to(([127, 0, 0, 1], self.relay).into(), "127.0.0.1", name, None).await
    }

    /// `msrpd user …` on this daemon's configuration: (success, stdout + stderr).
    fn user(&self, args: &[&str], password: Option<&str>) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_msrpd"))
            .arg("user")
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(pw) = password {
            // msrpd may have refused (and exited) before reading it.
            let _ = child.stdin.take().unwrap().write_all(format!("{pw}\n").as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// MSRP AUTH answering the challenge of algorithm `alg`: (algorithms offered, final response).
async fn relay_auth(
    ep: &mut Endpoint,
    relay: &Uri,
    user: &str,
    password: &str,
    alg: Algorithm,
) -> (Vec<String>, Response) {
    let req = ep.auth_request(relay);
    ep.send_request(&req, None).await;
    let challenge = ep.frame().await.response().clone();
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let offered: Vec<String> = challenge.headers.challenges().map(|c| c.algorithm().to_owned()).collect();
    let Some(c) = challenge.headers.challenges().find(|c| c.algorithm().eq_ignore_ascii_case(alg.name())) else {
        return (offered, challenge);
    };
    let mut second = req.clone();
    second.tid = TransactionId::random();
    second.headers.set(Header::Authorization(Box::new(credentials(c, user, password, relay, 1, true))));
    ep.send_request(&second, None).await;
    let resp = ep.frame().await.response().clone();
    (offered, resp)
}

/// One SIP request over UDP and the first final response (status, WWW-Authenticate values).
fn sip_exchange(sock: &UdpSocket, request: &str) -> (u16, Vec<String>) {
    sock.send(request.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut buf = vec![0u8; 65536];
    loop {
        assert!(Instant::now() < deadline, "no final SIP response to:\n{request}");
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let status: u16 = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if status >= 200 {
            let challenges =
                text.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: ").map(str::to_owned)).collect();
            return (status, challenges);
        }
    }
}

/// INVITE to room `lobby` with Digest as `username` (From: its user at example.com); the
/// final status of the authenticated attempt, or of the first when it is not a challenge.
fn chat_invite(sip_port: u16, username: &str, password: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", sip_port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let me = sock.local_addr().unwrap();
    let call = format!("{}@127.0.0.1", TransactionId::random());
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7777 TCP/MSRP *\r\n\
         a=accept-types:message/cpim text/plain\r\na=accept-wrapped-types:*\r\na=path:msrp://127.0.0.1:7777/t{};tcp\r\n",
        me.port()
    );
    let uri = "sip:lobby@example.com";
    let from = username.split('@').next().unwrap();
    let invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
             From: <sip:{from}@example.com>;tag=t{}\r\nTo: <{uri}>\r\nCall-ID: {call}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:{from}@{me}>\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            TransactionId::random(),
            me.port(),
            sdp.len()
        )
    };
    let (status, challenges) = sip_exchange(&sock, &invite(1, ""));
    if status != 401 {
        return status;
    }
    let c = challenges.iter().find(|c| c.contains("MD5")).expect("an MD5 challenge");
    let c = msrp::header::Challenge::parse(c).unwrap();
    let answer = DigestResponse::answer(&c, username, password, "INVITE", uri, 1, "c0ffee").unwrap();
    let auth = format!("Authorization: {}\r\n", answer.header_value(true));
    sip_exchange(&sock, &invite(2, &auth)).0
}

async fn kamailio_accounts_authenticate(db: Db) {
    let Some(admin) = db.admin() else { return };
    let name = if db == Db::Postgres { "kam_pg" } else { "kam_my" };
    let url = fresh_database(&admin, name).await;
    let schema = kamailio_schema(&url, db).await;
    let added = kamailio_add(&url, db, "alice", "example.com", "alicepw").await;
    eprintln!("{db:?}: schema from {schema}, account by {added}");
    let d = Daemon::start(name, &url, "[accounts]\nschema = \"kamailio\"\n");
    let relay = d.relay_uri();

    // The relay: the clear-text password column lets SHA-256 be offered too (after MD5,
    // which every Kamailio row answers); ha1 and ha1b answer MD5, for `alice` and for
    // `alice@example.com`.
    for (user, alg) in [("alice", Algorithm::Md5), ("alice@example.com", Algorithm::Md5), ("alice", Algorithm::Sha256)]
    {
        let mut ep = d.endpoint("a").await;
        let (offered, resp) = relay_auth(&mut ep, &relay, user, "alicepw", alg).await;
        assert_eq!(offered, ["MD5", "SHA-256"]);
        assert_eq!(resp.status, StatusCode::OK, "{user} {alg:?}: {resp:?}\n{}", d.log());
    }
    let mut ep = d.endpoint("wrong").await;
    assert_eq!(relay_auth(&mut ep, &relay, "alice", "nope", Algorithm::Md5).await.1.status, StatusCode::FORBIDDEN);
    // Names match exactly (MariaDB's collation would let `ALICE` find alice's row), and a
    // name of another domain is no account of this realm.
    for other in ["ALICE", "alice@other.org"] {
        let mut ep = d.endpoint("other").await;
        let resp = relay_auth(&mut ep, &relay, other, "alicepw", Algorithm::Sha256).await.1;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{other}");
    }
    // The chat: SIP Digest for INVITE with either username form.
    assert_eq!(chat_invite(d.sip, "alice", "alicepw"), 200, "{}", d.log());
    assert_eq!(chat_invite(d.sip, "alice@example.com", "alicepw"), 200, "{}", d.log());
    assert_eq!(chat_invite(d.sip, "alice", "wrong"), 403);

    // msrpd never writes to a table it does not manage…
    let (ok, text) = d.user(&["add", "bob@example.com", "--password-stdin"], Some("bobpw"));
    assert!(!ok && text.contains("does not write") && text.contains("manage = true"), "{text}");
    let (ok, text) = d.user(&["list"], None);
    assert!(ok && text.contains("alice@example.com"), "reading is fine: {text}");
    // …unless told to, and then writes what Kamailio would.
    let text = std::fs::read_to_string(&d.config).unwrap() + "manage = true\n";
    std::fs::write(&d.config, text).unwrap();
    let (ok, text) = d.user(&["add", "bob@example.com", "--password-stdin"], Some("bobpw"));
    assert!(ok, "{text}");
    let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let row: (String, String, String) =
        sqlx::query_as("SELECT password, ha1, ha1b FROM subscriber WHERE username = 'bob' AND domain = 'example.com'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(row.0, "bobpw");
    assert_eq!(row.1, ha1(Algorithm::Md5, "bob", "example.com", "bobpw"));
    assert_eq!(row.2, ha1(Algorithm::Md5, "bob@example.com", "example.com", "bobpw"));
    let mut ep = d.endpoint("b").await;
    assert_eq!(relay_auth(&mut ep, &relay, "bob", "bobpw", Algorithm::Md5).await.1.status, StatusCode::OK);
    pool.close().await;
}

#[tokio::test]
async fn kamailio_accounts_on_postgres() {
    kamailio_accounts_authenticate(Db::Postgres).await;
}

#[tokio::test]
async fn kamailio_accounts_on_mariadb() {
    kamailio_accounts_authenticate(Db::MySql).await;
}

/// OpenSIPS 3 keeps SHA-256 hashes: with its password column dropped from the mapping,
/// SHA-256 is verified from `ha1_sha256`; and a condition hides disabled accounts.
#[tokio::test]
async fn opensips_accounts_and_a_condition() {
    for db in [Db::Postgres, Db::MySql] {
        let Some(admin) = db.admin() else { continue };
        let name = if db == Db::Postgres { "osips_pg" } else { "osips_my" };
        let url = fresh_database(&admin, name).await;
        opensips_schema(&url, db).await;
        let (md5, sha) =
            (ha1(Algorithm::Md5, "carol", "example.com", "c"), ha1(Algorithm::Sha256, "carol", "example.com", "c"));
        run_sql(
            &url,
            &format!(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1_sha256) VALUES \
                 ('carol', 'example.com', '', '{md5}', '{sha}'), ('dave', 'example.com', 'disabled', '', '')"
            ),
        )
        .await;
        let d = Daemon::start(
            name,
            &url,
            "[accounts]\nschema = \"opensips\"\npassword = \"\"\ncondition = \"ha1 <> ''\"\n",
        );
        let relay = d.relay_uri();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let mut ep = d.endpoint("c").await;
            let (offered, resp) = relay_auth(&mut ep, &relay, "carol", "c", alg).await;
            assert_eq!(offered, ["SHA-256", "MD5"]);
            assert_eq!(resp.status, StatusCode::OK, "{db:?} {alg:?}\n{}", d.log());
        }
        let mut ep = d.endpoint("d").await;
        let resp = relay_auth(&mut ep, &relay, "dave", "disabled", Algorithm::Md5).await.1;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "the condition hides dave");
        drop(d);
        // Without a SHA-256 hash or a password to compute one, SHA-256 is not offered.
        let d = Daemon::start(name, &url, "[accounts]\nschema = \"opensips\"\npassword = \"\"\nha1_sha256 = \"\"\n");
        let mut ep = d.endpoint("c").await;
        let (offered, resp) = relay_auth(&mut ep, &d.relay_uri(), "carol", "c", Algorithm::Md5).await;
        assert_eq!((offered, resp.status), (vec!["MD5".to_owned()], StatusCode::OK));
    }
}

/// A loopback TCP forwarder in front of the database, which the test can cut (every
/// connection dropped, new ones refused) and restore, as a database stopped and restarted.
struct Cuttable {
    port: u16,
    target: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cuttable {
    async fn new(target: std::net::SocketAddr) -> Cuttable {
        let mut c = Cuttable { port: 0, target, task: None };
        c.restore().await;
        c
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.port = listener.local_addr().unwrap().port();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                pipes.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Aborting the task drops the listener and, with the JoinSet, every piped connection.
    fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

// Multi-threaded: the forwarder runs while the test blocks in `Daemon::start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stops_and_returns() {
    let Some(admin) = Db::Postgres.admin() else { return };
    let url = fresh_database(&admin, "outage").await;
    kamailio_schema(&url, Db::Postgres).await;
    for user in ["alice", "bob", "carol"] {
        kamailio_add(&url, Db::Postgres, user, "example.com", &format!("{user}pw")).await;
    }
    // The daemon reaches PostgreSQL through the forwarder.
    let rest = url.split_once('@').unwrap().1;
    let (hostport, dbname) = rest.split_once('/').unwrap();
    let mut db = Cuttable::new(hostport.parse().unwrap()).await;
    let via = format!("{}@127.0.0.1:{}/{dbname}", url.split_once('@').unwrap().0, db.port);
    let d = Daemon::start("outage", &via, "[accounts]\nschema = \"kamailio\"\n");
    let relay = d.relay_uri();

    // Alice and Bob authenticate (and are cached); Carol has not been seen.
    let mut a = d.endpoint("alice").await;
    let ua = relay_auth(&mut a, &relay, "alice", "alicepw", Algorithm::Md5).await.1;
    assert_eq!(ua.status, StatusCode::OK);
    let mut b = d.endpoint("bob").await;
    let ub = relay_auth(&mut b, &relay, "bob", "bobpw", Algorithm::Md5).await.1;
    assert_eq!(ub.status, StatusCode::OK);

    db.cut();
    // Sessions already authenticated keep relaying.
    let (ua, ub) = (ua.headers.use_path().unwrap().clone(), ub.headers.use_path().unwrap().clone());
    let to = MsrpPath::new(ua.uris().iter().chain(ub.uris()).chain(b.path().uris()).cloned().collect()).unwrap();
    let send = a.send(to, b"while the database is down");
    a.send_request(&send, Some(b"while the database is down")).await;
    let got = b.frame().await;
    assert_eq!(got.body, b"while the database is down");
    b.ok(got.request()).await;
    assert_eq!(a.frame().await.response().status, StatusCode::OK);
    // An account seen within cache_seconds still authenticates (new connection, new nonce).
    let mut a2 = d.endpoint("alice2").await;
    assert_eq!(relay_auth(&mut a2, &relay, "alice", "alicepw", Algorithm::Md5).await.1.status, StatusCode::OK);
    // Others get a clear 5xx, soon (connect_timeout_ms = 1000), never a hang or a close.
    let mut c = d.endpoint("carol").await;
    let started = Instant::now();
    let refused = relay_auth(&mut c, &relay, "carol", "carolpw", Algorithm::Md5).await.1;
    assert_eq!(refused.status.0 / 100, 5, "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    eprintln!("refused with {} in {:?}", refused.status.0, started.elapsed());
    // The chat: a caller not in the cache gets 503 (with Retry-After), one in it gets in.
    let sip = d.sip;
    assert_eq!(tokio::task::spawn_blocking(move || chat_invite(sip, "carol", "carolpw")).await.unwrap(), 503);
    assert_eq!(tokio::task::spawn_blocking(move || chat_invite(sip, "alice", "alicepw")).await.unwrap(), 200);
    let log = d.log();
    assert!(log.contains("user store lookup failed"), "{log}");
    assert!(
        log.matches("user store lookup failed").count() <= 3,
        "logged once a second with a count, not per lookup:\n{log}"
    );

    // The database returns: everything works again without a restart.
    db.restore().await;
    let mut c = d.endpoint("carol-again").await;
    let started = Instant::now();
    loop {
        let resp = relay_auth(&mut c, &relay, "carol", "carolpw", Algorithm::Md5).await.1;
        if resp.status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still refused after the database returned: {resp:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        c = d.endpoint("carol-again").await;
    }
    db.cut();
}
