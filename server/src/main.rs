//! `riffle-server`: opens the embedded log in the data directory, starts the engine (which
//! replays the command topic), and serves the REST API until SIGINT or SIGTERM.

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
struct Options {
    /// Address the REST API listens on.
    #[arg(long, default_value = "127.0.0.1:8088", env = "RIFFLE_LISTEN")]
    listen: SocketAddr,
    /// Directory of the embedded log (topics, offsets, the command topic).
    #[arg(long, default_value = "./riffle-data", env = "RIFFLE_DATA_DIR")]
    data_dir: PathBuf,
    /// The service id reported by `/info` (ksqlDB's `ksql.service.id`).
    #[arg(long, default_value = "default_")]
    service_id: String,
}

fn main() -> ExitCode {
    let options = Options::parse();
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
    let state = Arc::new(ApiState::new(engine.clone(), options.service_id));
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
