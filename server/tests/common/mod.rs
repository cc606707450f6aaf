//! Running the real `riffle-server` binary in tests: a free port, a started server (killed,
//! with SIGKILL, when dropped), and the HTTP calls tests make to it.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server process; dropping it kills the process (SIGKILL) and reaps it.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts the binary on a free port over the data directory `dir`; returns once it listens.
pub fn start_on(dir: &Path) -> (Running, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_riffle-server"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir);
    (start(command, port), port)
}

/// Runs the server command; returns once it listens on `port`.
pub fn start(mut command: Command, port: u16) -> Running {
    let server = Running(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts"),
    );
    // The server answers once it has opened its log and bound its port.
    let ready = (0..200).any(|_| {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    });
    assert!(ready, "the server did not start listening");
    server
}

/// Runs statements through `/ksql`; they must succeed.
pub async fn ksql(client: &reqwest::Client, port: u16, sql: &str) {
    let response = client
        .post(format!("http://127.0.0.1:{port}/ksql"))
        .json(&serde_json::json!({"ksql": sql}))
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{sql}: {status} {body}");
}

/// A query's rows (`/query`), each as its columns.
pub async fn rows(client: &reqwest::Client, port: u16, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let response = client
        .post(format!("http://127.0.0.1:{port}/query"))
        .json(&serde_json::json!({"ksql": sql}))
        .send()
        .await
        .expect("the server answers");
    let body: serde_json::Value = response.json().await.expect("a JSON array");
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["row"]["columns"].as_array().cloned())
        .collect()
}

/// Sends rows (JSON objects) to a stream in one `/inserts-stream` request; answers the
/// acknowledgements, or the error if the request broke (a killed server).
pub async fn try_insert_rows(
    client: &reqwest::Client,
    port: u16,
    target: &str,
    rows: impl IntoIterator<Item = serde_json::Value>,
) -> Result<String, reqwest::Error> {
    let mut body = serde_json::json!({"target": target}).to_string();
    for row in rows {
        body.push('\n');
        body.push_str(&row.to_string());
    }
    client
        .post(format!("http://127.0.0.1:{port}/inserts-stream"))
        .body(body)
        .send()
        .await?
        .text()
        .await
}
