//! What `/ksql` answers for each statement: ksqlDB's JSON entities (`currentStatus`,
//! `streams`, `tables`, `queries`, `kafka_topics`, `properties`, `sourceDescription`…) and
//! its error entities.

use riffle_grammar::ast::{SourceKind, Statement};
use serde_json::{Value, json};

use crate::catalog::Source;
use crate::engine::StatementResult;
use crate::types::{ColumnKind, SqlType};

/// The entity for one statement's result; `text` is the statement as sent.
pub fn entity(result: &StatementResult, text: &str, sequence: i64) -> Value {
    let statement = riffle_grammar::parse_statement(text).ok();
    match result {
        StatementResult::Done { message, query_id } => json!({
            "@type": "currentStatus",
            "statementText": text,
            "commandId": command_id(statement.as_ref()),
            "commandStatus": {
                "status": "SUCCESS",
                "message": message,
                "queryId": query_id,
            },
            "commandSequenceNumber": sequence,
            "warnings": [],
        }),
        StatementResult::Sources(sources) => {
            let tables = matches!(
                statement,
                Some(Statement::Show(riffle_grammar::ast::Show::Tables { .. }))
            );
            let listed: Vec<Value> = sources
                .iter()
                .map(|s| {
                    json!({
                        "type": kind_name(s.kind),
                        "name": s.name,
                        "topic": s.topic,
                        "keyFormat": s.key_format.format.name(),
                        "valueFormat": s.value_format.format.name(),
                        "isWindowed": false,
                    })
                })
                .collect();
            let key = if tables { "tables" } else { "streams" };
            json!({"@type": key, "statementText": text, key: listed, "warnings": []})
        }
        StatementResult::Queries(queries) => json!({
            "@type": "queries",
            "statementText": text,
            "queries": queries
                .iter()
                .map(|(id, sink_topic)| json!({
                    "queryString": "",
                    "sinks": [],
                    "sinkKafkaTopics": [sink_topic],
                    "id": id,
                    "statusCount": {"RUNNING": 1},
                    "queryType": "PERSISTENT",
                    "state": "RUNNING",
                }))
                .collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Topics(topics) => json!({
            "@type": "kafka_topics",
            "statementText": text,
            "topics": topics
                .iter()
                .map(|(name, partitions)| json!({
                    "name": name,
                    "replicaInfo": vec![1; *partitions],
                }))
                .collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Properties(properties) => json!({
            "@type": "properties",
            "statementText": text,
            "properties": properties
                .iter()
                .map(|(name, value)| json!({"name": name, "scope": "KSQL", "value": value}))
                .collect::<Vec<_>>(),
            "overwrittenProperties": [],
            "defaultProperties": [],
            "warnings": [],
        }),
        StatementResult::Variables(variables) => json!({
            "@type": "variables",
            "statementText": text,
            "variables": variables
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Types(types) => json!({
            "@type": "type_list",
            "statementText": text,
            "types": types
                .iter()
                .map(|(name, ty)| (name.clone(), schema(ty)))
                .collect::<serde_json::Map<_, _>>(),
            "warnings": [],
        }),
        StatementResult::Functions(names) => json!({
            "@type": "function_names",
            "statementText": text,
            "functions": names
                .iter()
                .map(|name| json!({"name": name, "type": "SCALAR", "category": ""}))
                .collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::AssertTopic { topic, exists } => json!({
            "@type": "assert_topic",
            "statementText": text,
            "topicName": topic,
            "exists": exists,
            "warnings": [],
        }),
        StatementResult::Description {
            source,
            read_by,
            written_by,
        } => json!({
            "@type": "sourceDescription",
            "statementText": text,
            "sourceDescription": description(source, read_by, written_by),
            "warnings": [],
        }),
    }
}

fn description(source: &Source, read_by: &[String], written_by: &[String]) -> Value {
    let queries = |ids: &[String]| -> Vec<Value> {
        ids.iter()
            .map(|id| json!({"id": id, "queryString": "", "sinks": [], "state": "RUNNING"}))
            .collect()
    };
    json!({
        "name": source.name,
        "windowType": null,
        "readQueries": queries(read_by),
        "writeQueries": queries(written_by),
        "fields": source.schema.columns.iter().map(|c| {
            let mut field = json!({"name": c.name, "schema": schema(&c.ty)});
            match &c.kind {
                ColumnKind::Key => field["type"] = json!("KEY"),
                ColumnKind::Header(key) => {
                    field["type"] = json!("HEADER");
                    if let Some(key) = key {
                        field["headerKey"] = json!(key);
                    }
                }
                ColumnKind::Value => {}
            }
            field
        }).collect::<Vec<_>>(),
        "type": kind_name(source.kind),
        "timestamp": source.timestamp.clone().unwrap_or_default(),
        "statistics": "",
        "errorStats": "",
        "extended": false,
        "keyFormat": source.key_format.format.name(),
        "valueFormat": source.value_format.format.name(),
        "topic": source.topic,
        "partitions": 0,
        "replication": 0,
        "statement": "",
        "sourceConstraints": [],
    })
}

/// A type as ksqlDB's REST API describes it.
pub fn schema(ty: &SqlType) -> Value {
    let name = match ty {
        SqlType::Boolean => "BOOLEAN",
        SqlType::Integer => "INTEGER",
        SqlType::BigInt => "BIGINT",
        SqlType::Double => "DOUBLE",
        SqlType::Decimal { .. } => "DECIMAL",
        SqlType::String => "STRING",
        SqlType::Bytes => "BYTES",
        SqlType::Date => "DATE",
        SqlType::Time => "TIME",
        SqlType::Timestamp => "TIMESTAMP",
        SqlType::Array(_) => "ARRAY",
        SqlType::Map(..) => "MAP",
        SqlType::Struct(_) => "STRUCT",
    };
    let mut out = json!({"type": name, "fields": null, "memberSchema": null});
    match ty {
        SqlType::Decimal { precision, scale } => {
            out["parameters"] = json!({"precision": precision, "scale": scale});
        }
        SqlType::Array(item) => out["memberSchema"] = schema(item),
        SqlType::Map(_, value) => out["memberSchema"] = schema(value),
        SqlType::Struct(fields) => {
            out["fields"] = fields
                .iter()
                .map(|f| json!({"name": f.name, "schema": schema(&f.ty)}))
                .collect();
        }
        _ => {}
    }
    out
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Stream => "STREAM",
        SourceKind::Table => "TABLE",
    }
}

/// ksqlDB's command id: `stream/`NAME`/create`, `table/`T`/drop`, `terminate/Q/execute`.
fn command_id(statement: Option<&Statement>) -> String {
    let kind = |k: SourceKind| kind_name(k).to_lowercase();
    match statement {
        Some(Statement::CreateSource(c)) => format!("{}/`{}`/create", kind(c.kind), c.name.value),
        Some(Statement::CreateAsSelect(c)) => {
            format!("{}/`{}`/create", kind(c.kind), c.name.value)
        }
        Some(Statement::DropSource(d)) => format!("{}/`{}`/drop", kind(d.kind), d.name.value),
        Some(Statement::InsertInto(i)) => format!("stream/`{}`/create", i.target.value),
        Some(Statement::Terminate(_)) => "terminate/query/execute".into(),
        Some(Statement::CreateType(t)) => format!("type/`{}`/create", t.name.value),
        Some(Statement::DropType(t)) => format!("type/`{}`/drop", t.name.value),
        _ => "statement/execute".into(),
    }
}

/// ksqlDB's error entity: `statement_error` (40001) for statements the user must fix,
/// `generic_error` for bad requests, `server_error` (50000) for failures on our side.
pub fn error(kind: &str, code: u32, message: &str, statement: Option<&str>) -> Value {
    let mut out = json!({"@type": kind, "error_code": code, "message": message});
    if let Some(text) = statement {
        out["statementText"] = json!(text);
        out["entities"] = json!([]);
    }
    out
}
