//! Pull-query answers in Protobuf, read back as ksqlDB's REST test runner reads them: the
//! header's `protoSchema` is parsed (with `protox-parse`, not by Riffle), each row's
//! `protobufBytes` decoded against its `ConnectDefault1` message (with `prost-reflect`) and
//! printed in Protobuf's text format as Java's `TextFormat` prints it, the form the corpus
//! writes its expected rows in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value as Field};
use riffle_server::format::json::java_double;
use serde_json::{Value, json};

/// A `/query` body's elements with each row's bytes replaced by the text of its message.
pub fn rows_as_text(elements: Vec<Value>) -> Result<Vec<Value>, String> {
    let schema = elements
        .iter()
        .find_map(|e| e["header"]["protoSchema"].as_str())
        .ok_or("the header has no protoSchema")?;
    let message = row_message(schema)?;
    elements
        .into_iter()
        .map(|element| match element["row"]["protobufBytes"].as_str() {
            Some(encoded) => {
                let bytes = BASE64
                    .decode(encoded)
                    .map_err(|e| format!("protobufBytes {encoded:?}: {e}"))?;
                let row = DynamicMessage::decode(message.clone(), bytes.as_slice())
                    .map_err(|e| format!("protobufBytes {encoded:?}: {e}"))?;
                let mut text = String::new();
                text_format(&row, 0, &mut text);
                Ok(json!({ "row": text }))
            }
            None => Ok(element),
        })
        .collect()
}

/// The `ConnectDefault1` message of a `.proto` text.
fn row_message(schema: &str) -> Result<MessageDescriptor, String> {
    let file = protox_parse::parse("query.proto", schema)
        .map_err(|e| format!("protoSchema does not parse: {e}\n{schema}"))?;
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_proto(file)
        .map_err(|e| format!("protoSchema is not a valid schema: {e}\n{schema}"))?;
    pool.get_message_by_name("ConnectDefault1")
        .ok_or_else(|| format!("protoSchema has no message ConnectDefault1:\n{schema}"))
}

/// Java's `TextFormat.printer().printToString`: set fields in number order, `name: value`
/// a line, a message as `name {` … `}` indented by two, each element of a repeated field
/// on its own.
fn text_format(message: &DynamicMessage, depth: usize, out: &mut String) {
    for (field, value) in message.fields() {
        match value {
            Field::List(items) => {
                for item in items {
                    text_field(field.name(), item, depth, out);
                }
            }
            other => text_field(field.name(), other, depth, out),
        }
    }
}

fn text_field(name: &str, value: &Field, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let scalar = match value {
        Field::Message(inner) => {
            out.push_str(&format!("{pad}{name} {{\n"));
            text_format(inner, depth + 1, out);
            out.push_str(&format!("{pad}}}\n"));
            return;
        }
        Field::Bool(b) => b.to_string(),
        Field::I32(n) => n.to_string(),
        Field::I64(n) => n.to_string(),
        Field::U32(n) => n.to_string(),
        Field::U64(n) => n.to_string(),
        Field::F32(n) => java_double(f64::from(*n)),
        Field::F64(n) => java_double(*n),
        Field::String(text) => quoted(text.as_bytes()),
        Field::Bytes(bytes) => quoted(bytes),
        Field::EnumNumber(n) => n.to_string(),
        Field::List(_) | Field::Map(_) => format!("{value:?}"),
    };
    out.push_str(&format!("{pad}{name}: {scalar}\n"));
}

/// A string or bytes as `TextFormat` quotes them: printable ASCII as is, the usual
/// escapes, every other byte in octal.
fn quoted(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for byte in bytes {
        match byte {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(*byte)),
            other => out.push_str(&format!("\\{other:03o}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_print_as_javas_text_format() {
        let schema = "syntax = \"proto3\";\n\nmessage ConnectDefault1 {\n  int32 K = 1;\n  \
                      repeated ConnectDefault2 H = 2;\n  double D = 3;\n\n  message \
                      ConnectDefault2 {\n    string KEY = 1;\n    bytes VALUE = 2;\n  }\n}\n";
        // K = 0 (left out), H = [{KEY "abc", VALUE "!"}], D = 1e10
        let mut bytes = vec![0x12, 8, 0x0a, 3, b'a', b'b', b'c', 0x12, 1, b'!', 0x19];
        bytes.extend(1e10f64.to_le_bytes());
        let elements = vec![
            json!({"header": {"protoSchema": schema}}),
            json!({"row": {"protobufBytes": BASE64.encode(&bytes)}}),
        ];
        let rows = rows_as_text(elements).expect("decoded");
        assert_eq!(
            rows[1],
            json!({"row": "H {\n  KEY: \"abc\"\n  VALUE: \"!\"\n}\nD: 1.0E10\n"})
        );
        assert_eq!(java_double(37.7877), "37.7877");
        assert_eq!(java_double(-122.0), "-122.0");
        assert_eq!(quoted(&[0xff, b'"']), "\"\\377\\\"\"");
    }
}
