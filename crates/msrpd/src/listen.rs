//! TCP listeners with a backlog sized for reconnect storms.
//!
//! `TcpListener::bind` asks the kernel for a queue of 128 pending connections. When a relay
//! restarts, or a NAT drops many flows at once, thousands of clients reconnect together; the
//! accept loop then runs behind the connections' AUTH work, a 129th SYN is dropped, and that
//! client waits a 1-second retransmission (`nstat` TcpExtListenOverflows). Measured with
//! `msrp-bench sessions --count 10000`: 993 overflows and 24.5 s to authenticate the 10,000
//! sessions with 128 (see docs/BENCHMARKS.md for the figure after).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel may queue per listener (it caps this at
/// `net.core.somaxconn`, 4096 on current Linux).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (with `SO_REUSEADDR`, as `TcpListener::bind` does) and listens.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
