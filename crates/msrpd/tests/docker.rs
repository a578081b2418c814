//! The container image (issue 14): built from the Dockerfile, started, and probed on /health
//! and the relay port, where Docker is available; without it the test says so and skips.

use std::process::Command;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("docker runs")
}

#[test]
fn the_image_builds_starts_and_is_healthy() {
    if !Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: no Docker daemon here (the image is built and probed where there is one)");
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let tag = format!("msrpd-test:{}", std::process::id());
    let built = docker(&["build", "-q", "-t", &tag, root]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let name = format!("msrpd-test-{}", std::process::id());
    let run = docker(&["run", "-d", "--name", &name, "-p", "127.0.0.1::9090", "-p", "127.0.0.1::2855", &tag]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let port = |p: &str| {
        let out = docker(&["port", &name, p]);
        String::from_utf8_lossy(&out.stdout).trim().rsplit(':').next().unwrap().parse::<u16>().unwrap()
    };
    let (metrics, relay) = (port("9090/tcp"), port("2855/tcp"));
    let started = Instant::now();
    let healthy = loop {
        let state = docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]);
        let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
        if state == "healthy" || started.elapsed() > Duration::from_secs(90) {
            break state;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let relay_up = std::net::TcpStream::connect(("127.0.0.1", relay)).is_ok();
    let health = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics)).unwrap();
        s.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let _ = docker(&["rm", "-f", &name]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert_eq!(healthy, "healthy");
    assert!(relay_up, "the relay port answers");
    assert!(health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200"), "{health}");
}
