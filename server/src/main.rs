//! `riffle-server`: opens the embedded log in the data directory, starts the engine (which
//! replays the command topic), and serves the REST API until SIGINT or SIGTERM.
//!
//! Settings come from flags (or their `RIFFLE_*` variables), then from the configuration
//! file (`--config`, by default `riffle.toml` when there is one), then defaults:
//!
//! ```toml
//! listen = "127.0.0.1:8088"
//! data_dir = "./riffle-data"
//! service_id = "default_"
//!
//! [properties]                       # server properties, ksqlDB's names
//! "ksql.streams.auto.offset.reset" = "earliest"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use riffle_server::api::{ApiState, router};
use riffle_server::engine::Engine;
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};

/// A streaming SQL server that speaks ksqlDB's dialect and REST API.
#[derive(Debug, Parser)]
#[command(name = "riffle-server", version)]
struct Flags {
    /// Address the REST API listens on [default: 127.0.0.1:8088].
    #[arg(long, env = "RIFFLE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the embedded log (topics, offsets, the command topic) [default: ./riffle-data].
    #[arg(long, env = "RIFFLE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The service id reported by `/info` (ksqlDB's `ksql.service.id`) [default: default_].
    #[arg(long)]
    service_id: Option<String>,
    /// A server property, as name=value (repeatable; ksqlDB's names, e.g.
    /// ksql.streams.auto.offset.reset=earliest).
    #[arg(long = "property", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// The configuration file [default: riffle.toml, when it exists].
    #[arg(long, env = "RIFFLE_CONFIG")]
    config: Option<PathBuf>,
}

/// `riffle.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    service_id: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, toml::Value>,
}

/// The settings the server runs with.
#[derive(Debug)]
struct Options {
    listen: SocketAddr,
    data_dir: PathBuf,
    service_id: String,
    properties: BTreeMap<String, String>,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .ok_or_else(|| format!("'{text}' is not name=value"))
}

/// Flags over the configuration file over the defaults.
fn resolve(flags: Flags) -> Result<Options, String> {
    let default_file = PathBuf::from("riffle.toml");
    let path = match flags.config {
        Some(path) => Some(path),
        None => default_file.exists().then_some(default_file),
    };
    let file = match &path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "the configuration file {} cannot be read: {e}",
                    path.display()
                )
            })?;
            toml::from_str::<ConfigFile>(&text).map_err(|e| {
                format!(
                    "the configuration file {} is not valid: {e}",
                    path.display()
                )
            })?
        }
        None => ConfigFile::default(),
    };
    let mut properties = BTreeMap::new();
    for (name, value) in file.properties {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "the property {name} must be a string, a number or a boolean"
                ));
            }
        };
        properties.insert(name, text);
    }
    properties.extend(flags.properties);
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 8088));
    Ok(Options {
        listen: flags.listen.or(file.listen).unwrap_or(default_listen),
        data_dir: flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./riffle-data")),
        service_id: flags
            .service_id
            .or(file.service_id)
            .unwrap_or_else(|| "default_".to_string()),
        properties,
    })
}

fn main() -> ExitCode {
    let options = match resolve(Flags::parse()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("riffle-server: {message}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("riffle-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("riffle-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    std::fs::create_dir_all(&options.data_dir).map_err(|e| {
        format!(
            "the data directory {} cannot be created: {e}",
            options.data_dir.display()
        )
    })?;
    let log = EmbeddedLog::open(&options.data_dir, EmbeddedOptions::default()).map_err(|e| {
        format!(
            "the data directory {} cannot be used: {e}",
            options.data_dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "{} is already in use (another server running?); choose another with --listen",
                options.listen
            ),
            _ => format!("cannot listen on {}: {e}", options.listen),
        })?;
    let engine = Arc::new(
        Engine::start(Arc::new(log))
            .await
            .map_err(|e| format!("the engine did not start: {e}"))?,
    );
    let state = Arc::new(
        ApiState::new(engine.clone(), options.service_id).with_properties(options.properties),
    );
    tracing::info!(
        listen = %options.listen,
        data_dir = %options.data_dir.display(),
        "riffle-server is ready"
    );
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("stopping: queries commit their progress");
    engine.shutdown().await;
    served.map_err(|e| format!("the HTTP server failed: {e}"))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
