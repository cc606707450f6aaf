//! ksqlDB's SQL types and schemas: [`SqlType`] ↔ Arrow `DataType`, and the rendering ksqlDB
//! uses in `DESCRIBE`, REST headers and test expectations (`` `ID` STRING KEY, `V` BIGINT ``).
//!
//! Entry points: [`SqlType::from_ast`], [`SqlType::to_arrow`], [`SqlType::from_arrow`],
//! [`LogicalSchema`].

pub mod decimal;

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use riffle_grammar::ast::{ColumnConstraint, ColumnDef};
use sqlparser::ast::{self as sql, ExactNumberInfo};

/// Largest DECIMAL precision Riffle holds (Arrow's Decimal256; ksqlDB's `BigDecimal` has
/// no bound).
pub const MAX_DECIMAL_PRECISION: u8 = 76;

/// Largest DECIMAL precision held in 128 bits (Arrow's Decimal128); wider ones take 256.
pub const MAX_NARROW_DECIMAL_PRECISION: u8 = 38;

/// A ksqlDB column type.
///
/// ```text
/// BOOLEAN INT BIGINT DOUBLE DECIMAL(p, s) STRING BYTES DATE TIME TIMESTAMP
/// ARRAY<T> MAP<K, V> STRUCT<name T, …>
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SqlType {
    Boolean,
    Integer,
    BigInt,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    String,
    Bytes,
    /// Days since the epoch.
    Date,
    /// Milliseconds since midnight.
    Time,
    /// Milliseconds since the epoch, without a time zone.
    Timestamp,
    Array(Box<SqlType>),
    Map(Box<SqlType>, Box<SqlType>),
    Struct(Vec<StructField>),
}

/// A named field of a `STRUCT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StructField {
    pub name: String,
    pub ty: SqlType,
}

/// Why a type in a statement is not a ksqlDB type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

impl SqlType {
    /// Converts a parsed type; `resolve_alias` looks up names declared with `CREATE TYPE`.
    pub fn from_ast(
        data_type: &sql::DataType,
        resolve_alias: &dyn Fn(&str) -> Option<SqlType>,
    ) -> Result<SqlType, TypeError> {
        Ok(match data_type {
            sql::DataType::Boolean => SqlType::Boolean,
            sql::DataType::Int(_) | sql::DataType::Integer(_) => SqlType::Integer,
            sql::DataType::BigInt(_) => SqlType::BigInt,
            sql::DataType::Double(_) => SqlType::Double,
            sql::DataType::String(_) | sql::DataType::Varchar(_) => SqlType::String,
            sql::DataType::Bytes(_) => SqlType::Bytes,
            sql::DataType::Date => SqlType::Date,
            sql::DataType::Time(..) => SqlType::Time,
            sql::DataType::Timestamp(..) => SqlType::Timestamp,
            sql::DataType::Decimal(ExactNumberInfo::PrecisionAndScale(precision, scale)) => {
                SqlType::decimal(*precision, *scale)?
            }
            sql::DataType::Array(sql::ArrayElemTypeDef::AngleBracket(element)) => {
                SqlType::Array(Box::new(SqlType::from_ast(element, resolve_alias)?))
            }
            sql::DataType::Map(key, value) => SqlType::Map(
                Box::new(SqlType::from_ast(key, resolve_alias)?),
                Box::new(SqlType::from_ast(value, resolve_alias)?),
            ),
            sql::DataType::Struct(fields, _) => SqlType::Struct(
                fields
                    .iter()
                    .map(|field| {
                        let name = field
                            .field_name
                            .as_ref()
                            .map(|n| n.value.clone())
                            .ok_or_else(|| TypeError("a STRUCT field needs a name".into()))?;
                        Ok(StructField {
                            name,
                            ty: SqlType::from_ast(&field.field_type, resolve_alias)?,
                        })
                    })
                    .collect::<Result<_, TypeError>>()?,
            ),
            sql::DataType::Custom(name, modifiers) if modifiers.is_empty() => {
                let name = name.to_string();
                let bare = name.trim_matches('`');
                resolve_alias(bare).ok_or_else(|| {
                    TypeError(format!(
                        "Unknown type: {bare}. Use a ksqlDB type (BOOLEAN, INT, BIGINT, DOUBLE, \
                         DECIMAL, STRING, BYTES, DATE, TIME, TIMESTAMP, ARRAY, MAP, STRUCT) or \
                         one declared with CREATE TYPE"
                    ))
                })?
            }
            other => return Err(TypeError(format!("Unsupported type: {other}"))),
        })
    }

    /// `DECIMAL(precision, scale)`, checked as ksqlDB checks it.
    pub fn decimal(precision: u64, scale: i64) -> Result<SqlType, TypeError> {
        if precision == 0 || precision > u64::from(MAX_DECIMAL_PRECISION) {
            return Err(TypeError(format!(
                "DECIMAL precision must be between 1 and {MAX_DECIMAL_PRECISION}: {precision}"
            )));
        }
        if scale < 0 || scale as u64 > precision {
            return Err(TypeError(format!(
                "DECIMAL scale must be between 0 and the precision ({precision}): {scale}"
            )));
        }
        Ok(SqlType::Decimal {
            precision: precision as u8,
            scale: scale as u8,
        })
    }

    /// The Arrow type values of this type are held in.
    pub fn to_arrow(&self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::Integer => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Double => DataType::Float64,
            SqlType::Decimal { precision, scale } if *precision <= MAX_NARROW_DECIMAL_PRECISION => {
                DataType::Decimal128(*precision, *scale as i8)
            }
            SqlType::Decimal { precision, scale } => DataType::Decimal256(*precision, *scale as i8),
            SqlType::String => DataType::Utf8,
            SqlType::Bytes => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time32(TimeUnit::Millisecond),
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            SqlType::Array(element) => {
                DataType::List(Arc::new(Field::new("item", element.to_arrow(), true)))
            }
            SqlType::Map(key, value) => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key.to_arrow(), false),
                        Field::new("value", value.to_arrow(), true),
                    ])),
                    false,
                )),
                false,
            ),
            SqlType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|f| Field::new(f.name.clone(), f.ty.to_arrow(), true))
                    .collect(),
            ),
        }
    }

    /// The ksqlDB type of an Arrow type, where there is one.
    pub fn from_arrow(data_type: &DataType) -> Option<SqlType> {
        Some(match data_type {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16 => SqlType::Integer,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => SqlType::BigInt,
            DataType::Float32 | DataType::Float64 => SqlType::Double,
            DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
                SqlType::Decimal {
                    precision: *precision,
                    scale: (*scale).max(0) as u8,
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::String,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytes,
            DataType::Date32 => SqlType::Date,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            DataType::Timestamp(_, _) => SqlType::Timestamp,
            DataType::List(field) | DataType::LargeList(field) => {
                SqlType::Array(Box::new(SqlType::from_arrow(field.data_type())?))
            }
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(fields) if fields.len() == 2 => SqlType::Map(
                    Box::new(SqlType::from_arrow(fields[0].data_type())?),
                    Box::new(SqlType::from_arrow(fields[1].data_type())?),
                ),
                _ => return None,
            },
            DataType::Struct(fields) => SqlType::Struct(
                fields
                    .iter()
                    .map(|f| {
                        Some(StructField {
                            name: f.name().clone(),
                            ty: SqlType::from_arrow(f.data_type())?,
                        })
                    })
                    .collect::<Option<_>>()?,
            ),
            _ => return None,
        })
    }
}

impl fmt::Display for SqlType {
    /// ksqlDB's rendering: `INTEGER`, `DECIMAL(4, 2)`, `STRUCT<`A` INTEGER>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Boolean => f.write_str("BOOLEAN"),
            SqlType::Integer => f.write_str("INTEGER"),
            SqlType::BigInt => f.write_str("BIGINT"),
            SqlType::Double => f.write_str("DOUBLE"),
            SqlType::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            SqlType::String => f.write_str("STRING"),
            SqlType::Bytes => f.write_str("BYTES"),
            SqlType::Date => f.write_str("DATE"),
            SqlType::Time => f.write_str("TIME"),
            SqlType::Timestamp => f.write_str("TIMESTAMP"),
            SqlType::Array(element) => write!(f, "ARRAY<{element}>"),
            SqlType::Map(key, value) => write!(f, "MAP<{key}, {value}>"),
            SqlType::Struct(fields) => {
                f.write_str("STRUCT<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{}` {}", field.name, field.ty)?;
                }
                f.write_str(">")
            }
        }
    }
}

/// Where a column's value comes from in a record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    Key,
    Value,
    /// All headers (`HEADERS`) or one of them (`HEADER('k')`).
    Header(Option<String>),
}

/// A column of a stream or table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub kind: ColumnKind,
}

/// The columns of a source, keys first as declared. Renders as ksqlDB does:
/// `` `ID` STRING KEY, `V` BIGINT ``.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogicalSchema {
    pub columns: Vec<Column>,
}

impl LogicalSchema {
    /// The schema of a `CREATE STREAM|TABLE` column list.
    pub fn from_column_defs(
        defs: &[ColumnDef],
        resolve_alias: &dyn Fn(&str) -> Option<SqlType>,
    ) -> Result<LogicalSchema, TypeError> {
        let columns = defs
            .iter()
            .map(|def| {
                let kind = match &def.constraint {
                    Some(ColumnConstraint::Key | ColumnConstraint::PrimaryKey) => ColumnKind::Key,
                    Some(ColumnConstraint::Headers) => ColumnKind::Header(None),
                    Some(ColumnConstraint::Header(key)) => ColumnKind::Header(Some(key.clone())),
                    None => ColumnKind::Value,
                };
                Ok(Column {
                    name: def.name.value.clone(),
                    ty: SqlType::from_ast(&def.data_type, resolve_alias)?,
                    kind,
                })
            })
            .collect::<Result<_, TypeError>>()?;
        Ok(LogicalSchema { columns })
    }

    /// Key columns, then value columns.
    pub fn from_key_and_value_columns(
        keys: &[(String, SqlType)],
        values: &[(String, SqlType)],
    ) -> LogicalSchema {
        let column = |kind: ColumnKind| {
            move |(name, ty): &(String, SqlType)| Column {
                name: name.clone(),
                ty: ty.clone(),
                kind: kind.clone(),
            }
        };
        LogicalSchema {
            columns: keys
                .iter()
                .map(column(ColumnKind::Key))
                .chain(values.iter().map(column(ColumnKind::Value)))
                .collect(),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.kind == ColumnKind::Key)
    }

    /// The columns after the keys: values and headers, in declared order.
    pub fn non_keys(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.kind != ColumnKind::Key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.kind == ColumnKind::Value)
    }

    pub fn headers(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Header(_)))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for LogicalSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, column) in self.columns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{}` {}", column.name, column.ty)?;
            match &column.kind {
                ColumnKind::Key => f.write_str(" KEY")?,
                ColumnKind::Value => {}
                ColumnKind::Header(None) => f.write_str(" HEADERS")?,
                ColumnKind::Header(Some(key)) => write!(f, " HEADER('{key}')")?,
            }
        }
        Ok(())
    }
}

/// A struct column as the struct type `wanted`, field by field: each field of `wanted`
/// taken from the column's field of that name through `convert`, or NULL where the column
/// has none; a NULL struct stays NULL.
pub fn struct_by_name<E: From<arrow::error::ArrowError>>(
    values: &arrow::array::StructArray,
    wanted: &Fields,
    convert: impl Fn(&arrow::array::ArrayRef, &DataType) -> Result<arrow::array::ArrayRef, E>,
) -> Result<arrow::array::ArrayRef, E> {
    use arrow::array::Array;
    let columns = wanted
        .iter()
        .map(|field| match values.column_by_name(field.name()) {
            Some(column) => convert(column, field.data_type()),
            None => Ok(arrow::array::new_null_array(
                field.data_type(),
                values.len(),
            )),
        })
        .collect::<Result<Vec<_>, E>>()?;
    Ok(Arc::new(arrow::array::StructArray::try_new(
        wanted.clone(),
        columns,
        values.nulls().cloned(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_aliases(_: &str) -> Option<SqlType> {
        None
    }

    fn schema(sql: &str) -> LogicalSchema {
        let columns = riffle_grammar::parse_table_elements(sql).expect("valid columns");
        LogicalSchema::from_column_defs(&columns, &no_aliases).expect("ksqlDB types")
    }

    #[test]
    fn schemas_render_as_ksqldb_renders_them() {
        assert_eq!(
            schema("id string key, v bigint, d decimal(6,4), s struct<a int, `b` array<map<string, double>>>")
                .to_string(),
            "`ID` STRING KEY, `V` BIGINT, `D` DECIMAL(6, 4), \
             `S` STRUCT<`A` INTEGER, `b` ARRAY<MAP<STRING, DOUBLE>>>"
        );
    }

    #[test]
    fn every_type_maps_to_arrow_and_back() {
        let s = schema(
            "a boolean, b int, c bigint, d double, e decimal(10, 2), w decimal(50, 30), f string, g bytes, \
             h date, i time, j timestamp, k array<int>, l map<string, bigint>, m struct<x int>",
        );
        for column in &s.columns {
            let arrow = column.ty.to_arrow();
            assert_eq!(
                SqlType::from_arrow(&arrow).as_ref(),
                Some(&column.ty),
                "{}",
                column.name
            );
        }
    }

    #[test]
    fn bad_decimals_and_unknown_types_are_named() {
        let columns = riffle_grammar::parse_table_elements("a decimal(77, 2)").expect("parses");
        let error = LogicalSchema::from_column_defs(&columns, &no_aliases).expect_err("too wide");
        assert!(
            error.0.contains("precision must be between 1 and 76: 77"),
            "{error}"
        );
        let columns = riffle_grammar::parse_table_elements("a decimal(2, 3)").expect("parses");
        let error = LogicalSchema::from_column_defs(&columns, &no_aliases).expect_err("scale");
        assert!(error.0.contains("scale must be between 0"), "{error}");
        let columns = riffle_grammar::parse_table_elements("a address").expect("parses");
        let error = LogicalSchema::from_column_defs(&columns, &no_aliases).expect_err("unknown");
        assert!(error.0.starts_with("Unknown type: ADDRESS"), "{error}");
        let resolve = |name: &str| (name == "ADDRESS").then_some(SqlType::String);
        let resolved = LogicalSchema::from_column_defs(&columns, &resolve).expect("alias");
        assert_eq!(resolved.columns[0].ty, SqlType::String);
    }
}
