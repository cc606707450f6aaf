//! Reads the statements of the ksqlDB conformance corpus (test data outside the repository).

use std::path::PathBuf;

use serde_json::Value;

/// One statement of one case, with the file and case it came from.
#[derive(Debug)]
pub struct CorpusStatement {
    pub origin: String,
    pub sql: String,
}

/// The corpus folder: `RIFFLE_CONFORMANCE_DIR`, or `../shared/conformance/ksqldb` beside the
/// repository.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RIFFLE_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/ksqldb"),
    };
    dir.is_dir().then_some(dir)
}

/// Every statement of every case that does not expect an error, with `{FORMAT}` and
/// `{CONFIG}` placeholders expanded once per listed value.
pub fn corpus_statements() -> Option<Vec<CorpusStatement>> {
    let dir = corpus_dir()?;
    let mut files = Vec::new();
    for sub in ["query-validation-tests", "rest-query-validation-tests"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut statements = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("corpus file is readable");
        let json: Value = serde_json::from_str(&strip_line_comments(&text))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for case in json["tests"].as_array().into_iter().flatten() {
            if case.get("expectedException").is_some() || case.get("expectedError").is_some() {
                continue;
            }
            let name = case["name"].as_str().unwrap_or("?");
            let formats = string_list(&case["format"]);
            let configs = string_list(&case["config"]);
            for sql in case["statements"].as_array().into_iter().flatten() {
                let Some(sql) = sql.as_str() else { continue };
                for format in &formats {
                    for config in &configs {
                        statements.push(CorpusStatement {
                            origin: format!("{file}: {name}"),
                            sql: sql.replace("{FORMAT}", format).replace("{CONFIG}", config),
                        });
                    }
                }
            }
        }
    }
    Some(statements)
}

fn string_list(value: &Value) -> Vec<String> {
    match value.as_array() {
        Some(values) => values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        None => vec![String::new()],
    }
}

/// Removes `//` comments outside JSON strings (four corpus files use them).
pub fn strip_line_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
