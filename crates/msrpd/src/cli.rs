//! Command line (a contract: scripts and operators rely on these names).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// MSRP relay (RFC 4976) and multi-party chat server (RFC 7701).
#[derive(Debug, Parser)]
#[command(name = "msrpd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file (TOML). Default: $MSRPD_CONFIG, else the embedded defaults.
    #[arg(short = 'c', long = "config", global = true, value_name = "PATH")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default when no command is given).
    Serve,
    /// Manage accounts in the user store.
    #[command(subcommand)]
    User(UserCommand),
    /// Validate the configuration and print the effective settings.
    CheckConfig,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is prompted for, or read from standard input.
    Add {
        /// USER@DOMAIN (the domain is the Digest realm).
        account: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Remove an account.
    Remove {
        /// USER@DOMAIN.
        account: String,
    },
    /// Change an account's password.
    Passwd {
        /// USER@DOMAIN.
        account: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}
