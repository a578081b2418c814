//! `msrpd`: the daemon's entry point. At this stage it only describes itself; the relay and
//! chat services arrive with their issues.

use clap::Parser;

/// MSRP relay (RFC 4976) and multi-party chat server (RFC 7701).
#[derive(Debug, Parser)]
#[command(name = "msrpd", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("msrpd {}: the relay and chat services are not built yet; see README.md", env!("CARGO_PKG_VERSION"));
}
