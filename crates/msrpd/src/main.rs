//! `msrpd`: the daemon's entry point. The relay (RFC 4976) and chat (RFC 7701) services are
//! wired in here as they land; until then the binary describes itself.

use clap::{CommandFactory, Parser};

/// MSRP relay (RFC 4976) and multi-party chat server (RFC 7701).
#[derive(Debug, Parser)]
#[command(name = "msrpd", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    // No service is built yet: say what this binary is and how to ask for more.
    Cli::command().print_help().expect("stdout is writable");
    println!();
}
