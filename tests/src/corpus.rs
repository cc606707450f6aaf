//! The ksqlDB conformance corpus: case files read from outside the repository, with their
//! `format` / `config` parameters expanded into one case per value.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
pub use riffle_server::log::Header;
use serde_json::Value;

/// One runnable case.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: String,
    pub name: String,
    pub statements: Vec<String>,
    pub properties: Vec<(String, String)>,
    pub topics: Vec<(String, i32)>,
    pub inputs: Vec<TestRecord>,
    pub outputs: Vec<TestRecord>,
    pub expected_error: Option<String>,
    /// REST cases: the HTTP status the expected error comes with.
    pub expected_status: Option<u16>,
    /// REST cases: the expected `/ksql` entities (`{"admin": …}`) and `/query` bodies
    /// (`{"query": […]}`), in statement order; `None` when the case checks none.
    pub responses: Option<Vec<Value>>,
    /// REST cases (`testPullWithProtoFormat`): every query runs again answered in Protobuf,
    /// expected as `{"queryProto": […]}` bodies after the JSON ones.
    pub pull_in_protobuf: bool,
    /// `post.sources`: (name, schema) to check after the statements ran.
    pub post_sources: Vec<(String, String)>,
    /// `post.topics.blacklist`: a pattern no topic may match once the case ran (ksqlDB's
    /// check that no needless internal topic, such as a repartition, was made).
    pub topic_blacklist: Option<String>,
    /// Why the case cannot run here (a format that needs a Schema Registry, a disabled case).
    pub skip: Option<String>,
}

/// An input or expected output record.
#[derive(Debug, Clone)]
pub struct TestRecord {
    pub topic: String,
    pub key: Value,
    pub value: Value,
    pub timestamp: Option<i64>,
    pub window: Option<Value>,
    /// `[{"KEY": k, "VALUE": base64 | null}]`; absent means none.
    pub headers: Vec<Header>,
}

/// The corpus folder: `RIFFLE_CONFORMANCE_DIR`, else `../shared/conformance/ksqldb`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("RIFFLE_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/ksqldb"),
    }
}

/// Which half of the corpus: the statement cases or the REST cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Queries,
    Rest,
}

impl Suite {
    fn folder(self) -> &'static str {
        match self {
            Suite::Queries => "query-validation-tests",
            Suite::Rest => "rest-query-validation-tests",
        }
    }
}

/// The case files of `suite` under `dir` (or in `dir` itself when it has no such folder).
pub fn case_files(dir: &Path, suite: Suite) -> Result<Vec<PathBuf>> {
    let folder = if dir.join(suite.folder()).is_dir() {
        dir.join(suite.folder())
    } else {
        dir.to_path_buf()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one case file into its expanded cases.
pub fn load_file(path: &Path) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: Value = serde_json::from_str(&strip_line_comments(&text))
        .with_context(|| format!("parsing {}", path.display()))?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cases = Vec::new();
    for case in json["tests"].as_array().into_iter().flatten() {
        let base = case["name"].as_str().unwrap_or("unnamed").to_string();
        let formats = string_list(&case["format"]);
        let configs = string_list(&case["config"]);
        for format in &formats {
            for config in &configs {
                let substitute = |text: &str| {
                    let mut text = text.to_string();
                    if let Some(format) = format {
                        text = text.replace("{FORMAT}", format);
                    }
                    if let Some(config) = config {
                        text = text.replace("{CONFIG}", config);
                    }
                    text
                };
                let mut name = base.clone();
                if let Some(format) = format {
                    name = format!("{name} - {format}");
                }
                if let Some(config) = config {
                    name = format!("{name} - {config}");
                }
                let statements: Vec<String> = case["statements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(substitute))
                    .collect();
                let skip = if case["enabled"] == Value::Bool(false) {
                    Some("the case is disabled in the corpus".to_string())
                } else {
                    needs_schema_registry(&statements, case)
                };
                cases.push(Case {
                    file: file.clone(),
                    name,
                    properties: case["properties"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| {
                            let value = match v {
                                Value::String(s) => substitute(s),
                                other => other.to_string(),
                            };
                            (k.clone(), value)
                        })
                        .collect(),
                    topics: case["topics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| {
                            Some((
                                t["name"].as_str()?.to_string(),
                                t["partitions"].as_i64().unwrap_or(1) as i32,
                            ))
                        })
                        .collect(),
                    inputs: records(&case["inputs"]),
                    outputs: records(&case["outputs"]),
                    expected_error: case
                        .get("expectedException")
                        .or_else(|| case.get("expectedError"))
                        .map(|e| e["message"].as_str().unwrap_or("").to_string()),
                    expected_status: case["expectedError"]["status"]
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok()),
                    responses: case["responses"].as_array().cloned(),
                    pull_in_protobuf: case["testPullWithProtoFormat"].as_bool() == Some(true),
                    post_sources: case["post"]["sources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| {
                            Some((
                                s["name"].as_str()?.to_string(),
                                s["schema"].as_str()?.to_string(),
                            ))
                        })
                        .collect(),
                    topic_blacklist: case["post"]["topics"]["blacklist"]
                        .as_str()
                        .map(str::to_string),
                    statements,
                    skip,
                });
            }
        }
    }
    Ok(cases)
}

fn needs_schema_registry(statements: &[String], case: &Value) -> Option<String> {
    let text = statements.join(" ").to_uppercase();
    for format in ["PROTOBUF_NOSR", "JSON_SR", "PROTOBUF", "AVRO"] {
        if text.contains(&format!("'{format}'")) {
            return Some(format!("needs the {format} format (Schema Registry)"));
        }
    }
    let schemas = case["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t.get("valueSchema").is_some() || t.get("keySchema").is_some());
    schemas.then(|| "needs a Schema Registry schema".to_string())
}

fn records(value: &Value) -> Vec<TestRecord> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| TestRecord {
            topic: r["topic"].as_str().unwrap_or("").to_string(),
            key: r.get("key").cloned().unwrap_or(Value::Null),
            value: r.get("value").cloned().unwrap_or(Value::Null),
            timestamp: r["timestamp"].as_i64(),
            window: r.get("window").cloned(),
            headers: headers(&r["headers"]),
        })
        .collect()
}

fn headers(value: &Value) -> Vec<Header> {
    use base64::Engine;
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| Header {
            key: h["KEY"].as_str().unwrap_or("").to_string(),
            value: h["VALUE"].as_str().map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(bytes::Bytes::from)
                    .unwrap_or_else(|_| bytes::Bytes::copy_from_slice(v.as_bytes()))
            }),
        })
        .collect()
}

fn string_list(value: &Value) -> Vec<Option<String>> {
    match value.as_array() {
        Some(values) => values
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        None => vec![None],
    }
}

/// Removes `//` comments outside JSON strings (a few case files have them).
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
