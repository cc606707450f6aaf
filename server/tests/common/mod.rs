//! Running the real `riffle-server` binary in tests: a free port, a started server (killed,
//! with SIGKILL, when dropped).

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
