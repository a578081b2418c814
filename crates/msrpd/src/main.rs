//! `msrpd`: parses the command line and wires the pieces; the work lives in the modules.

mod chat;
mod cli;
mod config;
mod listen;
mod logging;
mod metrics;
mod reload;
mod store;
mod tls;

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use cli::{Cli, Command, UserCommand};
use config::Config;
use store::{Account, Store, StoreOptions};
use tracing::{info, warn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("msrpd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("msrpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let config_flag = config_flag(cli.config.path.as_deref());
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config, cli.config.path.clone(), &config_flag).await,
            Command::CheckConfig => check_config(&config),
            Command::User(cmd) => user(&config, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msrpd: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// ` -c PATH` when a configuration file is in use (from the flag or $MSRPD_CONFIG), for the
/// commands msrpd suggests: without it they would act on the embedded defaults' store.
fn config_flag(path: Option<&std::path::Path>) -> String {
    let path = path.map(std::path::Path::to_path_buf).or_else(|| std::env::var_os(config::CONFIG_ENV).map(Into::into));
    path.map(|p| format!(" -c {}", p.display())).unwrap_or_default()
}

/// `check-config`: the configuration as `serve` would load it, certificate and key included
/// (a generated one is not created here), then the effective settings.
fn check_config(config: &Config) -> Result<(), AnyError> {
    if config.tls.certificate.is_some() {
        let identity = tls::identity(config)?;
        tls::certified(&identity)?;
        if config.relay.enabled && config.relay.listen.iter().any(|l| l.tls) {
            tls::check_hostname(&identity, &config.relay.hostname)?;
        }
    }
    // The effective settings, without a database password or the focus's SIP password.
    let mut shown = config.clone();
    if let Some(url) = &mut shown.database.url {
        *url = store::redact(url);
    }
    shown.chat.outbound_password = shown.chat.outbound_password.masked();
    print!("{}", shown.to_toml());
    Ok(())
}

async fn user(config: &Config, cmd: UserCommand) -> Result<(), AnyError> {
    let opts = StoreOptions::from_config(config)?;
    let store = Store::open(&opts).await?;
    // On stderr, so that `user list` output stays the accounts alone.
    eprintln!("msrpd: user store {} (table {})", store::redact(&opts.url), opts.accounts.table);
    if !matches!(cmd, UserCommand::List) {
        store.writable()?;
    }
    match cmd {
        UserCommand::Add { account, password_stdin } => {
            let account: Account = account.parse()?;
            if store.exists(&account).await? {
                return Err(format!("{account} exists already (msrpd user passwd changes its password)").into());
            }
            let password = read_password(password_stdin)?;
            store.add(&account, &password).await?;
            println!("added {account} (realm {})", account.domain);
        }
        UserCommand::Passwd { account, password_stdin } => {
            let account: Account = account.parse()?;
            let password = read_password(password_stdin)?;
            store.set_password(&account, &password).await?;
            println!("password changed for {account}");
        }
        UserCommand::Remove { account } => {
            let account: Account = account.parse()?;
            store.remove(&account).await?;
            println!("removed {account}");
        }
        UserCommand::List => {
            for account in store.list().await? {
                println!("{account}");
            }
        }
    }
    Ok(())
}

/// The password from stdin's first line, or prompted twice without echo.
fn read_password(from_stdin: bool) -> Result<String, AnyError> {
    if !from_stdin && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err("standard input is not a terminal: pass --password-stdin to read the password from it".into());
    }
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    };
    if password.is_empty() {
        return Err("empty password".into());
    }
    Ok(password)
}

async fn serve(config: Config, path: Option<std::path::PathBuf>, config_flag: &str) -> Result<(), AnyError> {
    let set_filter = logging::init(&config.log);
    let identity = tls::identity(&config)?;
    if identity.generated {
        info!(certificate = %identity.cert_path.display(), fingerprint = %identity.fingerprint, "using a self-signed certificate generated for relay.hostname");
    } else {
        info!(certificate = %identity.cert_path.display(), fingerprint = %identity.fingerprint, "certificate loaded");
    }
    if config.relay.enabled && config.relay.listen.iter().any(|l| l.tls) {
        tls::check_hostname(&identity, &config.relay.hostname)?;
    }
    // rsipstack builds some rustls configs with the process default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Swappable by SIGHUP (reload.rs): every listener and dial reads them through these.
    let cert = tls::CertSlot::new(&identity)?;
    let trust = tls::TrustSlot::new(&config, &identity)?;
    let server_config = tls::server_config(cert.clone())?;
    let client_config = tls::client_config(trust.clone())?;
    let server_tls = tokio_rustls::TlsAcceptor::from(server_config.clone());
    let client_tls = tokio_rustls::TlsConnector::from(client_config.clone());
    let store_opts = StoreOptions::from_config(&config)?;
    let store = Store::open(&store_opts).await?;
    info!(
        database = %store::redact(&store_opts.url),
        accounts = %store_opts.accounts.table,
        schema = ?store_opts.accounts.schema,
        algorithms = ?store_opts.accounts.algorithms(),
        "user store open"
    );
    // One cache for both doors (store::cache).
    let credentials = Arc::new(store::CachedCredentials::new(
        store.clone(),
        std::time::Duration::from_secs(config.database.cache_seconds),
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // One guessing guard for the relay's AUTH and the chat's SIP Digest: an account's
    // failures count together whichever door they come through.
    let guard = Arc::new(msrp_relay::guard::AuthGuard::new(config.auth.guard_options()));
    let mut tasks = Vec::new();
    let mut relays = Vec::new();
    if config.relay.enabled {
        let relay = msrp_relay::Relay::new(
            msrp_relay::RelayOptions { guard: guard.clone(), ..relay_options(&config) },
            credentials.clone(),
            Some(client_tls),
            stop_rx.clone(),
        );
        relays.push(relay.clone());
        for listen in &config.relay.listen {
            let listener = listen::bind(listen.addr).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            if listen.tls {
                info!(%listen, hostname = %config.relay.hostname, "relay listening");
            } else {
                warn!(%listen, "relay listening WITHOUT TLS (plain TCP): use only on trusted networks and for tests");
            }
            let relay = relay.clone();
            let acceptor = listen.tls.then(|| server_tls.clone());
            tasks.push(tokio::spawn(async move { relay.serve(listener, acceptor).await }));
        }
        info!(
            domains = ?config.relay.domains,
            "add an account with: msrpd{config_flag} user add USER@DOMAIN (the domain is the realm; e.g. alice@{})",
            config.relay.domains[0]
        );
    }
    let chat = if config.chat.enabled {
        Some(chat::start(&config, &store, credentials.clone(), server_config, client_config, guard.clone()).await?)
    } else {
        None
    };
    let reloader = reload::Reloader::new(
        path,
        config.clone(),
        cert,
        trust,
        set_filter,
        relays.first().cloned(),
        chat.as_ref().map(|c| c.chat.clone()),
    );
    tokio::spawn(Arc::new(reloader).on_sighup());
    if let Some(listener) = metrics::bind(config.metrics.listen)? {
        let sources = metrics::Sources {
            relay: relays.first().cloned(),
            chat: chat.as_ref().map(|c| (c.chat.clone(), c.sip.clone())),
            credentials: Some(credentials.clone()),
        };
        // Not among the tasks awaited at shutdown: it serves until the process ends.
        tokio::spawn(metrics::serve(listener, sources));
    }
    shutdown_signal().await;
    info!("shutting down: reporting what is in flight, hanging up chat calls, then ending sessions");
    if let Some(chat) = &chat {
        chat.shutdown().await;
    }
    for relay in &relays {
        relay.drain().await;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Let connection tasks send their last REPORTs and close.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn relay_options(config: &Config) -> msrp_relay::RelayOptions {
    let r = &config.relay;
    let secs = std::time::Duration::from_secs;
    msrp_relay::RelayOptions {
        hostname: r.hostname.clone(),
        domains: r.domains.clone(),
        aliases: r.listen.iter().map(|l| l.addr.ip().to_string()).collect(),
        ports: r.listen.iter().map(|l| l.addr.port()).collect(),
        min_expires: r.min_expires,
        default_expires: r.default_expires,
        max_expires: r.max_expires,
        nonce_lifetime: secs(r.nonce_lifetime),
        max_auth_failures: r.max_auth_failures,
        auth_timeout: secs(r.auth_timeout),
        transaction_timeout: secs(r.transaction_timeout),
        max_connections: r.max_connections,
        max_connections_per_ip: r.max_connections_per_ip,
        max_sessions_per_connection: r.max_sessions_per_connection,
        basic_auth_domains: r.basic_auth_domains.clone(),
        extra_methods: r.extra_methods.clone(),
        limits: r.limits(),
        max_chunk: r.max_chunk,
        read_buffer: r.read_buffer,
        output_buffer: r.output_buffer,
        output_messages: r.output_messages,
        chunk_hold: std::time::Duration::from_millis(r.chunk_hold_ms),
        dial_backoff: std::time::Duration::from_millis(r.dial_backoff_ms),
        guard: Arc::new(msrp_relay::guard::AuthGuard::new(config.auth.guard_options())),
        throttle: r.limits.throttle(),
    }
}
