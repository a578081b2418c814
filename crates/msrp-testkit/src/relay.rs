//! A relay on 127.0.0.1 port 0 with the test accounts.

use std::net::SocketAddr;

use msrp::Uri;
use msrp_relay::{Relay, RelayOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{Tls, users};

pub struct TestRelay {
    pub relay: Relay,
    pub addr: SocketAddr,
    pub tls: bool,
    pub hostname: String,
    pub stop: watch::Sender<bool>,
}

impl TestRelay {
    /// The relay URI a client AUTHs to (no session-id).
    pub fn uri(&self) -> Uri {
        Uri::new(self.tls, &self.hostname, Some(self.addr.port()), None).unwrap()
    }
}

pub async fn start_relay(mut opts: RelayOptions, tls: Option<&Tls>, realm: &str) -> TestRelay {
    let (stop, stop_rx) = watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    if opts.ports.is_empty() {
        opts.ports = vec![addr.port()];
    }
    let hostname = opts.hostname.clone();
    let relay = Relay::new(opts, users(realm), tls.map(|t| t.connector.clone()), stop_rx);
    let r = relay.clone();
    let acceptor = tls.map(|t| t.acceptor.clone());
    tokio::spawn(async move { r.serve(listener, acceptor).await });
    TestRelay { relay, addr, tls: tls.is_some(), hostname, stop }
}

pub fn options(hostname: &str, realm: &str) -> RelayOptions {
    RelayOptions { hostname: hostname.into(), domains: vec![realm.into()], ..RelayOptions::default() }
}
