//! The `riffle` shell end to end, through a pseudo-terminal, against a real server: what a
//! person at the keyboard types and sees.

use std::process::Command;
use std::sync::Arc;

use rexpect::session::{PtySession, spawn_command};
use riffle_server::api::{ApiState, router, serve};
use riffle_server::engine::Engine;
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};

/// A server on an ephemeral port, running on its own runtime while the test types.
struct Server {
    url: String,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let url = runtime.block_on(async {
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("log opens");
        let engine = Arc::new(Engine::start(Arc::new(log)).await.expect("engine starts"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = router(Arc::new(ApiState::new(engine, "shell_test_".into())));
        tokio::spawn(async move { serve(listener, app).await });
        url
    });
    Server {
        url,
        _runtime: runtime,
        _dir: dir,
    }
}

fn shell(server: &Server, history: &std::path::Path) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_riffle"));
    command
        .arg(&server.url)
        .arg("--history-file")
        .arg(history)
        .env("TERM", "xterm");
    let mut session = spawn_command(command, Some(30_000)).expect("the shell starts");
    session.exp_string("Riffle shell").expect("a banner");
    session.exp_string("shell_test_").expect("the server's id");
    session.exp_string("riffle> ").expect("a prompt");
    session
}

#[test]
fn a_session_creates_queries_interrupts_and_remembers() {
    let server = start_server();
    let history_dir = tempfile::tempdir().expect("temp dir");
    let history = history_dir.path().join("history");
    let mut session = shell(&server, &history);

    // A statement over two lines: the second prompt waits for the semicolon.
    session
        .send_line("CREATE STREAM clicks (id STRING KEY, page STRING)")
        .expect("typed");
    session
        .exp_string("      > ")
        .expect("a continuation prompt");
    session
        .send_line("  WITH (kafka_topic='clicks', partitions=1, value_format='JSON');")
        .expect("typed");
    session.exp_string("Stream created").expect("created");
    session.exp_string("riffle> ").expect("a prompt");

    session
        .send_line(
            "INSERT INTO clicks (id, page) VALUES ('a', '/home'); \
             INSERT INTO clicks (id, page) VALUES ('b', '/cart');",
        )
        .expect("typed");
    session.exp_string("riffle> ").expect("a prompt");

    // Lines pasted together (typed ahead while the shell works) all run, in order.
    session
        .send("SHOW TABLES;\rSHOW STREAMS;\r")
        .expect("pasted");
    session.flush().expect("sent");
    session
        .exp_regex(r" Table Name +\| Kafka Topic")
        .expect("the tables table header");
    session
        .exp_regex(r" Stream Name +\| Kafka Topic +\| Key Format \| Value Format \| Windowed")
        .expect("the streams table header");
    session
        .exp_regex(r" CLICKS +\| clicks +\| KAFKA +\| JSON +\| false")
        .expect("the stream's row");
    session.exp_string("riffle> ").expect("a prompt");

    // Tab completes keywords and names.
    session.send("DESCRIBE CLIC\t").expect("typed");
    session.flush().expect("sent");
    session.exp_string("KS").expect("the name completed");
    session.send_line(";").expect("typed");
    session
        .exp_string("Name                 : CLICKS")
        .expect("the completed name was described");
    session
        .exp_regex(r" PAGE +\| VARCHAR\(STRING\)")
        .expect("the stream described");
    session.exp_string("riffle> ").expect("a prompt");

    // SET is kept by the shell and sent with the queries.
    session
        .send_line("SET 'auto.offset.reset' = 'earliest';")
        .expect("typed");
    session
        .exp_string("Successfully changed local property 'auto.offset.reset' to 'earliest'.")
        .expect("set");
    session
        .send_line("SELECT id, page FROM clicks EMIT CHANGES LIMIT 2;")
        .expect("typed");
    session.exp_regex(r"\| ID +\| PAGE +\|").expect("a header");
    session.exp_regex(r"\| a +\| /home +\|").expect("a row");
    session.exp_regex(r"\| b +\| /cart +\|").expect("a row");
    session.exp_string("Limit Reached").expect("the limit");
    session.exp_string("riffle> ").expect("a prompt");

    // An endless push query: Ctrl-C ends the query, not the shell.
    session
        .send_line("SELECT page FROM clicks EMIT CHANGES;")
        .expect("typed");
    session.exp_regex(r"\| /cart +\|").expect("rows so far");
    session.send_control('c').expect("Ctrl-C");
    session
        .exp_string("Query terminated")
        .expect("the query ended");
    session.exp_string("riffle> ").expect("the shell goes on");

    // An error names the problem and where it is.
    session.send_line("SHOW STREEMS;").expect("typed");
    session.exp_string("line 1:6").expect("the position");
    session.exp_string("riffle> ").expect("a prompt");

    session.send_line("exit").expect("typed");
    session.exp_eof().expect("the shell ends");

    // History survives a restart.
    let mut again = shell(&server, &history);
    again.send_line("history").expect("typed");
    again
        .exp_string("SHOW STREAMS;")
        .expect("a statement from the first session");
    again.exp_string("riffle> ").expect("a prompt");
    again.send_control('d').expect("Ctrl-D");
    again.exp_eof().expect("the shell ends");
}

#[test]
fn execute_runs_statements_and_reports_failure_in_the_exit_status() {
    let server = start_server();
    let run = |statements: &str| {
        Command::new(env!("CARGO_BIN_EXE_riffle"))
            .arg(&server.url)
            .arg("-e")
            .arg(statements)
            .output()
            .expect("the shell runs")
    };
    let created = run(
        "CREATE STREAM s (id INT KEY, v STRING) WITH (kafka_topic='s', partitions=1, value_format='JSON'); \
         DESCRIBE s;",
    );
    let out = String::from_utf8_lossy(&created.stdout);
    assert!(created.status.success(), "{out}");
    assert!(out.contains("Stream created"), "{out}");
    assert!(out.contains("ID    | INTEGER  (key)"), "{out}");
    let failed = run("DROP STREAM nope;");
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("NOPE"),
        "the error names the source"
    );
}

/// The shell lines of the README's quick start (`cargo run … -p riffle-cli -- ARGS`).
fn readme_shell_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    readme
        .split("## Run the server")
        .nth(1)
        .expect("the README has a 'Run the server' section")
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("cargo run --release -p riffle-cli -- "))
        .map(str::to_string)
        .collect()
}

/// Splits a shell line's arguments: words, and double-quoted strings as one argument.
fn arguments(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').expect("a closing quote");
            out.push(quoted[..end].to_string());
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    out
}

#[test]
fn the_readme_quick_start_shell_lines_work_as_written() {
    let server = start_server();
    let lines = readme_shell_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let with_port = |line: &str| -> Vec<String> {
        arguments(line)
            .into_iter()
            .map(|a| a.replace("http://127.0.0.1:8088", &server.url))
            .collect()
    };
    let setup = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .arg(&server.url)
        .arg("-e")
        .arg(
            "CREATE STREAM clicks (id STRING KEY, page STRING) \
             WITH (kafka_topic='clicks', partitions=1, value_format='JSON'); \
             INSERT INTO clicks (id, page) VALUES ('a', '/home');",
        )
        .output()
        .expect("the shell runs");
    assert!(setup.status.success(), "{setup:?}");
    let pulled = Command::new(env!("CARGO_BIN_EXE_riffle"))
        .args(with_port(&lines[0]))
        .output()
        .expect("the shell runs");
    let out = String::from_utf8_lossy(&pulled.stdout);
    assert!(pulled.status.success(), "{out}");
    assert!(out.contains("| a "), "{out}");
    assert!(out.contains("| /home "), "{out}");
    assert!(out.contains("Query Completed"), "{out}");

    let mut command = Command::new(env!("CARGO_BIN_EXE_riffle"));
    command.args(with_port(&lines[1])).env("TERM", "xterm");
    let history = tempfile::tempdir().expect("temp dir");
    command.env("RIFFLE_HISTORY_FILE", history.path().join("history"));
    let mut session = spawn_command(command, Some(30_000)).expect("the shell starts");
    session.exp_string("riffle> ").expect("a prompt");
    session.send_line("exit").expect("typed");
    session.exp_eof().expect("the shell ends");
}
