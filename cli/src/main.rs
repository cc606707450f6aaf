//! `riffle`: the interactive shell for Riffle (and ksqlDB) servers.
//!
//! ```text
//! riffle [http://localhost:8088] [-u USER -p PASSWORD] [-e "statements"] [-f script.sql]
//!        [--output TABULAR|JSON] [-d name=value]… [--history-file FILE]
//! ```
//! With `-e` or `-f` it runs the statements and exits (status 1 when one failed);
//! otherwise it reads statements interactively.

mod client;
mod input;
mod render;
mod shell;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::client::RestClient;
use crate::shell::{Output, Shell};

/// The Riffle shell: type ksqlDB statements, see the answers.
#[derive(Debug, Parser)]
#[command(name = "riffle", version)]
struct Options {
    /// The server to talk to.
    #[arg(default_value = "http://localhost:8088")]
    server: String,
    /// User name, for a server that asks for credentials.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Password (with --user).
    #[arg(short = 'p', long = "password", env = "RIFFLE_PASSWORD")]
    password: Option<String>,
    /// Run these statements and exit.
    #[arg(short = 'e', long = "execute")]
    execute: Option<String>,
    /// Run the statements of this file and exit.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// How answers are shown: TABULAR or JSON.
    #[arg(long, default_value = "TABULAR", value_parser = parse_output)]
    output: Output,
    /// A variable for ${name} substitution, as name=value (repeatable).
    #[arg(short = 'd', long = "define", value_parser = parse_define)]
    define: Vec<(String, String)>,
    /// Where the history is kept.
    #[arg(long, env = "RIFFLE_HISTORY_FILE")]
    history_file: Option<PathBuf>,
}

fn parse_output(text: &str) -> Result<Output, String> {
    Output::parse(text)
        .ok_or_else(|| format!("'{text}' is not an output format: use TABULAR or JSON"))
}

fn parse_define(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not name=value"))?;
    Ok((name.trim().to_uppercase(), value.to_string()))
}

fn main() -> ExitCode {
    let options = Options::parse();
    let credentials = options
        .user
        .clone()
        .map(|user| (user, options.password.clone().unwrap_or_default()));
    let variables: BTreeMap<String, String> = options.define.iter().cloned().collect();
    let client = RestClient::new(&options.server, credentials);
    let mut shell = match Shell::new(client, options.output, variables) {
        Ok(shell) => shell,
        Err(error) => {
            eprintln!("riffle: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let script = match (&options.execute, &options.file) {
        (Some(statements), _) => Some(statements.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(script) => Some(script),
            Err(error) => {
                eprintln!("riffle: cannot read {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, None) => None,
    };
    if let Some(script) = script {
        return match shell.execute(&script) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let history = options.history_file.or_else(|| {
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".riffle-history"))
    });
    shell.banner();
    match shell.interactive(history) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("riffle: the terminal failed: {error}");
            ExitCode::FAILURE
        }
    }
}
