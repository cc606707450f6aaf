//! The real `riffle-server` binary, as users and their clients meet it: the README's quick
//! start run as written (the `curl` commands of its "Run the server" section, with only the
//! port changed so that the test never collides with a server on 8088), and the Python
//! clients written for ksqlDB (`tests/clients/python_clients.py`).

mod common;

use std::process::Command;

use common::{Running, free_port, start, start_on};

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

fn curl(command: &str, port: u16) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(command.replace("127.0.0.1:8088", &format!("127.0.0.1:{port}")))
        .output()
        .expect("bash runs curl");
    assert!(output.status.success(), "{command} failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts the binary on a free port with a fresh data directory; returns once it listens.
fn start_server() -> (Running, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, port) = start_on(dir.path());
    (server, port, dir)
}

#[test]
fn a_configuration_file_sets_the_address_the_data_directory_and_server_properties() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("riffle.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nservice_id = \"from_file_\"\n\n\
             [properties]\n\"ksql.streams.auto.offset.reset\" = \"earliest\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config written");
    let mut command = Command::new(env!("CARGO_BIN_EXE_riffle-server"));
    command.arg("--config").arg(&config);
    let _server = start(command, port);
    let info = curl("curl -s http://127.0.0.1:8088/info", port);
    assert!(info.contains("from_file_"), "{info}");
    curl(
        "curl -s -X POST http://127.0.0.1:8088/ksql -d '{\"ksql\": \"CREATE STREAM s (v INT) \
         WITH (kafka_topic='\"'\"'s'\"'\"', partitions=1, value_format='\"'\"'JSON'\"'\"'); \
         INSERT INTO s (v) VALUES (7);\"}'",
        port,
    );
    // No offset reset in the request: the server's property (earliest) applies.
    let pushed = curl(
        "curl -s -X POST http://127.0.0.1:8088/query -d '{\"ksql\": \"SELECT v FROM s EMIT CHANGES LIMIT 1;\"}'",
        port,
    );
    assert!(pushed.contains("\"columns\":[7]"), "{pushed}");
    assert!(
        dir.path().join("data").is_dir(),
        "the data directory is the file's"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 8088\n").expect("written");
    let output = Command::new(env!("CARGO_BIN_EXE_riffle-server"))
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not valid"), "{stderr}");
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let commands = quick_start_commands();
    assert_eq!(commands.len(), 4, "the quick start has four curl commands");
    let (_server, port, _dir) = start_server();

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

/// Runs one client of `tests/clients/python_clients.py` with the interpreter named by
/// `variable` (CI installs the clients and sets it; without it the check is skipped, with a
/// notice, as the Python packages are not part of a Rust build).
fn python_client(client: &str, variable: &str) {
    let Ok(python) = std::env::var(variable) else {
        eprintln!("{variable} is not set: skipping the `{client}` Python client check");
        return;
    };
    let (_server, port, _dir) = start_server();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/clients/python_clients.py"
    );
    let output = Command::new(python)
        .args([script, client, &format!("http://127.0.0.1:{port}")])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the {client} client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_ksqldb_python_client_works_unchanged() {
    python_client("ksqldb", "RIFFLE_PYTHON_KSQLDB");
}

#[test]
fn the_ksql_python_client_works_unchanged() {
    python_client("ksql", "RIFFLE_PYTHON_KSQL");
}
