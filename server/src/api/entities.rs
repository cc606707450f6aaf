//! What `/ksql` answers for each statement: ksqlDB's JSON entities (`currentStatus`,
//! `streams`, `tables`, `queries`, `kafka_topics`, `properties`, `sourceDescription`…) and
//! its error entities.

use riffle_grammar::ast::{QueryTarget, SourceKind, Statement};
use serde_json::{Value, json};

use crate::engine::{QueryDescription, QueryInfo, SourceDescription, StatementResult};
use crate::plan::FunctionDescription;
use crate::types::{ColumnKind, LogicalSchema, SqlType};

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
            "queries": queries.iter().map(running_query).collect::<Vec<_>>(),
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
                .map(|(name, ty)| (name.clone(), schema_of(ty)))
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
        StatementResult::Description(description) => json!({
            "@type": "sourceDescription",
            "statementText": text,
            "sourceDescription": source_description(description),
            "warnings": [],
        }),
        StatementResult::Descriptions(descriptions) => json!({
            "@type": "source_descriptions",
            "statementText": text,
            "sourceDescriptions": descriptions.iter().map(source_description).collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Explanation(query) => json!({
            "@type": "queryDescription",
            "statementText": text,
            "queryDescription": query_description(query),
            "warnings": [],
        }),
        StatementResult::Function(function) => function_description(function, text),
    }
}

/// A persistent query in `SHOW QUERIES` and in a source's read and write queries.
fn running_query(query: &QueryInfo) -> Value {
    json!({
        "queryString": query.statement,
        "sinks": [query.sink],
        "sinkKafkaTopics": query.sink_topic.iter().collect::<Vec<_>>(),
        "id": query.id,
        "statusCount": {query.state.name(): 1},
        "queryType": "PERSISTENT",
        "state": query.state.name(),
    })
}

fn source_description(description: &SourceDescription) -> Value {
    let source = &description.source;
    let (partitions, statistics) = match &description.extended {
        Some(figures) => (
            figures.partitions,
            format!("total-messages: {}", figures.messages),
        ),
        None => (0, String::new()),
    };
    json!({
        "name": source.name,
        "windowType": null,
        "readQueries": description.read_by.iter().map(running_query).collect::<Vec<_>>(),
        "writeQueries": description.written_by.iter().map(running_query).collect::<Vec<_>>(),
        "fields": fields(&source.schema),
        "type": kind_name(source.kind),
        "timestamp": source.timestamp.clone().unwrap_or_default(),
        "statistics": statistics,
        "errorStats": "",
        "extended": description.extended.is_some(),
        "keyFormat": source.key_format.format.name(),
        "valueFormat": source.value_format.format.name(),
        "topic": source.topic,
        "partitions": partitions,
        "replication": usize::from(description.extended.is_some()),
        "statement": source.statement,
        "queryOffsetSummaries": [],
        "sourceConstraints": [],
        "clusterStatistics": [],
        "clusterErrorStats": [],
    })
}

fn query_description(query: &QueryDescription) -> Value {
    json!({
        "id": query.id,
        "statementText": query.statement,
        "windowType": null,
        "fields": fields(&query.fields),
        "sources": query.sources,
        "sinks": query.sinks,
        "sinkKafkaTopics": query.sink_topics,
        "topology": "",
        "executionPlan": query.execution_plan,
        "overriddenProperties": {},
        "ksqlHostQueryStatus": query.state.map_or_else(
            || json!({}),
            |state| json!({"127.0.0.1:8088": state.name()}),
        ),
        "queryType": if query.persistent { "PERSISTENT" } else { "PUSH" },
        "queryErrors": [],
        "tasksMetadata": [],
        "consumerGroupId": query.id,
        "state": query.state.map(|s| s.name()),
    })
}

fn function_description(function: &FunctionDescription, text: &str) -> Value {
    json!({
        "@type": "describe_function",
        "statementText": text,
        "name": function.name,
        "description": function.description,
        "author": "",
        "version": "",
        "path": "internal",
        "functions": function.variants.iter().map(|variant| json!({
            "arguments": variant.arguments.iter().enumerate().map(|(i, ty)| json!({
                "name": variant.argument_names.get(i).map_or("", String::as_str),
                "type": ty,
                "description": "",
                "isVariadic": variant.variadic && i + 1 == variant.arguments.len(),
            })).collect::<Vec<_>>(),
            "returnType": variant.return_type,
            "description": function.description,
            "argumentTypes": variant.arguments,
        })).collect::<Vec<_>>(),
        "type": function.kind,
        "warnings": [],
    })
}

/// Columns as `DESCRIBE` and `EXPLAIN` list them: `type` is `KEY` or `HEADER` (with its
/// `headerKey`), absent for value columns.
fn fields(schema: &LogicalSchema) -> Vec<Value> {
    schema
        .columns
        .iter()
        .map(|c| {
            let mut field = json!({"name": c.name, "schema": schema_of(&c.ty)});
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
        })
        .collect()
}

/// A type as ksqlDB's REST API describes it.
pub fn schema_of(ty: &SqlType) -> Value {
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
        SqlType::Array(item) => out["memberSchema"] = schema_of(item),
        SqlType::Map(_, value) => out["memberSchema"] = schema_of(value),
        SqlType::Struct(fields) => {
            out["fields"] = fields
                .iter()
                .map(|f| json!({"name": f.name, "schema": schema_of(&f.ty)}))
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
        Some(Statement::Terminate(target)) => format!("terminate/{}/execute", target_name(target)),
        Some(Statement::Pause(target)) => format!("pause/{}/execute", target_name(target)),
        Some(Statement::Resume(target)) => format!("resume/{}/execute", target_name(target)),
        Some(Statement::CreateType(t)) => format!("type/`{}`/create", t.name.value),
        Some(Statement::DropType(t)) => format!("type/`{}`/drop", t.name.value),
        _ => "statement/execute".into(),
    }
}

fn target_name(target: &QueryTarget) -> &str {
    match target {
        QueryTarget::All => "ALL_QUERIES",
        QueryTarget::Query(id) => &id.value,
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
