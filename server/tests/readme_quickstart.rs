//! The README's quick start, run as written against the real `riffle-server` binary: the
//! `curl` commands of its "Run the server" section, with only the port changed so that the
//! test never collides with a server already running on 8088.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `curl` lines of the README's quick start.
fn quick_start_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    let section = readme
        .split("## Run the server")
        .nth(1)
        .expect("the README has a 'Run the server' section");
    section
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| line.starts_with("curl "))
        .map(str::to_string)
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn curl(command: &str, port: u16) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(command.replace("127.0.0.1:8088", &format!("127.0.0.1:{port}")))
        .output()
        .expect("bash runs curl");
    assert!(output.status.success(), "{command} failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let commands = quick_start_commands();
    assert_eq!(commands.len(), 4, "the quick start has four curl commands");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let _server = Running(
        Command::new(env!("CARGO_BIN_EXE_riffle-server"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
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

    let created = curl(&commands[0], port);
    assert!(created.contains("Stream created"), "{created}");
    let inserted = curl(&commands[1], port);
    assert_eq!(
        inserted.trim(),
        "[]",
        "INSERT VALUES answers with no entity"
    );
    let pulled = curl(&commands[2], port);
    assert!(pulled.contains("[\"a\",\"/home\"]"), "{pulled}");
    let pushed = curl(&commands[3], port);
    assert!(pushed.contains("\"columns\":[\"a\",\"/home\"]"), "{pushed}");
    assert!(pushed.contains("Limit Reached"), "{pushed}");
}
