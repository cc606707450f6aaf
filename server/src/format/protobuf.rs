//! Rows as Protobuf messages, for pull queries answered in ksqlDB's
//! `application/vnd.ksql.v1+protobuf`: the schema Confluent's Connect converter writes for
//! the columns ([`proto_schema`]: one `message ConnectDefault1`, a field per column
//! numbered from 1, structs and map entries as nested messages `ConnectDefault2`,
//! `ConnectDefault3Entry`, …) and each row's message bytes ([`encode_row`]).
//!
//! Proto3: a NULL, and a value equal to its type's default (0, `false`, `""`), is left out
//! of the bytes, as Protobuf writes it. DECIMAL, DATE, TIME and TIMESTAMP (Confluent's and
//! Google's well-known message types) and arrays of arrays are not written yet:
//! [`proto_schema`] refuses them.

use std::fmt::Write as _;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array,
    StringArray,
};

use crate::types::SqlType;

/// The `.proto` text of a message with a field per column, as Confluent's converter names
/// and numbers them.
pub fn proto_schema(columns: &[(String, SqlType)]) -> Result<String, String> {
    let mut out = String::from("syntax = \"proto3\";\n\n");
    let mut names = Names { next: 1 };
    let top = names.message();
    write_message(&mut out, &top, columns, 0, &mut names)?;
    Ok(out)
}

/// The numbers of `ConnectDefaultN` messages, in the order the converter meets them.
struct Names {
    next: usize,
}

impl Names {
    fn message(&mut self) -> String {
        let name = format!("ConnectDefault{}", self.next);
        self.next += 1;
        name
    }
}

/// A message nested in the one being written: a struct's, or a map's entries.
struct Nested {
    name: String,
    fields: Vec<(String, SqlType)>,
}

fn write_message(
    out: &mut String,
    name: &str,
    fields: &[(String, SqlType)],
    depth: usize,
    names: &mut Names,
) -> Result<(), String> {
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "{pad}message {name} {{");
    let mut nested = Vec::new();
    for (number, (field, ty)) in fields.iter().enumerate() {
        let (repeated, type_name) = match ty {
            SqlType::Array(element) => ("repeated ", field_type(element, names, &mut nested)?),
            SqlType::Map(key, value) => {
                let entry = format!("{}Entry", names.message());
                nested.push(Nested {
                    name: entry.clone(),
                    fields: vec![
                        ("key".into(), *key.clone()),
                        ("value".into(), *value.clone()),
                    ],
                });
                ("repeated ", entry)
            }
            other => ("", field_type(other, names, &mut nested)?),
        };
        let _ = writeln!(
            out,
            "{pad}  {repeated}{type_name} {field} = {};",
            number + 1
        );
    }
    for message in nested {
        out.push('\n');
        write_message(out, &message.name, &message.fields, depth + 1, names)?;
    }
    let _ = writeln!(out, "{pad}}}");
    Ok(())
}

/// The Protobuf type of a single (not repeated) value.
fn field_type(ty: &SqlType, names: &mut Names, nested: &mut Vec<Nested>) -> Result<String, String> {
    Ok(match ty {
        SqlType::Boolean => "bool".into(),
        SqlType::Integer => "int32".into(),
        SqlType::BigInt => "int64".into(),
        SqlType::Double => "double".into(),
        SqlType::String => "string".into(),
        SqlType::Bytes => "bytes".into(),
        SqlType::Struct(fields) => {
            let name = names.message();
            nested.push(Nested {
                name: name.clone(),
                fields: fields
                    .iter()
                    .map(|field| (field.name.clone(), field.ty.clone()))
                    .collect(),
            });
            name
        }
        other => {
            return Err(format!(
                "Protobuf answers do not hold {other} values yet; ask for JSON \
                 (application/vnd.ksql.v1+json)"
            ));
        }
    })
}

/// Protobuf's wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;

/// Appends the message bytes of one row (`arrays` of the columns' `types`, in order).
pub fn encode_row(types: &[SqlType], arrays: &[ArrayRef], row: usize, out: &mut Vec<u8>) {
    for (number, (ty, array)) in types.iter().zip(arrays).enumerate() {
        encode_field(out, number as u32 + 1, ty, array.as_ref(), row);
    }
}

fn encode_field(out: &mut Vec<u8>, number: u32, ty: &SqlType, array: &dyn Array, row: usize) {
    if array.is_null(row) {
        return;
    }
    match ty {
        SqlType::Array(element) => {
            let Some(list) = array.as_list_opt::<i32>() else {
                return;
            };
            let items = list.value(row);
            if is_packed(element) {
                let mut packed = Vec::new();
                for item in 0..items.len() {
                    if !items.is_null(item) {
                        scalar(&mut packed, element, items.as_ref(), item);
                    }
                }
                length_delimited(out, number, &packed);
            } else {
                for item in 0..items.len() {
                    // A NULL element has no Protobuf form; it is left out.
                    if !items.is_null(item) {
                        single(out, number, element, items.as_ref(), item, true);
                    }
                }
            }
        }
        SqlType::Map(key, value) => {
            let Some(map) = array.as_map_opt() else {
                return;
            };
            let entries = map.value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            for entry in 0..entries.len() {
                let mut bytes = Vec::new();
                encode_field(&mut bytes, 1, key, keys.as_ref(), entry);
                encode_field(&mut bytes, 2, value, values.as_ref(), entry);
                length_delimited(out, number, &bytes);
            }
        }
        other => single(out, number, other, array, row, false),
    }
}

/// Whether a repeated field of this type is packed (proto3 packs repeated numbers).
fn is_packed(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Boolean | SqlType::Integer | SqlType::BigInt | SqlType::Double
    )
}

/// One value as a field; a default value is left out unless it is an element of a
/// repeated field (`always`).
fn single(
    out: &mut Vec<u8>,
    number: u32,
    ty: &SqlType,
    array: &dyn Array,
    row: usize,
    always: bool,
) {
    match ty {
        SqlType::String => {
            let text = string_at(array, row);
            if always || !text.is_empty() {
                length_delimited(out, number, text.as_bytes());
            }
        }
        SqlType::Bytes => {
            let Some(bytes) = array.as_any().downcast_ref::<BinaryArray>() else {
                return;
            };
            if always || !bytes.value(row).is_empty() {
                length_delimited(out, number, bytes.value(row));
            }
        }
        SqlType::Struct(fields) => {
            let Some(values) = array.as_struct_opt() else {
                return;
            };
            let mut bytes = Vec::new();
            for (inner, (field, column)) in fields.iter().zip(values.columns()).enumerate() {
                encode_field(
                    &mut bytes,
                    inner as u32 + 1,
                    &field.ty,
                    column.as_ref(),
                    row,
                );
            }
            length_delimited(out, number, &bytes);
        }
        numeric => {
            let wire = if *numeric == SqlType::Double {
                FIXED64
            } else {
                VARINT
            };
            let start = out.len();
            tag(out, number, wire);
            let value = out.len();
            scalar(out, numeric, array, row);
            // A number's default is all zero bits (one zero byte as a varint, eight as a
            // double): taken back out.
            if !always && out[value..].iter().all(|b| *b == 0) {
                out.truncate(start);
            }
        }
    }
}

/// A number's or boolean's bytes, without a tag.
fn scalar(out: &mut Vec<u8>, ty: &SqlType, array: &dyn Array, row: usize) {
    let any = array.as_any();
    match ty {
        SqlType::Boolean => {
            if let Some(values) = any.downcast_ref::<BooleanArray>() {
                varint(out, u64::from(values.value(row)));
            }
        }
        // Negative INTs are sign-extended to 64 bits, as Protobuf writes an int32.
        SqlType::Integer => {
            if let Some(values) = any.downcast_ref::<Int32Array>() {
                varint(out, i64::from(values.value(row)) as u64);
            }
        }
        SqlType::BigInt => {
            if let Some(values) = any.downcast_ref::<Int64Array>() {
                varint(out, values.value(row) as u64);
            }
        }
        SqlType::Double => {
            if let Some(values) = any.downcast_ref::<Float64Array>() {
                out.extend_from_slice(&values.value(row).to_le_bytes());
            }
        }
        _ => {}
    }
}

fn string_at(array: &dyn Array, row: usize) -> &str {
    if let Some(strings) = array.as_any().downcast_ref::<StringArray>() {
        return strings.value(row);
    }
    array
        .as_string_view_opt()
        .map_or("", |strings| strings.value(row))
}

fn tag(out: &mut Vec<u8>, number: u32, wire: u8) {
    varint(out, (u64::from(number) << 3) | u64::from(wire));
}

fn length_delimited(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    tag(out, number, LENGTH_DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn columns(list: &[(&str, SqlType)]) -> Vec<(String, SqlType)> {
        list.iter()
            .map(|(name, ty)| (name.to_string(), ty.clone()))
            .collect()
    }

    #[test]
    fn the_schema_names_and_numbers_fields_as_confluents_converter() {
        let map = SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::Integer));
        assert_eq!(
            proto_schema(&columns(&[("ID", SqlType::BigInt), ("F", map)])).expect("a schema"),
            "syntax = \"proto3\";\n\nmessage ConnectDefault1 {\n  int64 ID = 1;\n  repeated \
             ConnectDefault2Entry F = 2;\n\n  message ConnectDefault2Entry {\n    string key = \
             1;\n    int32 value = 2;\n  }\n}\n"
        );
        let field = |name: &str, ty| crate::types::StructField {
            name: name.into(),
            ty,
        };
        let headers = SqlType::Array(Box::new(SqlType::Struct(vec![
            field("KEY", SqlType::String),
            field("VALUE", SqlType::Bytes),
        ])));
        assert_eq!(
            proto_schema(&columns(&[("H", headers)])).expect("a schema"),
            "syntax = \"proto3\";\n\nmessage ConnectDefault1 {\n  repeated ConnectDefault2 H = \
             1;\n\n  message ConnectDefault2 {\n    string KEY = 1;\n    bytes VALUE = 2;\n  \
             }\n}\n"
        );
        let refused = proto_schema(&columns(&[("D", SqlType::Date)])).expect_err("refused");
        assert!(refused.contains("do not hold DATE values yet"), "{refused}");
    }

    #[test]
    fn rows_are_written_as_protobuf_writes_them() {
        let types = [
            SqlType::Integer,
            SqlType::String,
            SqlType::BigInt,
            SqlType::Double,
        ];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(-1), Some(0)])),
            Arc::new(StringArray::from(vec![Some("a1"), Some("")])),
            Arc::new(Int64Array::from(vec![Some(300), None])),
            Arc::new(Float64Array::from(vec![Some(1.5), Some(0.0)])),
        ];
        let mut first = Vec::new();
        encode_row(&types, &arrays, 0, &mut first);
        let mut expected = vec![0x08];
        expected.extend([0xff; 9]);
        expected.push(0x01); // -1 as ten bytes
        expected.extend([0x12, 2, b'a', b'1']); // "a1"
        expected.extend([0x18, 0xac, 0x02]); // 300
        expected.push(0x21); // 1.5, little-endian
        expected.extend(1.5f64.to_le_bytes());
        assert_eq!(first, expected);
        // Defaults and NULLs are left out.
        let mut second = Vec::new();
        encode_row(&types, &arrays, 1, &mut second);
        assert!(second.is_empty(), "{second:?}");
    }
}
