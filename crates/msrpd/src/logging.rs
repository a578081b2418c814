//! Structured logs (tracing): a `RUST_LOG`-style filter (the environment wins over the
//! configuration) and text or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The SIP stack logs every message it sends and receives at `info`; unless the filter names
/// it, it is held to warnings so that `info` stays readable.
const QUIET_SIP_STACK: &str = "rsipstack=warn";

fn directives(filter: &str) -> String {
    if filter.contains("rsipstack") { filter.to_owned() } else { format!("{filter},{QUIET_SIP_STACK}") }
}

pub fn init(config: &LogConfig) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = EnvFilter::new(directives(from_env.as_deref().unwrap_or(&config.filter)));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sip_stack_is_quiet_unless_named() {
        assert_eq!(super::directives("info"), "info,rsipstack=warn");
        assert_eq!(super::directives("debug,rsipstack=debug"), "debug,rsipstack=debug");
    }
}
