//! The `WITH (…)` properties of sources, checked as ksqlDB checks them.
//!
//! Entry point: [`SourceProperties::from_ast`].

use riffle_grammar::ast::Properties;
use sqlparser::ast::Value;

/// Every property ksqlDB accepts on `CREATE STREAM|TABLE` and `… AS SELECT`.
const KNOWN: &[&str] = &[
    "KAFKA_TOPIC",
    "KEY_FORMAT",
    "VALUE_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "RETENTION_MS",
    "CLEANUP_POLICY",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "WRAP_SINGLE_VALUE",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "WINDOW_TYPE",
    "WINDOW_SIZE",
    "KEY_SCHEMA_ID",
    "VALUE_SCHEMA_ID",
    "KEY_SCHEMA_FULL_NAME",
    "VALUE_SCHEMA_FULL_NAME",
    "VALUE_AVRO_SCHEMA_FULL_NAME",
    "KEY_PROTOBUF_NULLABLE_REPRESENTATION",
    "VALUE_PROTOBUF_NULLABLE_REPRESENTATION",
    "SOURCE_CONNECTOR",
    "SOURCED_BY_CONNECTOR",
];

/// Source properties, by name (upper case), with their values as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceProperties {
    pub kafka_topic: Option<String>,
    pub key_format: Option<String>,
    pub value_format: Option<String>,
    pub format: Option<String>,
    pub partitions: Option<i32>,
    pub replicas: Option<i32>,
    pub retention_ms: Option<i64>,
    pub timestamp: Option<String>,
    pub timestamp_format: Option<String>,
    pub wrap_single_value: Option<bool>,
    pub value_delimiter: Option<String>,
    pub key_delimiter: Option<String>,
    pub window_type: Option<String>,
    pub window_size: Option<String>,
    /// `KEY_SCHEMA_FULL_NAME`: the key schema's name, for schema formats.
    pub key_schema_full_name: Option<String>,
    /// `VALUE_SCHEMA_FULL_NAME` (or the older `VALUE_AVRO_SCHEMA_FULL_NAME`).
    pub value_schema_full_name: Option<String>,
}

impl SourceProperties {
    /// Reads and checks a `WITH (…)` list.
    pub fn from_ast(properties: &Properties) -> Result<SourceProperties, String> {
        let unknown: Vec<String> = properties
            .0
            .iter()
            .map(|p| p.name.value.to_uppercase())
            .filter(|name| !KNOWN.contains(&name.as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "Invalid config variable(s) in the WITH clause: {}",
                unknown.join(",")
            ));
        }
        let text = |name: &str| properties.get(name).map(literal_text);
        let int = |name: &str| -> Result<Option<i64>, String> {
            text(name)
                .map(|v| {
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("Invalid value for {name}: '{v}' is not a number"))
                })
                .transpose()
        };
        let parsed = SourceProperties {
            kafka_topic: text("KAFKA_TOPIC"),
            key_format: text("KEY_FORMAT"),
            value_format: text("VALUE_FORMAT"),
            format: text("FORMAT"),
            partitions: int("PARTITIONS")?.map(|p| p as i32),
            replicas: int("REPLICAS")?.map(|r| r as i32),
            retention_ms: int("RETENTION_MS")?,
            timestamp: text("TIMESTAMP"),
            timestamp_format: text("TIMESTAMP_FORMAT"),
            wrap_single_value: text("WRAP_SINGLE_VALUE")
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(format!(
                        "Invalid value for WRAP_SINGLE_VALUE: '{v}' is not a boolean"
                    )),
                })
                .transpose()?,
            value_delimiter: text("VALUE_DELIMITER"),
            key_delimiter: text("KEY_DELIMITER"),
            window_type: text("WINDOW_TYPE"),
            window_size: text("WINDOW_SIZE"),
            key_schema_full_name: text("KEY_SCHEMA_FULL_NAME"),
            value_schema_full_name: text("VALUE_SCHEMA_FULL_NAME")
                .or_else(|| text("VALUE_AVRO_SCHEMA_FULL_NAME")),
        };
        if parsed.format.is_some() {
            for (set, name) in [
                (parsed.key_format.is_some(), "KEY_FORMAT"),
                (parsed.value_format.is_some(), "VALUE_FORMAT"),
            ] {
                if set {
                    return Err(format!(
                        "Cannot supply both '{name}' and 'FORMAT' properties, as 'FORMAT' sets \
                         both key and value formats. Either use just 'FORMAT', or use \
                         'KEY_FORMAT' and 'VALUE_FORMAT'."
                    ));
                }
            }
        }
        if let Some(partitions) = parsed.partitions
            && partitions < 1
        {
            return Err(format!("Invalid number of partitions: {partitions}"));
        }
        Ok(parsed)
    }

    pub fn key_format_name(&self) -> Option<&str> {
        self.key_format.as_deref().or(self.format.as_deref())
    }

    pub fn value_format_name(&self) -> Option<&str> {
        self.value_format.as_deref().or(self.format.as_deref())
    }
}

/// A literal's text: strings without quotes, numbers and booleans as written.
pub fn literal_text(value: &Value) -> String {
    match value {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
        Value::Number(n, _) => n.clone(),
        Value::Boolean(b) => b.to_string(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}
