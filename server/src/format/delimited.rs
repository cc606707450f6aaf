//! The `DELIMITED` format: one line of CSV, a field per column, `,` or another delimiter.
//!
//! Quoting follows Apache Commons CSV's default (a field in `"…"` may hold the delimiter, and
//! `""` is a literal quote). An empty unquoted field is NULL. Nested types are not carried.

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float64Array, Int8Array, Int32Array,
    Int64Array, StringArray, Time32MillisecondArray, TimestampMillisecondArray,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::appender::Appender;
use super::json::java_double;
use crate::types::SqlType;
use crate::types::decimal::{push_decimal_at, push_decimal_at_own_scale};

/// Whether DELIMITED can carry a column of this type.
pub fn supports(ty: &SqlType) -> bool {
    !matches!(
        ty,
        SqlType::Array(_) | SqlType::Map(..) | SqlType::Struct(_)
    )
}

/// One field of a line: its text, and whether it was quoted.
#[derive(Debug, PartialEq, Eq)]
pub struct CsvField {
    pub text: String,
    pub quoted: bool,
}

/// Splits a line into fields.
pub fn split_fields(line: &str, delimiter: char) -> Result<Vec<CsvField>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut text = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        text.push('"');
                    }
                    Some('"') => break,
                    Some(c) => text.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(CsvField { text, quoted });
                    return Ok(fields);
                }
                Some(c) if c == delimiter => {}
                Some(c) => return Err(format!("unexpected '{c}' after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    Some(c) if c == delimiter => break,
                    Some(c) => text.push(c),
                    None => {
                        fields.push(CsvField { text, quoted });
                        return Ok(fields);
                    }
                }
            }
        }
        fields.push(CsvField { text, quoted });
    }
}

/// Appends one field to a column: always one entry, a null where it does not convert.
pub fn append_field(appender: &mut Appender, ty: &SqlType, field: &CsvField) -> Result<(), String> {
    if field.text.is_empty() && !(field.quoted && *ty == SqlType::String) {
        appender.append_null();
        return Ok(());
    }
    let text = field.text.as_str();
    let bad = |e: &dyn std::fmt::Display| format!("'{text}' is not a valid {ty}: {e}");
    macro_rules! push {
        ($builder:expr, $parsed:expr) => {{
            match $parsed {
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
    match appender {
        Appender::Boolean(b) => push!(
            b,
            if text.eq_ignore_ascii_case("true") {
                Ok(true)
            } else if text.eq_ignore_ascii_case("false") {
                Ok(false)
            } else {
                Err(bad(&"expected true or false"))
            }
        ),
        Appender::Integer(b) => push!(b, text.parse::<i32>().map_err(|e| bad(&e))),
        Appender::BigInt(b) => push!(b, text.parse::<i64>().map_err(|e| bad(&e))),
        Appender::Double(b) => push!(b, text.parse::<f64>().map_err(|e| bad(&e))),
        Appender::Decimal {
            builder,
            precision,
            scale,
        } => builder.append_text(text, *precision, *scale),
        Appender::String(b) => {
            b.append_value(text);
            Ok(())
        }
        Appender::Bytes(b) => push!(b, BASE64.decode(text).map_err(|e| bad(&e))),
        Appender::Date(b) => push!(b, text.parse::<i32>().map_err(|e| bad(&e))),
        Appender::Time(b) => push!(b, text.parse::<i32>().map_err(|e| bad(&e))),
        Appender::Timestamp(b) => push!(b, text.parse::<i64>().map_err(|e| bad(&e))),
        nested => {
            nested.append_null();
            Err(format!("the DELIMITED format does not carry {ty}"))
        }
    }
}

/// [`field_text`] for an output column, whose DECIMAL values may keep scales of their own
/// (`own_scales`, see `plan::value_scale_column`).
pub fn column_text(
    array: &ArrayRef,
    ty: &SqlType,
    row: usize,
    own_scales: Option<&Int8Array>,
) -> Option<String> {
    if let Some((column_scale, own_scale)) = super::own_scale_at(array, ty, row, own_scales) {
        let mut text = String::new();
        push_decimal_at_own_scale(&mut text, array.as_ref(), row, column_scale, own_scale)?;
        return Some(text);
    }
    field_text(array, ty, row)
}

/// The text of a value, or `None` for NULL.
pub fn field_text(array: &ArrayRef, ty: &SqlType, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    let any = array.as_any();
    Some(match ty {
        SqlType::Boolean => any.downcast_ref::<BooleanArray>()?.value(row).to_string(),
        SqlType::Integer => any.downcast_ref::<Int32Array>()?.value(row).to_string(),
        SqlType::BigInt => any.downcast_ref::<Int64Array>()?.value(row).to_string(),
        SqlType::Double => java_double(any.downcast_ref::<Float64Array>()?.value(row)),
        SqlType::Decimal { scale, .. } => {
            let mut text = String::new();
            push_decimal_at(&mut text, array.as_ref(), row, *scale)?;
            text
        }
        SqlType::String => any.downcast_ref::<StringArray>()?.value(row).to_string(),
        SqlType::Bytes => BASE64.encode(any.downcast_ref::<BinaryArray>()?.value(row)),
        SqlType::Date => any.downcast_ref::<Date32Array>()?.value(row).to_string(),
        SqlType::Time => any
            .downcast_ref::<Time32MillisecondArray>()?
            .value(row)
            .to_string(),
        SqlType::Timestamp => any
            .downcast_ref::<TimestampMillisecondArray>()?
            .value(row)
            .to_string(),
        SqlType::Array(_) | SqlType::Map(..) | SqlType::Struct(_) => return None,
    })
}

/// Joins field texts into a line, quoting where needed.
pub fn join_fields(fields: &[Option<String>], delimiter: char) -> String {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(delimiter);
        }
        let Some(text) = field else { continue };
        let needs_quotes = needs_quotes(text, delimiter, i == 0);
        if needs_quotes {
            line.push('"');
            line.push_str(&text.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(text);
        }
    }
    line
}

/// Apache commons-csv's minimal quoting, which ksqlDB's DELIMITED writer uses: an empty
/// first field; a first field not starting with a letter or digit; any field starting with
/// a character up to `#` or ending with one up to a space; any field holding the
/// delimiter, a quote or a line break.
fn needs_quotes(text: &str, delimiter: char, first: bool) -> bool {
    let (Some(head), Some(tail)) = (text.chars().next(), text.chars().last()) else {
        return first;
    };
    (first && !head.is_ascii_alphanumeric())
        || head <= '#'
        || tail <= ' '
        || text.contains([delimiter, '"', '\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<(String, bool)> {
        split_fields(line, ',')
            .expect("valid line")
            .into_iter()
            .map(|f| (f.text, f.quoted))
            .collect()
    }

    #[test]
    fn splits_quoted_and_empty_fields() {
        assert_eq!(
            texts(r#"a,"b,c",,"say ""hi""""#),
            [
                ("a".into(), false),
                ("b,c".into(), true),
                (String::new(), false),
                ("say \"hi\"".into(), true)
            ]
        );
        assert_eq!(texts(""), [(String::new(), false)]);
        assert!(split_fields("\"open", ',').is_err());
    }

    #[test]
    fn joins_with_minimal_quoting_and_reads_back() {
        let fields = [
            Some("plain".to_string()),
            None,
            Some("with,comma".to_string()),
            Some("quote\"d".to_string()),
        ];
        let line = join_fields(&fields, ',');
        assert_eq!(line, r#"plain,,"with,comma","quote""d""#);
        let back: Vec<Option<String>> = split_fields(&line, ',')
            .expect("valid")
            .into_iter()
            .map(|f| (!f.text.is_empty() || f.quoted).then_some(f.text))
            .collect();
        assert_eq!(back, fields);
    }

    #[test]
    fn typed_fields_convert_or_fail_with_a_null() {
        let field = |text: &str| CsvField {
            text: text.into(),
            quoted: false,
        };
        let mut ints = Appender::new(&SqlType::Integer, 3);
        assert!(append_field(&mut ints, &SqlType::Integer, &field("33")).is_ok());
        assert!(append_field(&mut ints, &SqlType::Integer, &field("")).is_ok());
        assert!(append_field(&mut ints, &SqlType::Integer, &field("x")).is_err());
        let array = ints.finish();
        assert_eq!(array.len(), 3);
        assert_eq!(array.null_count(), 2);
    }
}
