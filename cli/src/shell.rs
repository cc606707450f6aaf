//! The shell: reads statements (interactively with line editing, history and completion,
//! or from `-e` / `-f` / `run script`), routes each one — queries and `PRINT` to `/query`,
//! `SET`/`UNSET`/`DEFINE`/`UNDEFINE` kept here, the rest to `/ksql` — and shows the answers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use riffle_grammar::Statement;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Config, Context, Editor, Helper};
use serde_json::Value;

use crate::client::{ClientError, RestClient};
use crate::input::{CliCommand, cli_command, is_complete};
use crate::render;

/// How entities are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Tabular,
    Json,
}

impl Output {
    pub fn parse(text: &str) -> Option<Output> {
        match text.to_uppercase().as_str() {
            "TABULAR" => Some(Output::Tabular),
            "JSON" => Some(Output::Json),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Output::Tabular => "TABULAR",
            Output::Json => "JSON",
        }
    }
}

pub struct Shell {
    client: RestClient,
    runtime: tokio::runtime::Runtime,
    /// `SET` properties, sent as `streamsProperties` with every request.
    properties: BTreeMap<String, String>,
    /// `DEFINE` variables (upper-case names), sent as `sessionVariables`.
    variables: BTreeMap<String, String>,
    output: Output,
    spool: Option<std::fs::File>,
    /// Stream, table and topic names, for completion.
    names: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("server", &self.client.server)
            .finish_non_exhaustive()
    }
}

/// Why running statements stopped early.
#[derive(Debug)]
pub struct Failed;

impl Shell {
    pub fn new(
        client: RestClient,
        output: Output,
        variables: BTreeMap<String, String>,
    ) -> std::io::Result<Shell> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        Ok(Shell {
            client,
            runtime,
            properties: BTreeMap::new(),
            variables,
            output,
            spool: None,
            names: Arc::default(),
        })
    }

    /// Writes to the terminal and, while spooling, to the spool file.
    fn show(&mut self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        if let Some(spool) = &mut self.spool {
            let _ = spool.write_all(text.as_bytes());
        }
    }

    fn show_error(&mut self, error: &ClientError) {
        let message = error.message();
        self.show(&format!("{message}\n"));
    }

    /// The banner: the shell's and the server's versions.
    pub fn banner(&mut self) {
        let mut text = format!("Riffle shell {}\n", env!("CARGO_PKG_VERSION"));
        match self.runtime.block_on(self.client.info()) {
            Ok(info) => text.push_str(&format!(
                "Server: {} (Riffle {}, {}) at {}\n",
                info["ksqlServiceId"].as_str().unwrap_or("?"),
                info["version"].as_str().unwrap_or("?"),
                info["serverStatus"].as_str().unwrap_or("?"),
                self.client.server
            )),
            Err(error) => text.push_str(&format!(
                "WARNING: {}\nUse 'server <url>' to connect to another server.\n",
                error.message()
            )),
        }
        text.push_str(
            "\nHaving trouble? Type 'help' (case-insensitive) for a rundown of how things work!\n\n",
        );
        self.show(&text);
    }

    /// The interactive loop, until `exit` or Ctrl-D. History is read from and written to
    /// `history_file`.
    pub fn interactive(&mut self, history_file: Option<PathBuf>) -> rustyline::Result<()> {
        let config = Config::builder()
            .history_ignore_dups(true)?
            .auto_add_history(false)
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
        editor.set_helper(Some(ShellHelper {
            names: self.names.clone(),
        }));
        if let Some(path) = &history_file
            && path.exists()
            && let Err(error) = editor.load_history(path)
        {
            self.show(&format!(
                "WARNING: the history in {} cannot be read: {error}\n",
                path.display()
            ));
        }
        self.refresh_names();
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() {
                "riffle> "
            } else {
                "      > "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                // Ctrl-C at the prompt drops what was typed.
                Err(ReadlineError::Interrupted) => {
                    pending.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(error) => return Err(error),
            };
            if let Some(spool) = &mut self.spool {
                let _ = writeln!(spool, "{prompt}{line}");
            }
            if pending.is_empty()
                && let Some(command) = cli_command(&line)
            {
                editor.add_history_entry(line.trim())?;
                save_history(&mut editor, history_file.as_ref());
                match command {
                    CliCommand::Exit => break,
                    CliCommand::History => {
                        let listed: String = editor
                            .history()
                            .iter()
                            .enumerate()
                            .map(|(i, entry)| format!("{:>4}  {entry}\n", i + 1))
                            .collect();
                        self.show(&listed);
                    }
                    other => self.run_command(other),
                }
                continue;
            }
            pending.push_str(&line);
            pending.push('\n');
            if is_complete(&pending) {
                let statement = std::mem::take(&mut pending);
                let entry = statement.trim();
                if entry.is_empty() {
                    continue;
                }
                editor.add_history_entry(entry)?;
                save_history(&mut editor, history_file.as_ref());
                let _ = self.execute(&statement);
            }
        }
        self.show("Exiting Riffle.\n");
        Ok(())
    }

    /// Runs a shell command other than `exit` and `history`.
    pub fn run_command(&mut self, command: CliCommand) {
        match command {
            CliCommand::Help => self.show(HELP),
            CliCommand::Clear => self.show("\x1b[2J\x1b[H"),
            CliCommand::Version => {
                self.show(&format!("Version: {}\n", env!("CARGO_PKG_VERSION")));
            }
            CliCommand::Server(None) => {
                let server = self.client.server.clone();
                self.show(&format!("{server}\n"));
            }
            CliCommand::Server(Some(url)) => {
                self.client = RestClient::new(&url, None);
                self.banner();
                self.refresh_names();
            }
            CliCommand::Output(None) => {
                let name = self.output.name();
                self.show(&format!("Output format: {name}\n"));
            }
            CliCommand::Output(Some(format)) => match Output::parse(&format) {
                Some(output) => {
                    self.output = output;
                    self.show(&format!("Output format set to {}\n", output.name()));
                }
                None => self.show(&format!(
                    "Unknown output format '{format}': use TABULAR or JSON\n"
                )),
            },
            CliCommand::Spool(target) if target.eq_ignore_ascii_case("off") => {
                if self.spool.take().is_some() {
                    self.show("Spool closed.\n");
                }
            }
            CliCommand::Spool(path) => match std::fs::File::create(&path) {
                Ok(file) => {
                    self.spool = Some(file);
                    self.show(&format!("Session will be spooled to {path}\n"));
                }
                Err(error) => self.show(&format!("Cannot spool to {path}: {error}\n")),
            },
            CliCommand::RunScript(path) => match std::fs::read_to_string(&path) {
                Ok(script) => {
                    let _ = self.execute(&script);
                }
                Err(error) => self.show(&format!("Cannot read the script {path}: {error}\n")),
            },
            CliCommand::Exit | CliCommand::History => {}
        }
    }

    /// Runs the statements of `text` in order, stopping at the first that fails.
    pub fn execute(&mut self, text: &str) -> Result<(), Failed> {
        let statements = match riffle_grammar::split_script(text) {
            Ok(statements) => statements.into_iter().map(|s| s.text).collect::<Vec<_>>(),
            // The server names the problem, with its position.
            Err(_) => vec![text.trim().to_string()],
        };
        for statement in statements {
            self.execute_one(&statement)?;
        }
        Ok(())
    }

    fn execute_one(&mut self, text: &str) -> Result<(), Failed> {
        let substituted = riffle_grammar::substitute_variables(text, |name| {
            self.variables.get(&name.to_uppercase()).cloned()
        })
        .unwrap_or(Cow::Borrowed(text));
        match riffle_grammar::parse_statement(&substituted) {
            Ok(Statement::SetProperty(assignment)) => {
                self.show(&format!(
                    "Successfully changed local property '{}' to '{}'.\n",
                    assignment.name, assignment.value
                ));
                self.properties.insert(assignment.name, assignment.value);
                Ok(())
            }
            Ok(Statement::UnsetProperty(name)) => {
                match self.properties.remove(&name) {
                    Some(old) => self.show(&format!(
                        "Successfully unset local property '{name}' (value was '{old}').\n"
                    )),
                    None => self.show(&format!("Property '{name}' was not set.\n")),
                }
                Ok(())
            }
            Ok(Statement::DefineVariable { name, value }) => {
                self.variables.insert(name.value.to_uppercase(), value);
                Ok(())
            }
            Ok(Statement::UndefineVariable(name)) => {
                if self.variables.remove(&name.value.to_uppercase()).is_none() {
                    self.show(&format!("Variable '{}' is undefined\n", name.value));
                }
                Ok(())
            }
            Ok(Statement::Print(_)) => self.print_topic(text),
            Ok(Statement::Query(_)) => self.query(text),
            parsed => {
                let changes_names = matches!(
                    parsed,
                    Ok(Statement::CreateSource(_)
                        | Statement::CreateAsSelect(_)
                        | Statement::DropSource(_))
                );
                let answer = self.runtime.block_on(self.client.ksql(
                    text,
                    &self.properties,
                    &self.variables,
                ));
                match answer {
                    Ok(entities) => {
                        let shown: String = match self.output {
                            Output::Tabular => entities.iter().map(render::entity).collect(),
                            Output::Json => {
                                serde_json::to_string_pretty(&entities).unwrap_or_default() + "\n"
                            }
                        };
                        self.show(&shown);
                        if changes_names {
                            self.refresh_names();
                        }
                        Ok(())
                    }
                    Err(error) => {
                        self.show_error(&error);
                        Err(Failed)
                    }
                }
            }
        }
    }

    /// A query: rows are shown as they arrive, until the query ends (its `LIMIT`, or a pull
    /// query read everything) or Ctrl-C, which closes the query and nothing else.
    fn query(&mut self, text: &str) -> Result<(), Failed> {
        let mut response = self.start_query(text)?;
        let mut elements = StreamedElements::default();
        let mut table: Option<render::RowTable> = None;
        loop {
            let next = self.next_chunk(&mut response);
            let chunk = match next {
                None => {
                    let rule = table
                        .as_ref()
                        .map(render::RowTable::rule)
                        .unwrap_or_default();
                    self.show(&format!("{rule}Query terminated\n"));
                    return Ok(());
                }
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => {
                    self.show(&format!("The query stopped: {error}\n"));
                    return Err(Failed);
                }
            };
            let complete = chunk.is_none();
            if let Some(chunk) = chunk {
                elements.push(&String::from_utf8_lossy(&chunk));
            }
            for element in elements.take(complete) {
                let shown = self.show_element(&element, &mut table);
                self.show(&shown);
            }
            if complete {
                return Ok(());
            }
        }
    }

    /// Sends a query (or `PRINT`) to `/query`; a refusal is shown.
    fn start_query(&mut self, text: &str) -> Result<reqwest::Response, Failed> {
        let started =
            self.runtime
                .block_on(self.client.query(text, &self.properties, &self.variables));
        started.map_err(|error| {
            self.show_error(&error);
            Failed
        })
    }

    /// The next chunk of a streaming answer (`Ok(None)` at its end), or `None` when the
    /// user pressed Ctrl-C first.
    fn next_chunk(
        &self,
        response: &mut reqwest::Response,
    ) -> Option<reqwest::Result<Option<bytes::Bytes>>> {
        self.runtime.block_on(async {
            tokio::select! {
                chunk = response.chunk() => Some(chunk),
                _ = tokio::signal::ctrl_c() => None,
            }
        })
    }

    /// One StreamedRow element as the output format shows it.
    fn show_element(&self, element: &Value, table: &mut Option<render::RowTable>) -> String {
        if self.output == Output::Json {
            return format!("{element}\n");
        }
        if let Some(schema) = element["header"]["schema"].as_str() {
            let names = render::column_names(schema);
            let rows = render::RowTable::new(&names);
            let header = rows.header(&names);
            *table = Some(rows);
            return header;
        }
        if let Some(columns) = element["row"]["columns"].as_array() {
            let cells = render::cells(columns);
            return table.as_ref().map(|t| t.row(&cells)).unwrap_or_default();
        }
        let rule = table
            .as_ref()
            .map(render::RowTable::rule)
            .unwrap_or_default();
        if let Some(message) = element["finalMessage"].as_str() {
            return format!("{rule}{message}\n");
        }
        if let Some(message) = element["errorMessage"]["message"].as_str() {
            return format!("{rule}{message}\n");
        }
        String::new()
    }

    /// `PRINT`: the server's lines as they arrive, until its `LIMIT` or Ctrl-C.
    fn print_topic(&mut self, text: &str) -> Result<(), Failed> {
        let mut response = self.start_query(text)?;
        loop {
            let next = self.next_chunk(&mut response);
            match next {
                None => {
                    self.show("Topic printing ceased\n");
                    return Ok(());
                }
                Some(Ok(Some(chunk))) => self.show(&String::from_utf8_lossy(&chunk)),
                Some(Ok(None)) => return Ok(()),
                Some(Err(error)) => {
                    self.show(&format!("Printing stopped: {error}\n"));
                    return Err(Failed);
                }
            }
        }
    }

    /// Reloads the stream, table and topic names completion offers.
    fn refresh_names(&mut self) {
        let answer = self.runtime.block_on(self.client.ksql(
            "SHOW STREAMS; SHOW TABLES; SHOW TOPICS;",
            &BTreeMap::new(),
            &BTreeMap::new(),
        ));
        let Ok(entities) = answer else { return };
        let mut names = Vec::new();
        for entity in &entities {
            for key in ["streams", "tables", "topics"] {
                for item in entity[key].as_array().into_iter().flatten() {
                    if let Some(name) = item["name"].as_str() {
                        names.push(name.to_string());
                    }
                }
            }
        }
        if let Ok(mut known) = self.names.lock() {
            *known = names;
        }
    }
}

fn save_history(editor: &mut Editor<ShellHelper, FileHistory>, path: Option<&PathBuf>) {
    if let Some(path) = path
        && let Err(error) = editor.save_history(path)
    {
        eprintln!(
            "WARNING: the history cannot be saved to {}: {error}",
            path.display()
        );
    }
}

/// The elements of a `/query` body (`[` element `,\n` element … `]`) as they complete.
#[derive(Debug, Default)]
struct StreamedElements {
    pending: String,
    started: bool,
}

impl StreamedElements {
    fn push(&mut self, text: &str) {
        self.pending.push_str(text);
        if !self.started {
            let trimmed = self.pending.trim_start();
            if let Some(rest) = trimmed.strip_prefix('[') {
                self.pending = rest.to_string();
                self.started = true;
            }
        }
    }

    /// The elements complete so far; with `end`, the last one too.
    fn take(&mut self, end: bool) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(at) = self.pending.find(",\n") {
            let element: String = self.pending.drain(..at + 2).collect();
            if let Ok(value) = serde_json::from_str(element[..at].trim()) {
                out.push(value);
            }
        }
        // The server writes the separator before each element, so the last one is complete
        // once it parses.
        let rest = self.pending.trim().trim_end_matches(']').trim();
        if let Ok(value) = serde_json::from_str(rest) {
            out.push(value);
            self.pending.clear();
        } else if end {
            self.pending.clear();
        }
        out
    }
}

/// Words completion offers besides stream, table and topic names.
const KEYWORDS: &[&str] = &[
    "ALTER",
    "AND",
    "AS",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CHANGES",
    "CREATE",
    "DEFINE",
    "DELETE",
    "DESCRIBE",
    "DROP",
    "ELSE",
    "EMIT",
    "END",
    "EXISTS",
    "EXPLAIN",
    "EXTENDED",
    "FROM",
    "FUNCTION",
    "FUNCTIONS",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INSERT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LIKE",
    "LIMIT",
    "LIST",
    "NOT",
    "NULL",
    "OR",
    "PARTITION",
    "PAUSE",
    "PRIMARY",
    "PRINT",
    "PROPERTIES",
    "QUERIES",
    "RESUME",
    "SELECT",
    "SET",
    "SHOW",
    "STREAM",
    "STREAMS",
    "TABLE",
    "TABLES",
    "TERMINATE",
    "THEN",
    "TOPIC",
    "TOPICS",
    "TYPE",
    "TYPES",
    "UNDEFINE",
    "UNSET",
    "VALUES",
    "VARIABLES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// Completion of keywords and of stream, table and topic names.
struct ShellHelper {
    names: Arc<Mutex<Vec<String>>>,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let upper = word.to_uppercase();
        let mut candidates: Vec<String> = KEYWORDS
            .iter()
            .filter(|k| k.starts_with(&upper))
            .map(|k| k.to_string())
            .collect();
        if let Ok(names) = self.names.lock() {
            // Names spelled as typed first (`CLICKS` the stream before `clicks` the topic).
            let exact: Vec<String> = names
                .iter()
                .filter(|n| n.starts_with(word))
                .cloned()
                .collect();
            if exact.is_empty() {
                candidates.extend(
                    names
                        .iter()
                        .filter(|n| n.to_uppercase().starts_with(&upper))
                        .cloned(),
                );
            } else {
                candidates.extend(exact);
            }
        }
        candidates.sort();
        candidates.dedup();
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

const HELP: &str = "\
Statements end with a semicolon (;) and may span several lines. Comments start with --.

Shell commands (no semicolon needed, case-insensitive):
  help                  show this text
  exit, quit            leave the shell (Ctrl-D works too)
  clear                 clear the screen
  history               list the statements typed so far (kept across sessions)
  version               show the shell's version
  server [url]          show the server, or switch to another
  output [TABULAR|JSON] show or set how answers are shown
  spool <file>|OFF      copy the session into a file, or stop
  run script <file>     run the statements of a file

Statements the shell keeps itself and sends with every request:
  SET 'property' = 'value';   UNSET 'property';
  DEFINE name = 'value';      UNDEFINE name;      (use as ${name})

Queries (SELECT …) stream their rows as a table; Ctrl-C stops a query and keeps the shell.
PRINT 'topic' [FROM BEGINNING] [INTERVAL n] [LIMIT n]; shows a topic's records.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_elements_arrive_as_they_complete() {
        let mut elements = StreamedElements::default();
        elements.push("[{\"header\":{\"schema\":\"`A` INTEGER\"}}");
        assert_eq!(
            elements.take(false).len(),
            1,
            "a complete element shows at once"
        );
        elements.push(",\n{\"row\":");
        assert_eq!(elements.take(false).len(), 0);
        elements.push("{\"columns\":[1]}},\n{\"finalMessage\":\"Limit Reached\"}]\n");
        let rest = elements.take(true);
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[1]["finalMessage"], "Limit Reached");
    }
}
