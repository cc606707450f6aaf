//! [`TestServer`]: a real Riffle server (engine, REST API, embedded log in a temporary
//! directory) on an ephemeral port of this process, for suites that talk HTTP to it.

use std::sync::Arc;
use std::time::Duration;

use riffle_server::api::{ApiState, router};
use riffle_server::engine::Engine;
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};

#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub client: reqwest::Client,
    pub log: EmbeddedLog,
    pub engine: Arc<Engine>,
    serving: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server whose `/info` reports `service_id`.
    pub async fn start(service_id: &str) -> Result<TestServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let options = EmbeddedOptions {
            cleaner_interval: Duration::from_secs(3600),
        };
        let log = EmbeddedLog::open(dir.path(), options).map_err(|e| format!("log: {e}"))?;
        let engine = Arc::new(
            Engine::start(Arc::new(log.clone()))
                .await
                .map_err(|e| format!("engine: {e}"))?,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding a port: {e}"))?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| format!("address: {e}"))?
        );
        let app = router(Arc::new(ApiState::new(engine.clone(), service_id.into())));
        let serving = tokio::spawn(async move {
            if let Err(error) = riffle_server::api::serve(listener, app).await {
                eprintln!("the test server stopped: {error}");
            }
        });
        Ok(TestServer {
            url,
            client: reqwest::Client::new(),
            log,
            engine,
            serving,
            _dir: dir,
        })
    }

    /// Stops serving, then stops the queries.
    pub async fn stop(self) {
        self.serving.abort();
        self.engine.shutdown().await;
    }
}
