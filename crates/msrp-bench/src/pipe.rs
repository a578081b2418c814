//! `--direct --pipe`: A's connection passes through a process that only copies bytes, both
//! ways, on the same tokio runtime as msrpd (a read, then a write of what was read). Its CPU
//! per message is what the kernel and the runtime cost any relay on this machine before it
//! parses anything: the floor under a relay's figure.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use tokio::net::{TcpListener, TcpStream};

use crate::client::Error;

/// Starts `msrp-bench pipe --to TO` as a child process; returns its pid and listening address.
/// The child exits when this process does (its stdin closes).
pub(crate) fn spawn(to: SocketAddr) -> Result<(u32, SocketAddr), Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["pipe", "--to", &to.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("pipe: no stdout")?).read_line(&mut line)?;
    let addr = line.trim().parse().map_err(|_| format!("pipe: unexpected first line {line:?}"))?;
    // Keep the stdin handle open for as long as we live.
    std::mem::forget(child.stdin.take());
    std::mem::forget(child);
    Ok((pid, addr))
}

/// The child: prints its address, then copies every accepted connection to `to` and back.
pub(crate) async fn run(to: SocketAddr) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    loop {
        let (mut inbound, _) = listener.accept().await?;
        let mut outbound = TcpStream::connect(to).await?;
        inbound.set_nodelay(true)?;
        outbound.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}
