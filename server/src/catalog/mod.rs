//! The catalog: streams, tables and types, as declared by statements.
//!
//! [`Catalog::declare_source`] checks a `CREATE STREAM|TABLE` the way ksqlDB does (keys,
//! reserved names, formats, properties) and returns the [`Source`] to register. Persistence
//! of accepted statements (the command topic) comes with the engine.

pub mod properties;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use riffle_grammar::ast::{ColumnConstraint, CreateSource, SourceKind};

use crate::format::{Format, FormatSpec};
use crate::plan::PlanError;
use crate::types::{Column, ColumnKind, LogicalSchema, SqlType, StructField};
use properties::SourceProperties;

/// Pseudo columns every source offers to queries, after its own columns.
pub const PSEUDO_COLUMNS: [(&str, SqlType); 3] = [
    ("ROWTIME", SqlType::BigInt),
    ("ROWPARTITION", SqlType::Integer),
    ("ROWOFFSET", SqlType::BigInt),
];

/// Names no column may take.
pub const RESERVED_COLUMNS: [&str; 5] = [
    "ROWTIME",
    "ROWPARTITION",
    "ROWOFFSET",
    "WINDOWSTART",
    "WINDOWEND",
];

/// A stream or table.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub schema: LogicalSchema,
    pub topic: String,
    pub key_format: FormatSpec,
    pub value_format: FormatSpec,
    /// The column whose value is the record time (`TIMESTAMP` property).
    pub timestamp: Option<String>,
    pub timestamp_format: Option<String>,
    /// `CREATE SOURCE …`: read-only.
    pub is_source: bool,
    /// Made by `CREATE … AS SELECT`: its schema is the query's, so it cannot be altered.
    pub created_by_query: bool,
    /// Partitions to create the topic with, when the statement asked for its creation.
    pub partitions: Option<i32>,
    /// The statement that declared it, as sent (`DESCRIBE … EXTENDED`).
    pub statement: String,
    /// How its keys are windowed (a windowed aggregation's table), if they are.
    pub window: Option<crate::plan::aggregate::WindowKind>,
    /// The key format its statement named (`KEY_FORMAT` or `FORMAT`), kept for a source
    /// without key columns (whose `key_format` is `NONE`): keys a query gives its rows
    /// take it.
    pub declared_key_format: Option<Format>,
}

impl Source {
    pub fn key_columns(&self) -> Vec<(String, SqlType)> {
        self.schema
            .keys()
            .map(|c| (c.name.clone(), c.ty.clone()))
            .collect()
    }

    pub fn value_columns(&self) -> Vec<(String, SqlType)> {
        self.schema
            .values()
            .map(|c| (c.name.clone(), c.ty.clone()))
            .collect()
    }

    /// The header columns: `HEADERS` (key `None`) or `HEADER('key')`.
    pub fn header_columns(&self) -> Vec<(String, Option<String>)> {
        self.schema
            .columns
            .iter()
            .filter_map(|c| match &c.kind {
                ColumnKind::Header(key) => Some((c.name.clone(), key.clone())),
                _ => None,
            })
            .collect()
    }

    /// The Arrow schema queries read: keys, values, headers, then the pseudo columns.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .schema
            .keys()
            .chain(self.schema.values())
            .chain(self.schema.headers())
            .map(|c| Field::new(&c.name, c.ty.to_arrow(), true))
            .chain(
                PSEUDO_COLUMNS
                    .iter()
                    .map(|(name, ty)| Field::new(*name, ty.to_arrow(), true)),
            )
            .chain(
                self.window
                    .iter()
                    .flat_map(|_| crate::plan::aggregate::WINDOW_BOUNDS)
                    .map(|name| Field::new(name, arrow::datatypes::DataType::Int64, true)),
            )
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// Settings that statements inherit (from server and request properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatDefaults {
    /// `ksql.persistence.default.format.key` (KAFKA when unset).
    pub key_format: Option<String>,
    /// `ksql.persistence.default.format.value`.
    pub value_format: Option<String>,
    /// `ksql.persistence.wrap.single.values`.
    pub wrap_single_values: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    sources: BTreeMap<String, Source>,
    types: BTreeMap<String, SqlType>,
}

impl Catalog {
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }

    pub fn insert_source(&mut self, source: Source) {
        self.sources.insert(source.name.clone(), source);
    }

    pub fn remove_source(&mut self, name: &str) -> Option<Source> {
        self.sources.remove(name)
    }

    pub fn resolve_type(&self, name: &str) -> Option<SqlType> {
        self.types.get(name).cloned()
    }

    pub fn types(&self) -> &BTreeMap<String, SqlType> {
        &self.types
    }

    pub fn insert_type(&mut self, name: String, ty: SqlType) {
        self.types.insert(name, ty);
    }

    pub fn remove_type(&mut self, name: &str) -> Option<SqlType> {
        self.types.remove(name)
    }

    /// Checks a `CREATE STREAM|TABLE` with columns and returns the source it declares.
    pub fn declare_source(
        &self,
        create: &CreateSource,
        defaults: &FormatDefaults,
    ) -> Result<Source, String> {
        let name = create.name.value.clone();
        let noun = match create.kind {
            SourceKind::Stream => "stream",
            SourceKind::Table => "table",
        };
        if create.or_replace && create.is_source {
            return Err(format!(
                "Cannot add {noun} '{name}': CREATE OR REPLACE is not supported on source {noun}s."
            ));
        }
        let properties = SourceProperties::from_ast(&create.properties)?;
        if let Some(name) = properties.key_format_name() {
            Format::parse(name)?;
        }
        if let Some(name) = properties.value_format_name() {
            Format::parse(name)?;
        }
        check_format_properties(&properties, defaults)?;
        if create.columns.is_empty() {
            return Err(
                "The statement does not define any columns. Riffle cannot infer columns: it \
                 has no Schema Registry formats yet."
                    .into(),
            );
        }
        for column in &create.columns {
            let upper = column.name.value.to_uppercase();
            if RESERVED_COLUMNS.contains(&upper.as_str()) && column.name.value == upper {
                return Err(format!(
                    "'{}' is a reserved column name. You cannot use it as a name for a column.",
                    column.name.value
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for column in &create.columns {
            if !seen.insert(&column.name.value) {
                return Err(format!("Duplicate column names: {}", column.name.value));
            }
        }
        let schema =
            LogicalSchema::from_column_defs(&create.columns, &|alias| self.resolve_type(alias))
                .map_err(|e| e.0)?;
        if create.kind == SourceKind::Table && schema.keys().next().is_none() {
            return Err("Tables require a PRIMARY KEY. Please define the PRIMARY KEY.".into());
        }
        if let Some(key) = schema.keys().find(|c| contains_map(&c.ty)) {
            return Err(map_key_error(key));
        }
        for column in &schema.columns {
            match &column.kind {
                ColumnKind::Header(None) if column.ty != headers_type() => {
                    return Err(format!(
                        "Invalid type for HEADERS column: expected {}, got {}",
                        headers_type(),
                        column.ty
                    ));
                }
                ColumnKind::Header(Some(key)) if column.ty != SqlType::Bytes => {
                    return Err(format!(
                        "Invalid type for HEADER('{key}') column: expected BYTES, got {}",
                        column.ty
                    ));
                }
                _ => {}
            }
        }
        let window = source_window(&properties)?;
        if window.is_some() && schema.keys().next().is_none() {
            return Err("Windowed sources require a key column.".into());
        }
        let topic = properties.kafka_topic.clone().ok_or_else(|| {
            "Missing required property \"KAFKA_TOPIC\" which has no default value.".to_string()
        })?;
        let key_spec = key_format_spec(&properties, defaults, &schema)?;
        let value_spec = value_format_spec(&properties, defaults, &schema)?;
        if let Some(column) = &properties.timestamp {
            let column = column.to_uppercase();
            if schema.column(&column).is_none() {
                return Err(format!(
                    "The TIMESTAMP column set in the WITH clause does not exist in the schema: \
                     '{column}'"
                ));
            }
        }
        let declared_key_format = properties
            .key_format_name()
            .and_then(|name| Format::parse(name).ok());
        Ok(Source {
            name,
            kind: create.kind,
            schema,
            topic,
            key_format: key_spec,
            value_format: value_spec,
            timestamp: properties.timestamp.map(|t| t.to_uppercase()),
            timestamp_format: properties.timestamp_format,
            is_source: create.is_source,
            created_by_query: false,
            partitions: properties.partitions,
            statement: create.to_string(),
            window,
            declared_key_format,
        })
    }
}

/// `WINDOW_TYPE` and `WINDOW_SIZE`: a source over the output of a windowed aggregation.
fn source_window(
    properties: &SourceProperties,
) -> Result<Option<crate::plan::aggregate::WindowKind>, String> {
    use crate::plan::aggregate::WindowKind;
    let Some(kind) = &properties.window_type else {
        return Ok(None);
    };
    let size = properties
        .window_size
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    match (kind.to_uppercase().as_str(), size) {
        ("SESSION", None) => Ok(Some(WindowKind::Session { gap: 0 })),
        ("SESSION", Some(_)) => {
            Err("'WINDOW_SIZE' should not be set for SESSION windows.".to_string())
        }
        ("TUMBLING", Some(size)) => Ok(Some(WindowKind::Tumbling { size })),
        ("HOPPING", Some(size)) => Ok(Some(WindowKind::Hopping {
            size,
            advance: size,
        })),
        ("TUMBLING" | "HOPPING", None) => Err(format!(
            "{} windows require 'WINDOW_SIZE' to be provided in the WITH clause. For example: \
             'WINDOW_SIZE'='10 SECONDS'",
            kind.to_uppercase()
        )),
        (other, _) => Err(format!(
            "Unknown window type: '{other}'. Valid values are: SESSION, HOPPING, TUMBLING"
        )),
    }
}

/// Refuses `PRIMARY KEY` columns in streams and `KEY` columns in tables, pointing at the
/// column.
pub fn check_key_constraints(create: &CreateSource) -> Result<(), PlanError> {
    for column in &create.columns {
        let (wrong, right, noun) = match (create.kind, &column.constraint) {
            (SourceKind::Stream, Some(ColumnConstraint::PrimaryKey)) => {
                ("PRIMARY KEY", "KEY", "streams")
            }
            (SourceKind::Table, Some(ColumnConstraint::Key)) => ("KEY", "PRIMARY KEY", "tables"),
            _ => continue,
        };
        return Err(PlanError::at(
            &column.name,
            format!(
                "Column `{}` is a '{wrong}' column: please use '{right}' for {noun}.\n\
                 Tables have PRIMARY KEYs, which are unique and NON NULL.\n\
                 Streams have KEYs, which have no uniqueness or NON NULL constraints.",
                column.name.value
            ),
        ));
    }
    Ok(())
}

/// A duration such as `30 SECONDS`, in milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("Invalid duration: '{text}'. e.g. '10 SECONDS'");
    let mut words = text.split_whitespace();
    let (Some(count), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(invalid());
    };
    let count: i64 = count.parse().map_err(|_| invalid())?;
    let unit = unit.to_uppercase();
    let millis = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return Err(invalid()),
    };
    count.checked_mul(millis).ok_or_else(invalid)
}

/// The type of a `HEADERS` column: `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`.
pub fn headers_type() -> SqlType {
    SqlType::Array(Box::new(SqlType::Struct(vec![
        StructField {
            name: "KEY".into(),
            ty: SqlType::String,
        },
        StructField {
            name: "VALUE".into(),
            ty: SqlType::Bytes,
        },
    ])))
}

pub(crate) fn contains_map(ty: &SqlType) -> bool {
    match ty {
        SqlType::Map(..) => true,
        SqlType::Array(item) => contains_map(item),
        SqlType::Struct(fields) => fields.iter().any(|f| contains_map(&f.ty)),
        _ => false,
    }
}

pub(crate) fn map_key_error(column: &Column) -> String {
    format!(
        "Map keys, including types that contain maps, are not supported as they may lead to \
         unexpected behavior due to inconsistent serialization. Key column name: `{}`. Column \
         type: {}. See https://github.com/confluentinc/ksql/issues/6621 for more.",
        column.name, column.ty
    )
}

fn key_format_spec(
    properties: &SourceProperties,
    defaults: &FormatDefaults,
    schema: &LogicalSchema,
) -> Result<FormatSpec, String> {
    let name = properties
        .key_format_name()
        .or(defaults.key_format.as_deref())
        .unwrap_or("KAFKA");
    let mut format = Format::parse(name)?;
    let columns: Vec<(String, SqlType)> = schema
        .keys()
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect();
    if columns.is_empty() {
        // A source without key columns reads no key, whatever the key format says.
        format = Format::None;
    }
    format
        .check_key_columns(&columns)
        .map_err(|reason| unsupported_schema("Key", format, schema.keys(), &reason))?;
    let mut spec = FormatSpec::new(format).with_wrap_single(false);
    if let Some(delimiter) = &properties.key_delimiter {
        spec = spec.with_delimiter(delimiter_of(delimiter, "KEY_DELIMITER")?);
    }
    Ok(spec)
}

fn value_format_spec(
    properties: &SourceProperties,
    defaults: &FormatDefaults,
    schema: &LogicalSchema,
) -> Result<FormatSpec, String> {
    let name = properties
        .value_format_name()
        .or(defaults.value_format.as_deref())
        .ok_or_else(|| {
            "Statement is missing the 'VALUE_FORMAT' property from the WITH clause. Either \
             provide one or set a default via the 'ksql.persistence.default.format.value' config."
                .to_string()
        })?;
    let format = Format::parse(name)?;
    let columns: Vec<(String, SqlType)> = schema
        .values()
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect();
    format
        .check_columns(&columns)
        .map_err(|reason| unsupported_schema("Value", format, schema.values(), &reason))?;
    if properties.wrap_single_value.is_some() && columns.len() != 1 {
        return Err("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas".into());
    }
    let wrap = match format {
        Format::Kafka | Format::Delimited => false,
        _ => properties
            .wrap_single_value
            .or(defaults.wrap_single_values)
            .unwrap_or(true),
    };
    let mut spec = FormatSpec::new(format).with_wrap_single(wrap);
    if let Some(delimiter) = &properties.value_delimiter {
        spec = spec.with_delimiter(delimiter_of(delimiter, "VALUE_DELIMITER")?);
    }
    Ok(spec)
}

/// Properties a format does not take (a delimiter for JSON, wrapping for DELIMITED) and
/// malformed delimiters, refused before anything else is looked at.
pub fn check_format_properties(
    properties: &SourceProperties,
    defaults: &FormatDefaults,
) -> Result<(), String> {
    let value_format = properties
        .value_format_name()
        .or(defaults.value_format.as_deref())
        .map(Format::parse)
        .transpose()?;
    if let Some(delimiter) = &properties.value_delimiter {
        if let Some(format) = value_format.filter(|f| *f != Format::Delimited) {
            return Err(format!(
                "{format} does not support the following configs: [delimiter]"
            ));
        }
        delimiter_of(delimiter, "VALUE_DELIMITER")?;
    }
    if let Some(delimiter) = &properties.key_delimiter {
        delimiter_of(delimiter, "KEY_DELIMITER")?;
    }
    // A schema name is for the Schema Registry's formats; none of Riffle's has a schema.
    let key_format = properties
        .key_format_name()
        .or(defaults.key_format.as_deref())
        .map(Format::parse)
        .transpose()?
        .or(Some(Format::Kafka));
    for (named, format) in [
        (&properties.key_schema_full_name, key_format),
        (&properties.value_schema_full_name, value_format),
    ] {
        if let (Some(_), Some(format)) = (named, format) {
            return Err(format!(
                "{format} does not support the following configs: [fullSchemaName]"
            ));
        }
    }
    if let (Some(Format::Delimited), Some(true)) = (value_format, properties.wrap_single_value) {
        return Err(
            "Format 'DELIMITED' does not support 'WRAP_SINGLE_VALUE' set to 'true'.".into(),
        );
    }
    Ok(())
}

/// ksqlDB's error when a format cannot carry a side's columns.
pub fn unsupported_schema<'a>(
    side: &str,
    format: Format,
    columns: impl Iterator<Item = &'a Column>,
    reason: &str,
) -> String {
    let suffix = if side == "Key" { " KEY" } else { "" };
    let rendered: Vec<String> = columns
        .map(|c| format!("`{}` {}{suffix}", c.name, c.ty))
        .collect();
    format!(
        "{side} format does not support schema.\nformat: {format}\nschema: \
         Persistence{{columns=[{}], features=[]}}\nreason: {reason}",
        rendered.join(", ")
    )
}

pub fn delimiter_of(text: &str, property: &str) -> Result<char, String> {
    if text.trim().is_empty() {
        return Err(format!(
            "Failed to prepare statement: Configuration {property} is invalid: Delimiter cannot \
             be empty, if you meant to have a tab or space for delimiter, please use the \
             special values 'TAB' or 'SPACE'\nExample valid value: ';'"
        ));
    }
    FormatSpec::parse_delimiter(text).map_err(|_| {
        format!(
            "Failed to prepare statement: Configuration {property} is invalid: Invalid \
             delimiter value: '{text}'. Delimiter must be a single character or TAB,SPACE\n\
             Example valid value: ';'"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_grammar::{Statement, parse_statement};

    fn declare(sql: &str) -> Result<Source, String> {
        let Statement::CreateSource(create) = parse_statement(sql).expect("parses") else {
            panic!("not a CREATE")
        };
        check_key_constraints(&create).map_err(|e| e.to_string())?;
        Catalog::default().declare_source(&create, &FormatDefaults::default())
    }

    #[test]
    fn a_stream_declares_its_columns_topic_and_formats() {
        let source = declare(
            "CREATE STREAM s (id STRING KEY, v BIGINT) WITH (kafka_topic='t', value_format='json');",
        )
        .expect("valid");
        assert_eq!(source.schema.to_string(), "`ID` STRING KEY, `V` BIGINT");
        assert_eq!(source.topic, "t");
        assert_eq!(source.key_format.format, Format::Kafka);
        assert_eq!(source.value_format.format, Format::Json);
        let names: Vec<String> = source
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["ID", "V", "ROWTIME", "ROWPARTITION", "ROWOFFSET"]);
    }

    #[test]
    fn bad_declarations_are_refused_with_ksqldbs_words() {
        let cases = [
            (
                "CREATE TABLE t (id INT, v INT) WITH (kafka_topic='t', value_format='json');",
                "Tables require a PRIMARY KEY",
            ),
            (
                "CREATE STREAM s (id INT PRIMARY KEY) WITH (kafka_topic='t', value_format='json');",
                "please use 'KEY' for streams",
            ),
            (
                "CREATE STREAM s (v INT) WITH (value_format='json');",
                "Missing required property \"KAFKA_TOPIC\"",
            ),
            (
                "CREATE STREAM s (v INT) WITH (kafka_topic='t');",
                "Statement is missing the 'VALUE_FORMAT' property from the WITH clause",
            ),
            (
                "CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='foo');",
                "Unknown format: foo",
            ),
            (
                "CREATE STREAM s (a INT, b INT) WITH (kafka_topic='t', value_format='kafka');",
                "The 'KAFKA' format only supports a single field",
            ),
            (
                "CREATE STREAM s (a INT, b INT) WITH (kafka_topic='t', value_format='json', wrap_single_value=false);",
                "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas",
            ),
            (
                "CREATE STREAM s (rowpartition INT) WITH (kafka_topic='t', value_format='json');",
                "'ROWPARTITION' is a reserved column name",
            ),
            (
                "CREATE STREAM s (k MAP<STRING, INT> KEY, v INT) WITH (kafka_topic='t', format='json');",
                "Map keys, including types that contain maps, are not supported",
            ),
            (
                "CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='json', foo='bar');",
                "Invalid config variable(s) in the WITH clause: FOO",
            ),
            (
                "CREATE STREAM s (v INT, v STRING) WITH (kafka_topic='t', value_format='json');",
                "Duplicate column names: V",
            ),
        ];
        for (sql, message) in cases {
            let error = declare(sql).expect_err(sql);
            assert!(error.contains(message), "{sql}\n{error}");
        }
    }
}
