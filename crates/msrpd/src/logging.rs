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

/// Changes the running filter (a reload); `Err` when the filter does not parse.
pub type SetFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The `RUST_LOG` filter when set: it wins over the configuration, at start and on reload.
pub fn env_filter() -> Option<String> {
    std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty())
}

pub fn init(config: &LogConfig) -> SetFilter {
    let filter = EnvFilter::new(directives(env_filter().as_deref().unwrap_or(&config.filter)));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    fn setter<S: Send + Sync + 'static>(handle: tracing_subscriber::reload::Handle<EnvFilter, S>) -> SetFilter {
        Box::new(move |filter: &str| {
            let parsed = EnvFilter::try_new(directives(filter)).map_err(|e| e.to_string())?;
            handle.reload(parsed).map_err(|e| e.to_string())
        })
    }
    match config.format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            setter(handle)
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            setter(handle)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sip_stack_is_quiet_unless_named() {
        assert_eq!(super::directives("info"), "info,rsipstack=warn");
        assert_eq!(super::directives("debug,rsipstack=debug"), "debug,rsipstack=debug");
    }
}
