//! The `JSON` format: UTF-8 JSON text ↔ columns, with ksqlDB's coercions on read.
//!
//! On read, object fields match column and struct field names case-insensitively (an exact
//! match wins), numbers and booleans read into STRING columns as their text, numbers in
//! strings read into numeric columns, DECIMALs keep every digit, BYTES are base64. On write,
//! names are written as stored, DOUBLEs as Java prints them (`1.0`, `1.0E10`).

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Float64Array, Int8Array,
    Int32Array, Int64Array, ListArray, MapArray, StringArray, StructArray, Time32MillisecondArray,
    TimestampMillisecondArray,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::appender::Appender;
use crate::types::SqlType;
use crate::types::decimal::{push_decimal_at, push_decimal_at_own_scale};

/// Appends one JSON value to a column: always exactly one entry, a null where the value does
/// not convert (and the error says why).
pub fn append_json(appender: &mut Appender, ty: &SqlType, value: &Value) -> Result<(), String> {
    if value.is_null() {
        appender.append_null();
        return Ok(());
    }
    let mismatch = || {
        format!(
            "Can't convert type. sourceType: {}, requiredType: {ty}, value: {value}",
            json_kind(value)
        )
    };
    macro_rules! push {
        ($builder:expr, $result:expr) => {{
            match $result {
                Ok(v) => {
                    $builder.append_value(v);
                    Ok(())
                }
                Err(e) => {
                    $builder.append_null();
                    Err(e)
                }
            }
        }};
    }
    match (appender, ty) {
        (Appender::Boolean(b), _) => push!(
            b,
            match value {
                Value::Bool(v) => Ok(*v),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
                _ => Err(mismatch()),
            }
        ),
        (Appender::Integer(b), _) => push!(
            b,
            integer(value)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(mismatch)
        ),
        (Appender::BigInt(b), _) => push!(b, integer(value).ok_or_else(mismatch)),
        (Appender::Double(b), _) => push!(
            b,
            match value {
                Value::Number(n) => n.as_f64().ok_or_else(mismatch),
                Value::String(s) => s.trim().parse::<f64>().map_err(|_| mismatch()),
                _ => Err(mismatch()),
            }
        ),
        (
            Appender::Decimal {
                builder,
                precision,
                scale,
            },
            _,
        ) => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => {
                    builder.append_null();
                    return Err(mismatch());
                }
            };
            builder.append_text(&text, *precision, *scale)
        }
        (Appender::String(b), _) => {
            match value {
                Value::String(s) => b.append_value(s),
                other => b.append_value(other.to_string()),
            }
            Ok(())
        }
        (Appender::Bytes(b), _) => push!(
            b,
            match value {
                Value::String(s) => BASE64
                    .decode(s)
                    .map_err(|e| format!("BYTES must be base64: {e}")),
                _ => Err(mismatch()),
            }
        ),
        (Appender::Date(b), _) => push!(
            b,
            integer(value)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(mismatch)
        ),
        (Appender::Time(b), _) => push!(
            b,
            integer(value)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(mismatch)
        ),
        (Appender::Timestamp(b), _) => push!(b, integer(value).ok_or_else(mismatch)),
        (appender @ Appender::List { .. }, SqlType::Array(item_type)) => {
            let Value::Array(items) = value else {
                appender.append_null();
                return Err(mismatch());
            };
            let Appender::List { items: builder, .. } = appender else {
                unreachable!()
            };
            let mut first_error = None;
            for item in items {
                if let Err(error) = append_json(builder, item_type, item) {
                    first_error.get_or_insert(error);
                }
            }
            appender.close_nested();
            first_error.map_or(Ok(()), Err)
        }
        (appender @ Appender::Map { .. }, SqlType::Map(key_type, value_type)) => {
            let Value::Object(entries) = value else {
                appender.append_null();
                return Err(mismatch());
            };
            let Appender::Map { keys, values, .. } = appender else {
                unreachable!()
            };
            let mut first_error = None;
            for (key, item) in entries {
                if let Err(error) = append_json(keys, key_type, &Value::String(key.clone())) {
                    first_error.get_or_insert(error);
                }
                if let Err(error) = append_json(values, value_type, item) {
                    first_error.get_or_insert(error);
                }
            }
            appender.close_nested();
            first_error.map_or(Ok(()), Err)
        }
        (appender @ Appender::Struct { .. }, SqlType::Struct(fields)) => {
            let Value::Object(object) = value else {
                appender.append_null();
                return Err(mismatch());
            };
            let Appender::Struct { children, .. } = appender else {
                unreachable!()
            };
            let mut first_error = None;
            for (field, child) in fields.iter().zip(children.iter_mut()) {
                let result = match find_field(object, &field.name) {
                    Some(item) => append_json(child, &field.ty, item),
                    None => {
                        child.append_null();
                        Ok(())
                    }
                };
                if let Err(error) = result {
                    first_error.get_or_insert(error);
                }
            }
            appender.close_nested();
            first_error.map_or(Ok(()), Err)
        }
        (appender, _) => {
            appender.append_null();
            Err(format!("internal: no JSON reader for {ty}"))
        }
    }
}

/// Whether JSON can carry the type: its objects' keys are strings, so a MAP needs STRING
/// keys, at any depth.
pub fn supports(ty: &SqlType) -> bool {
    match ty {
        SqlType::Map(key, value) => **key == SqlType::String && supports(value),
        SqlType::Array(item) => supports(item),
        SqlType::Struct(fields) => fields.iter().all(|f| supports(&f.ty)),
        _ => true,
    }
}

/// Appends one field given as raw JSON text (a slice of the record, not yet parsed).
/// Flat values take a fast path without allocating; the rest go through [`append_json`].
pub fn append_raw_json(appender: &mut Appender, ty: &SqlType, raw: &str) -> Result<(), String> {
    let raw = raw.trim();
    if raw == "null" {
        appender.append_null();
        return Ok(());
    }
    let plain_string = raw.len() >= 2
        && raw.starts_with('"')
        && raw.ends_with('"')
        && !raw[1..raw.len() - 1].contains(['\\', '"']);
    let integer = || {
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| raw.parse::<i64>().ok())
            .flatten()
    };
    match appender {
        Appender::BigInt(b) => {
            if let Some(v) = integer() {
                b.append_value(v);
                return Ok(());
            }
        }
        Appender::Integer(b) => {
            if let Some(v) = integer().and_then(|v| i32::try_from(v).ok()) {
                b.append_value(v);
                return Ok(());
            }
        }
        Appender::Timestamp(b) => {
            if let Some(v) = integer() {
                b.append_value(v);
                return Ok(());
            }
        }
        Appender::Double(b) => {
            if !raw.starts_with('"')
                && let Ok(v) = raw.parse::<f64>()
            {
                b.append_value(v);
                return Ok(());
            }
        }
        Appender::String(b) if plain_string => {
            b.append_value(&raw[1..raw.len() - 1]);
            return Ok(());
        }
        Appender::Boolean(b) if raw == "true" || raw == "false" => {
            b.append_value(raw == "true");
            return Ok(());
        }
        Appender::Decimal {
            builder,
            precision,
            scale,
        } if !raw.starts_with(['"', '{', '[']) || plain_string => {
            return builder.append_text(raw.trim_matches('"'), *precision, *scale);
        }
        _ => {}
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(value) => append_json(appender, ty, &value),
        Err(error) => {
            appender.append_null();
            Err(format!("Failed to deserialize JSON: {error}"))
        }
    }
}

/// An integral JSON number, or a string holding one. Fractions are truncated as Jackson's
/// `intValue()` does.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.trunc() as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Bool(_) => "BOOLEAN",
        Value::Number(n) if n.is_f64() => "DOUBLE",
        Value::Number(_) => "BIGINT",
        Value::String(_) => "STRING",
        Value::Array(_) => "ARRAY",
        Value::Object(_) => "STRUCT",
    }
}

/// A field by name: an exact match, else the first case-insensitive one.
pub fn find_field<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| {
                key.eq_ignore_ascii_case(name)
                    || (!(key.is_ascii() && name.is_ascii())
                        && key.to_uppercase() == name.to_uppercase())
            })
            .map(|(_, value)| value)
    })
}

/// Writes the value at `row` of `array` (of type `ty`) as JSON.
pub fn write_json(out: &mut String, array: &ArrayRef, ty: &SqlType, row: usize) {
    write_json_value(out, array, ty, row, Times::AsNumbers);
}

/// [`write_json`] for an output column, whose DECIMAL values may keep scales of their own
/// (`own_scales`, see `plan::value_scale_column`).
pub fn write_json_column(
    out: &mut String,
    array: &ArrayRef,
    ty: &SqlType,
    row: usize,
    own_scales: Option<&Int8Array>,
) {
    if let Some((column_scale, own_scale)) = super::own_scale_at(array, ty, row, own_scales)
        && push_decimal_at_own_scale(out, array.as_ref(), row, column_scale, own_scale).is_some()
    {
        return;
    }
    write_json(out, array, ty, row);
}

/// How [`write_json_value`] writes DATE, TIME and TIMESTAMP values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Times {
    /// Days, milliseconds of the day, milliseconds since the epoch: the JSON format.
    AsNumbers,
    /// ISO-8601 texts (`"2021-03-04"`, `"16:43:40"`, `"2021-03-04T16:43:40.000"`), as
    /// `TO_JSON_STRING` writes them.
    AsText,
}

/// Writes the value at `row` of `array` (of type `ty`) as JSON, times as `times` says.
pub fn write_json_value(
    out: &mut String,
    array: &ArrayRef,
    ty: &SqlType,
    row: usize,
    times: Times,
) {
    if array.is_null(row) {
        out.push_str("null");
        return;
    }
    match ty {
        SqlType::Boolean => {
            let value = array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .map(|a| a.value(row));
            out.push_str(if value == Some(true) { "true" } else { "false" });
        }
        SqlType::Integer => push_integer(out, downcast::<Int32Array>(array).value(row)),
        SqlType::BigInt => push_integer(out, downcast::<Int64Array>(array).value(row)),
        SqlType::Double => push_double(out, downcast::<Float64Array>(array).value(row)),
        SqlType::Decimal { scale, .. } => push_decimal_at(out, array.as_ref(), row, *scale)
            .expect("columns are built from their declared ksqlDB type"),
        SqlType::String => push_string(out, downcast::<StringArray>(array).value(row)),
        SqlType::Bytes => {
            push_string(
                out,
                &BASE64.encode(downcast::<BinaryArray>(array).value(row)),
            );
        }
        SqlType::Date | SqlType::Time | SqlType::Timestamp if times == Times::AsText => {
            out.push('"');
            out.push_str(&crate::functions::time_format::iso_text(array, ty, row));
            out.push('"');
        }
        SqlType::Date => push_integer(out, downcast::<Date32Array>(array).value(row)),
        SqlType::Time => push_integer(out, downcast::<Time32MillisecondArray>(array).value(row)),
        SqlType::Timestamp => {
            push_integer(out, downcast::<TimestampMillisecondArray>(array).value(row));
        }
        SqlType::Array(item_type) => {
            let items = downcast::<ListArray>(array).value(row);
            out.push('[');
            for i in 0..items.len() {
                if i > 0 {
                    out.push(',');
                }
                write_json_value(out, &items, item_type, i, times);
            }
            out.push(']');
        }
        SqlType::Map(_, value_type) => {
            let map = downcast::<MapArray>(array);
            let entries = map.value(row);
            let keys = entries.column(0);
            let values = entries.column(1);
            out.push('{');
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(',');
                }
                let key = keys.as_string_opt::<i32>().map_or("", |k| k.value(i));
                push_string(out, key);
                out.push(':');
                write_json_value(out, values, value_type, i, times);
            }
            out.push('}');
        }
        SqlType::Struct(fields) => {
            let structs = downcast::<StructArray>(array);
            out.push('{');
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, &field.name);
                out.push(':');
                write_json_value(out, structs.column(i), &field.ty, row, times);
            }
            out.push('}');
        }
    }
}

fn downcast<T: 'static>(array: &ArrayRef) -> &T {
    array
        .as_any()
        .downcast_ref::<T>()
        .expect("columns are built from their declared ksqlDB type")
}

/// An integer's decimal digits, without the formatting machinery (a hot path of encoding).
fn push_integer(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// A DOUBLE as Java's `Double.toString` writes it: `10.0`, `0.001`, `1.0E7`, `1.5E-4`.
pub fn push_double(out: &mut String, value: f64) {
    if !value.is_finite() {
        // JSON has no NaN or infinity; Jackson writes them as strings.
        push_string(out, &java_double(value));
        return;
    }
    out.push_str(&java_double(value));
}

pub fn java_double(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let magnitude = value.abs();
    if value == 0.0 || (1e-3..1e7).contains(&magnitude) {
        let text = format!("{value}");
        return if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        };
    }
    // Shortest round-trip digits, then Java's scientific layout.
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    if mantissa.contains('.') {
        return format!("{mantissa}E{exponent}");
    }
    // Java always writes a second digit, and picks the two-digit decimal closest to the
    // value: 5e-324 (4.94…e-324) is `4.9E-324`, 1e23 is `1.0E23`.
    let two_digits = format!("{value:.1e}");
    if two_digits.parse::<f64>() == Ok(value) {
        let (mantissa, exponent) = two_digits.split_once('e').unwrap_or((&two_digits, "0"));
        return format!("{mantissa}E{exponent}");
    }
    format!("{mantissa}.0E{exponent}")
}

pub fn push_string(out: &mut String, value: &str) {
    out.push('"');
    // Most strings need no escaping: copy them whole. (A fold without early exit, which
    // the compiler vectorizes.)
    let needs_escape = value.bytes().fold(false, |found, b| {
        found | (b == b'"') | (b == b'\\') | (b < 0x20)
    });
    if !needs_escape {
        out.push_str(value);
        out.push('"');
        return;
    }
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::StructField;

    fn round_trip(ty: &SqlType, json: &str) -> (Result<(), String>, String) {
        let value: Value = serde_json::from_str(json).expect("test JSON");
        let mut appender = Appender::new(ty, 1);
        let result = append_json(&mut appender, ty, &value);
        let array = appender.finish();
        assert_eq!(array.len(), 1, "exactly one entry per value");
        let mut out = String::new();
        write_json(&mut out, &array, ty, 0);
        (result, out)
    }

    #[test]
    fn values_read_and_write_back() {
        let struct_type = SqlType::Struct(vec![
            StructField {
                name: "A".into(),
                ty: SqlType::Integer,
            },
            StructField {
                name: "B".into(),
                ty: SqlType::Array(Box::new(SqlType::Map(
                    Box::new(SqlType::String),
                    Box::new(SqlType::Double),
                ))),
            },
        ]);
        let cases: Vec<(SqlType, &str, &str)> = vec![
            (SqlType::Integer, "33", "33"),
            (SqlType::BigInt, "998877665544332211", "998877665544332211"),
            (SqlType::Double, "654.321", "654.321"),
            (SqlType::Double, "10", "10.0"),
            (SqlType::Double, "1e10", "1.0E10"),
            (
                SqlType::Decimal {
                    precision: 6,
                    scale: 4,
                },
                "12.365",
                "12.3650",
            ),
            (
                SqlType::Decimal {
                    precision: 6,
                    scale: 4,
                },
                "\"12.0\"",
                "12.0000",
            ),
            (SqlType::String, "\"Hey\"", "\"Hey\""),
            (SqlType::String, "1", "\"1\""),
            (SqlType::Boolean, "true", "true"),
            (SqlType::Bytes, "\"AQI=\"", "\"AQI=\""),
            (SqlType::Timestamp, "1600000000000", "1600000000000"),
            (
                struct_type,
                r#"{"a": 1, "b": [{"x": 1.5}, null]}"#,
                r#"{"A":1,"B":[{"x":1.5},null]}"#,
            ),
            (SqlType::Integer, "null", "null"),
        ];
        for (ty, input, expected) in cases {
            let (result, out) = round_trip(&ty, input);
            assert_eq!(result, Ok(()), "{ty} {input}");
            assert_eq!(out, expected, "{ty} {input}");
        }
    }

    #[test]
    fn wrong_types_are_errors_with_a_null_in_place() {
        let (result, out) = round_trip(&SqlType::Integer, "\"x\"");
        assert!(
            result
                .expect_err("not a number")
                .contains("requiredType: INTEGER")
        );
        assert_eq!(out, "null");
        let (result, out) = round_trip(&SqlType::Array(Box::new(SqlType::Integer)), "{}");
        assert!(result.is_err());
        assert_eq!(out, "null");
        let (result, _) = round_trip(
            &SqlType::Decimal {
                precision: 3,
                scale: 2,
            },
            "123.4",
        );
        assert!(
            result
                .expect_err("too wide")
                .contains("does not fit DECIMAL(3, 2)")
        );
    }

    #[test]
    fn doubles_print_as_java_does() {
        for (value, text) in [
            (0.0, "0.0"),
            (1.5, "1.5"),
            (1e7, "1.0E7"),
            (1.5e-4, "1.5E-4"),
            (-1234.5, "-1234.5"),
            (0.001, "0.001"),
            (f64::from_bits(1), "4.9E-324"),
            (-f64::from_bits(1), "-4.9E-324"),
            (1e23, "1.0E23"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
        ] {
            assert_eq!(java_double(value), text);
        }
    }
}
