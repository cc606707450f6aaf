//! How the shell shows what the server answers: ksqlDB's entities as aligned text tables
//! (the `TABULAR` output), query rows as table lines as they arrive.

use serde_json::Value;

/// A text table: a header row, a rule, the rows, a closing rule. Columns are as wide as
/// their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!(" {cell:<width$} "))
            .collect();
        padded.join("|").trim_end().to_string() + "\n"
    };
    let total: usize = widths
        .iter()
        .map(|w| w + 3)
        .sum::<usize>()
        .saturating_sub(1);
    let rule = "-".repeat(total) + "\n";
    let mut out = line(&mut headers.iter().copied());
    out.push_str(&rule);
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out.push_str(&rule);
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list<'a>(entity: &'a Value, key: &str) -> &'a [Value] {
    entity[key].as_array().map_or(&[], Vec::as_slice)
}

/// A type as ksqlDB's `DESCRIBE` shows it (`VARCHAR(STRING)`, `ARRAY<INTEGER>`).
fn schema_text(schema: &Value) -> String {
    match schema["type"].as_str().unwrap_or("?") {
        "STRING" => "VARCHAR(STRING)".to_string(),
        "ARRAY" => format!("ARRAY<{}>", schema_text(&schema["memberSchema"])),
        "MAP" => format!("MAP<STRING, {}>", schema_text(&schema["memberSchema"])),
        "STRUCT" => format!(
            "STRUCT<{}>",
            list(schema, "fields")
                .iter()
                .map(|f| format!("{} {}", text(&f["name"]), schema_text(&f["schema"])))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "DECIMAL" => format!(
            "DECIMAL({}, {})",
            schema["parameters"]["precision"], schema["parameters"]["scale"]
        ),
        other => other.to_string(),
    }
}

fn fields_table(fields: &[Value]) -> String {
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| {
            let suffix = match f["type"].as_str() {
                Some("KEY") => "  (key)".to_string(),
                Some("HEADER") => match f["headerKey"].as_str() {
                    Some(key) => format!("  (header('{key}'))"),
                    None => "  (headers)".to_string(),
                },
                _ => String::new(),
            };
            vec![text(&f["name"]), schema_text(&f["schema"]) + &suffix]
        })
        .collect();
    table(&["Field", "Type"], &rows)
}

fn source_description(d: &Value) -> String {
    let mut out = format!("\nName                 : {}\n", text(&d["name"]));
    if d["extended"] == Value::Bool(true) {
        out.push_str(&format!(
            "Type                 : {}\nTimestamp field      : {}\nKey format           : {}\n\
             Value format         : {}\nKafka topic          : {} (partitions: {}, replication: {})\n\
             Statement            : {}\n",
            text(&d["type"]),
            match text(&d["timestamp"]) {
                t if t.is_empty() => "Not set - using <ROWTIME>".to_string(),
                t => t,
            },
            text(&d["keyFormat"]),
            text(&d["valueFormat"]),
            text(&d["topic"]),
            d["partitions"],
            d["replication"],
            text(&d["statement"]),
        ));
    }
    out.push_str(&fields_table(list(d, "fields")));
    if d["extended"] == Value::Bool(true) {
        for (title, key) in [
            ("Queries that read from this", "readQueries"),
            ("Queries that write from this", "writeQueries"),
        ] {
            out.push_str(&format!("\n{title} {}:\n", text(&d["type"])));
            for query in list(d, key) {
                out.push_str(&format!(
                    "{} ({}) : {}\n",
                    text(&query["id"]),
                    text(&query["state"]),
                    text(&query["queryString"])
                ));
            }
        }
        out.push_str(&format!(
            "\nLocal runtime statistics\n------------------------\n{}\n",
            text(&d["statistics"])
        ));
    } else {
        out.push_str(
            "For runtime statistics and query details run: DESCRIBE <Stream,Table> EXTENDED;\n",
        );
    }
    out
}

/// One `/ksql` entity in the `TABULAR` output.
pub fn entity(entity: &Value) -> String {
    let rows = |key: &str, columns: &[&str]| -> Vec<Vec<String>> {
        list(entity, key)
            .iter()
            .map(|item| columns.iter().map(|c| text(&item[*c])).collect())
            .collect()
    };
    match entity["@type"].as_str().unwrap_or("") {
        "currentStatus" => table(
            &["Message"],
            &[vec![text(&entity["commandStatus"]["message"])]],
        ),
        "streams" => table(
            &[
                "Stream Name",
                "Kafka Topic",
                "Key Format",
                "Value Format",
                "Windowed",
            ],
            &rows(
                "streams",
                &["name", "topic", "keyFormat", "valueFormat", "isWindowed"],
            ),
        ),
        "tables" => table(
            &[
                "Table Name",
                "Kafka Topic",
                "Key Format",
                "Value Format",
                "Windowed",
            ],
            &rows(
                "tables",
                &["name", "topic", "keyFormat", "valueFormat", "isWindowed"],
            ),
        ),
        "queries" => {
            let rows: Vec<Vec<String>> = list(entity, "queries")
                .iter()
                .map(|q| {
                    vec![
                        text(&q["id"]),
                        text(&q["queryType"]),
                        text(&q["state"]),
                        list(q, "sinks")
                            .iter()
                            .map(text)
                            .collect::<Vec<_>>()
                            .join(","),
                        list(q, "sinkKafkaTopics")
                            .iter()
                            .map(text)
                            .collect::<Vec<_>>()
                            .join(","),
                        text(&q["queryString"]),
                    ]
                })
                .collect();
            table(
                &[
                    "Query ID",
                    "Query Type",
                    "Status",
                    "Sink Name",
                    "Sink Kafka Topic",
                    "Query String",
                ],
                &rows,
            )
        }
        "kafka_topics" => {
            let rows: Vec<Vec<String>> = list(entity, "topics")
                .iter()
                .map(|t| {
                    let replicas = list(t, "replicaInfo");
                    vec![
                        text(&t["name"]),
                        replicas.len().to_string(),
                        replicas.iter().map(text).collect::<Vec<_>>().join(" "),
                    ]
                })
                .collect();
            table(&["Kafka Topic", "Partitions", "Partition Replicas"], &rows)
        }
        "properties" => table(
            &["Property", "Value"],
            &rows("properties", &["name", "value"]),
        ),
        "variables" => table(
            &["Variable Name", "Value"],
            &rows("variables", &["name", "value"]),
        ),
        "function_names" => table(
            &["Function Name", "Type"],
            &rows("functions", &["name", "type"]),
        ),
        "type_list" => {
            let rows: Vec<Vec<String>> = entity["types"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, schema)| vec![name.clone(), schema_text(schema)])
                .collect();
            table(&["Type Name", "Schema"], &rows)
        }
        "sourceDescription" => source_description(&entity["sourceDescription"]),
        "source_descriptions" => list(entity, "sourceDescriptions")
            .iter()
            .map(source_description)
            .collect(),
        "queryDescription" => {
            let q = &entity["queryDescription"];
            format!(
                "\nID                   : {}\nQuery Type           : {}\nSQL                  : {}\n\
                 Status               : {}\n\n{}\nSources that this query reads from: {}\n\
                 Sinks that this query writes to: {}\n\nExecution plan\n--------------\n{}\n",
                text(&q["id"]),
                text(&q["queryType"]),
                text(&q["statementText"]),
                text(&q["state"]),
                fields_table(list(q, "fields")),
                list(q, "sources")
                    .iter()
                    .map(text)
                    .collect::<Vec<_>>()
                    .join(", "),
                list(q, "sinks")
                    .iter()
                    .map(text)
                    .collect::<Vec<_>>()
                    .join(", "),
                text(&q["executionPlan"]),
            )
        }
        "describe_function" => {
            let mut out = format!(
                "\nName        : {}\nOverview    : {}\nType        : {}\n",
                text(&entity["name"]),
                text(&entity["description"]),
                text(&entity["type"])
            );
            for variant in list(entity, "functions") {
                out.push_str(&format!(
                    "\n\tVariation   : {}({})\n\tReturns     : {}\n",
                    text(&entity["name"]),
                    list(variant, "argumentTypes")
                        .iter()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join(", "),
                    text(&variant["returnType"])
                ));
            }
            out
        }
        "assert_topic" => table(
            &["Message"],
            &[vec![format!(
                "Topic {} {}",
                text(&entity["topicName"]),
                if entity["exists"] == Value::Bool(true) {
                    "exists"
                } else {
                    "does not exist"
                }
            )]],
        ),
        _ => serde_json::to_string_pretty(entity).unwrap_or_default() + "\n",
    }
}

/// The column names of a `/query` header schema such as
/// ``"`ID` STRING, `S` STRUCT<`A` INTEGER>"``: the back-quoted names at the top level.
pub fn column_names(schema: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut chars = schema.chars().peekable();
    let mut expecting_name = true;
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                let mut name = String::new();
                for n in chars.by_ref() {
                    if n == '`' {
                        break;
                    }
                    name.push(n);
                }
                if depth == 0 && expecting_name {
                    names.push(name);
                    expecting_name = false;
                }
            }
            '<' | '(' => depth += 1,
            '>' | ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => expecting_name = true,
            _ => {}
        }
    }
    names
}

/// Query rows drawn as a table whose columns keep the widths set by the header.
#[derive(Debug)]
pub struct RowTable {
    widths: Vec<usize>,
}

impl RowTable {
    pub fn new(names: &[String]) -> RowTable {
        RowTable {
            widths: names.iter().map(|n| n.chars().count().max(12)).collect(),
        }
    }

    pub fn rule(&self) -> String {
        let mut out = String::from("+");
        for width in &self.widths {
            out.push_str(&"-".repeat(width + 2));
            out.push('+');
        }
        out.push('\n');
        out
    }

    pub fn row(&self, cells: &[String]) -> String {
        let mut out = String::from("|");
        for (cell, width) in cells.iter().zip(&self.widths) {
            out.push_str(&format!(" {cell:<width$} |"));
        }
        out.push('\n');
        out
    }

    pub fn header(&self, names: &[String]) -> String {
        format!("{}{}{}", self.rule(), self.row(names), self.rule())
    }
}

/// A row's values as cells: strings bare, `null` as `null`, the rest as JSON.
pub fn cells(columns: &[Value]) -> Vec<String> {
    columns
        .iter()
        .map(|v| match v {
            Value::Null => "null".to_string(),
            other => text(other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_their_columns() {
        let out = table(
            &["Stream Name", "Kafka Topic"],
            &[vec!["CLICKS".into(), "clicks".into()]],
        );
        assert_eq!(
            out,
            " Stream Name | Kafka Topic\n---------------------------\n CLICKS      | clicks\n---------------------------\n"
        );
    }

    #[test]
    fn header_schemas_give_their_top_level_names() {
        assert_eq!(
            column_names(
                "`ID` STRING, `S` STRUCT<`A` INTEGER, `B` MAP<STRING, INTEGER>>, `D` DECIMAL(4, 2)"
            ),
            ["ID", "S", "D"]
        );
    }

    #[test]
    fn status_entities_show_their_message() {
        let out = entity(
            &json!({"@type": "currentStatus", "commandStatus": {"message": "Stream created"}}),
        );
        assert!(out.contains(" Stream created"), "{out}");
    }
}
