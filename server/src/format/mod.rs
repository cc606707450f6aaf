//! Serialization formats for record keys and values: `KAFKA`, `JSON`, `DELIMITED`, `NONE`.
//!
//! A [`RowDecoder`] turns the payloads of many records into Arrow columns, appending exactly
//! one entry per record to every column, so a bad record leaves nulls and an error instead
//! of misaligning anything; [`encode`] writes one row of Arrow columns back to bytes.
//! Schema Registry formats (`AVRO`, `PROTOBUF`, `JSON_SR`) are not built yet; `protobuf`
//! writes pull-query answers as Protobuf messages for the REST API.

pub mod appender;
pub mod delimited;
mod flat_json;
pub mod json;
pub mod kafka;
pub mod protobuf;

use std::fmt;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array};

use crate::types::SqlType;
use appender::Appender;

/// A serialization format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Kafka,
    Json,
    Delimited,
    /// No bytes at all: a key format for sources without key columns.
    None,
}

impl Format {
    /// Reads a format name as written in `WITH (…)`, in any case.
    pub fn parse(name: &str) -> Result<Format, String> {
        match name.to_ascii_uppercase().as_str() {
            "KAFKA" => Ok(Format::Kafka),
            "JSON" => Ok(Format::Json),
            "DELIMITED" => Ok(Format::Delimited),
            "NONE" => Ok(Format::None),
            "AVRO" | "PROTOBUF" | "PROTOBUF_NOSR" | "JSON_SR" => Err(format!(
                "The {} format is not supported yet: it needs a Schema Registry. Use JSON, \
                 DELIMITED or KAFKA",
                name.to_ascii_uppercase()
            )),
            _ => Err(format!("Unknown format: {name}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Kafka => "KAFKA",
            Format::Json => "JSON",
            Format::Delimited => "DELIMITED",
            Format::None => "NONE",
        }
    }

    /// Why this format cannot carry these columns, if it cannot.
    pub fn check_columns(self, columns: &[(String, SqlType)]) -> Result<(), String> {
        self.check(columns, "")
    }

    /// [`Format::check_columns`] for key columns (named `` `K` INTEGER KEY `` in the reason).
    pub fn check_key_columns(self, columns: &[(String, SqlType)]) -> Result<(), String> {
        self.check(columns, " KEY")
    }

    fn check(self, columns: &[(String, SqlType)], kind: &str) -> Result<(), String> {
        let names = |columns: &[(String, SqlType)]| names(columns, kind);
        match self {
            Format::Kafka if columns.len() > 1 => Err(format!(
                "The 'KAFKA' format only supports a single field. Got: [{}]",
                names(columns)
            )),
            Format::Kafka => match columns.iter().find(|(_, ty)| !kafka::supports(ty)) {
                Some((name, ty)) => Err(format!(
                    "The 'KAFKA' format does not support type '{}', column: `{name}`",
                    base_type_name(ty)
                )),
                None => Ok(()),
            },
            Format::Delimited => match columns.iter().find(|(_, ty)| !delimited::supports(ty)) {
                Some((name, ty)) => Err(format!(
                    "The 'DELIMITED' format does not support type '{}', column: `{name}`",
                    base_type_name(ty)
                )),
                None => Ok(()),
            },
            Format::Json if columns.iter().any(|(_, ty)| !json::supports(ty)) => {
                Err("JSON only supports MAP types with STRING keys".into())
            }
            Format::None if !columns.is_empty() => Err(format!(
                "The 'NONE' format can only be used when no columns are defined. Got: [{}]",
                names(columns)
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn names(columns: &[(String, SqlType)], kind: &str) -> String {
    columns
        .iter()
        .map(|(name, ty)| format!("`{name}` {ty}{kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The type's name without parameters: `DECIMAL`, `ARRAY`, `STRUCT`.
fn base_type_name(ty: &SqlType) -> String {
    let full = ty.to_string();
    full.split(['(', '<']).next().unwrap_or(&full).to_string()
}

/// How one side (key or value) of a source is serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatSpec {
    pub format: Format,
    /// `VALUE_DELIMITER` / `KEY_DELIMITER` for DELIMITED.
    pub delimiter: char,
    /// Whether a single column is written inside an object (`{"V": 1}`) or bare (`1`).
    pub wrap_single: bool,
}

impl FormatSpec {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            delimiter: ',',
            wrap_single: true,
        }
    }

    pub fn with_delimiter(mut self, delimiter: char) -> Self {
        self.delimiter = delimiter;
        self
    }

    pub fn with_wrap_single(mut self, wrap_single: bool) -> Self {
        self.wrap_single = wrap_single;
        self
    }

    /// Reads `TAB`, `SPACE` or a single character, as `VALUE_DELIMITER` accepts.
    pub fn parse_delimiter(text: &str) -> Result<char, String> {
        match text {
            "TAB" | "tab" => Ok('\t'),
            "SPACE" | "space" => Ok(' '),
            _ => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Ok(c),
                    _ => Err(format!(
                        "Invalid delimiter value: '{text}'. Delimiter must be a single \
                         character or TAB, SPACE"
                    )),
                }
            }
        }
    }

    /// Whether this side's payloads wrap their columns in an object.
    fn wraps(&self, columns: usize) -> bool {
        columns > 1 || self.wrap_single
    }
}

/// Decodes payloads into columns.
#[derive(Debug)]
pub struct RowDecoder {
    spec: FormatSpec,
    columns: Vec<(String, SqlType)>,
    appenders: Vec<Appender>,
    /// JSON columns left NULL without decoding (no query reads them).
    skipped: Vec<bool>,
    /// No two column names differ only by case.
    distinct_names: bool,
    /// The fields of the JSON record being decoded, when it is a flat object, and which
    /// columns its fields filled (both reused from record to record).
    flat_fields: Vec<flat_json::FlatField>,
    seen_columns: Vec<bool>,
}

impl RowDecoder {
    pub fn new(spec: FormatSpec, columns: Vec<(String, SqlType)>, capacity: usize) -> Self {
        let appenders = columns
            .iter()
            .map(|(_, ty)| Appender::new(ty, capacity))
            .collect();
        let distinct_names = columns.iter().enumerate().all(|(i, (name, _))| {
            columns[..i]
                .iter()
                .all(|(other, _)| !other.eq_ignore_ascii_case(name))
        });
        Self {
            skipped: vec![false; columns.len()],
            distinct_names,
            flat_fields: Vec::new(),
            seen_columns: Vec::new(),
            spec,
            columns,
            appenders,
        }
    }

    /// Leaves the JSON columns of `skipped` NULL without decoding them: only for columns
    /// that take any JSON value (STRING), so that skipping them loses no error.
    pub fn skipping(mut self, skipped: Vec<bool>) -> Self {
        if skipped.len() == self.columns.len() {
            self.skipped = skipped;
        }
        self
    }

    /// Decodes one payload (`None`: a null record) into one entry per column. On error
    /// every column still gets an entry and the message says what was wrong.
    pub fn decode(&mut self, payload: Option<&[u8]>) -> Result<(), String> {
        if self.columns.is_empty() {
            return Ok(());
        }
        let Some(payload) = payload else {
            self.append_nulls(0);
            return Ok(());
        };
        match self.spec.format {
            Format::None => Ok(()),
            Format::Kafka => kafka::append_kafka(&mut self.appenders[0], payload),
            Format::Json => self.decode_json(payload),
            Format::Delimited => self.decode_delimited(payload),
        }
    }

    fn append_nulls(&mut self, from: usize) {
        for appender in &mut self.appenders[from..] {
            appender.append_null();
        }
    }

    fn decode_json(&mut self, payload: &[u8]) -> Result<(), String> {
        let Ok(text) = std::str::from_utf8(payload) else {
            self.append_nulls(0);
            return Err("Failed to deserialize JSON: the record is not UTF-8".into());
        };
        if !self.spec.wraps(self.columns.len()) {
            let (_, ty) = &self.columns[0];
            return json::append_raw_json(&mut self.appenders[0], ty, text);
        }
        if text.trim_start().starts_with('{') {
            return self.decode_json_object(text);
        }
        self.append_nulls(0);
        match serde_json::from_str::<serde_json::Value>(text) {
            Err(error) => Err(format!("Failed to deserialize JSON: {error}")),
            Ok(serde_json::Value::Null) => Ok(()),
            Ok(other) => Err(format!(
                "Can't convert type. sourceType: {}, requiredType: STRUCT, value: {other}",
                if other.is_array() {
                    "ARRAY"
                } else {
                    "a primitive"
                }
            )),
        }
    }

    /// Decodes a record that is a JSON object into the columns: a flat one with the
    /// scanner of [`flat_json`], any other with `serde_json`; columns no field filled are
    /// NULL.
    fn decode_json_object(&mut self, text: &str) -> Result<(), String> {
        self.seen_columns.clear();
        self.seen_columns.resize(self.columns.len(), false);
        let decoded = match flat_json::scan_flat_object(text.as_bytes(), &mut self.flat_fields) {
            true => self.decode_flat_object(text),
            false => self.decode_nested_object(text),
        };
        for (appender, seen) in self.appenders.iter_mut().zip(&self.seen_columns) {
            if !seen {
                appender.append_null();
            }
        }
        decoded
    }

    /// Decodes the fields the scanner found in `text`, each into the column it names (the
    /// first of duplicate fields wins, as with `serde_json`).
    fn decode_flat_object(&mut self, text: &str) -> Result<(), String> {
        let seen = &mut self.seen_columns;
        let mut first_error = None;
        let mut expected = 0;
        for (name, value) in &self.flat_fields {
            let field = &text[name.clone()];
            let Some(i) = column_of_field(&self.columns, expected, self.distinct_names, field)
            else {
                continue;
            };
            expected = i + 1;
            if seen[i] || self.skipped[i] {
                continue;
            }
            seen[i] = true;
            let (appender, ty) = (&mut self.appenders[i], &self.columns[i].1);
            if let Err(error) = json::append_raw_json(appender, ty, &text[value.clone()]) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Decodes any JSON object with `serde_json`. (Parsing the checked text, not the
    /// bytes: serde_json then skips its own per-string UTF-8 checks.)
    fn decode_nested_object(&mut self, text: &str) -> Result<(), String> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let mut visitor = RowVisitor {
            columns: &self.columns,
            appenders: &mut self.appenders,
            skipped: &self.skipped,
            distinct_names: self.distinct_names,
            seen: &mut self.seen_columns,
            first_error: None,
        };
        let parsed = serde::Deserializer::deserialize_map(&mut deserializer, &mut visitor)
            .and_then(|()| deserializer.end());
        let first_error = visitor.first_error.take();
        if let Err(error) = parsed {
            // Columns appended before the syntax error keep their values; the record is
            // reported (and dropped by the caller).
            return Err(format!("Failed to deserialize JSON: {error}"));
        }
        first_error.map_or(Ok(()), Err)
    }

    fn decode_delimited(&mut self, payload: &[u8]) -> Result<(), String> {
        let line = String::from_utf8_lossy(payload);
        let fields = match delimited::split_fields(&line, self.spec.delimiter) {
            Ok(fields) => fields,
            Err(error) => {
                self.append_nulls(0);
                return Err(format!("Failed to parse DELIMITED record: {error}"));
            }
        };
        if fields.len() != self.columns.len() {
            self.append_nulls(0);
            return Err(format!(
                "Unexpected field count, csvFields:{} schemaFields:{}",
                fields.len(),
                self.columns.len()
            ));
        }
        let mut first_error = None;
        for (((_, ty), appender), field) in
            self.columns.iter().zip(&mut self.appenders).zip(&fields)
        {
            if let Err(error) = delimited::append_field(appender, ty, field) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The columns decoded so far; the decoder starts again empty.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.appenders.iter_mut().map(Appender::finish).collect()
    }
}

/// Reads a JSON object's fields straight into the columns they name (case-insensitively),
/// each field's value as a raw slice of the record.
struct RowVisitor<'a> {
    columns: &'a [(String, SqlType)],
    appenders: &'a mut [Appender],
    skipped: &'a [bool],
    distinct_names: bool,
    seen: &'a mut [bool],
    first_error: Option<String>,
}

/// A JSON field name, read as the index of the column it names (an exact match, else a
/// case-insensitive one), without copying it. Records of a topic mostly list their fields
/// in one order: the column after the previous field's is tried first.
struct ColumnOfField<'a> {
    columns: &'a [(String, SqlType)],
    expected: usize,
    /// No two columns' names differ only by case (else the first case-insensitive match
    /// wins, wherever the expected column is).
    distinct_names: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for ColumnOfField<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, field: D) -> Result<Option<usize>, D::Error> {
        field.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ColumnOfField<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, field: &str) -> Result<Option<usize>, E> {
        Ok(column_of_field(
            self.columns,
            self.expected,
            self.distinct_names,
            field,
        ))
    }
}

/// The column a JSON field names: an exact match, else a case-insensitive one. The
/// `expected` column is tried first when it matches exactly, or in any case when no two
/// columns differ only by case (`distinct_names`: no other could then match exactly).
fn column_of_field(
    columns: &[(String, SqlType)],
    expected: usize,
    distinct_names: bool,
    field: &str,
) -> Option<usize> {
    let matches_expected = |name: &str| match distinct_names {
        true => name.eq_ignore_ascii_case(field),
        false => name == field,
    };
    if let Some((name, _)) = columns.get(expected)
        && matches_expected(name)
    {
        return Some(expected);
    }
    let exact = columns.iter().position(|(name, _)| name.as_str() == field);
    exact.or_else(|| {
        columns
            .iter()
            .position(|(name, _)| name.eq_ignore_ascii_case(field))
    })
}

impl<'de> serde::de::Visitor<'de> for &mut RowVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut expected = 0;
        while let Some(index) = map.next_key_seed(ColumnOfField {
            columns: self.columns,
            expected,
            distinct_names: self.distinct_names,
        })? {
            expected = index.map_or(expected, |i| i + 1);
            match index {
                Some(i) if !self.seen[i] && !self.skipped[i] => {
                    let raw: &serde_json::value::RawValue = map.next_value()?;
                    self.seen[i] = true;
                    if let Err(error) =
                        json::append_raw_json(&mut self.appenders[i], &self.columns[i].1, raw.get())
                    {
                        self.first_error.get_or_insert(error);
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Encodes one row of `arrays` (one per column, in `columns` order). `None` is a null
/// payload: no columns, or a single unwrapped column whose value is null.
pub fn encode(
    spec: &FormatSpec,
    columns: &[(String, SqlType)],
    arrays: &[ArrayRef],
    row: usize,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(
        spec,
        columns,
        arrays,
        &[],
        row,
        &mut out,
        &mut String::new(),
    )
    .then_some(out)
}

/// Per column, the scales of its own each DECIMAL value keeps, for the columns a plan's
/// output carries them for (see `plan::value_scale_column`); empty when it carries none.
pub fn own_scales<'a, 'n>(
    output: &'a arrow::record_batch::RecordBatch,
    names: impl IntoIterator<Item = &'n str>,
) -> Vec<Option<&'a Int8Array>> {
    let suffix = crate::plan::VALUE_SCALE_SUFFIX;
    let fields = output.schema_ref().fields();
    if !fields.iter().any(|f| f.name().ends_with(suffix)) {
        return Vec::new();
    }
    names
        .into_iter()
        .map(|name| {
            output
                .column_by_name(&crate::plan::value_scale_column(name))
                .and_then(|scales| scales.as_primitive_opt::<arrow::datatypes::Int8Type>())
        })
        .collect()
}

/// A DECIMAL column's scale and the scale of its own the value at `row` keeps, when it
/// keeps one ([`own_scales`]).
fn own_scale_at(
    array: &ArrayRef,
    ty: &SqlType,
    row: usize,
    own_scales: Option<&Int8Array>,
) -> Option<(u8, u8)> {
    let (SqlType::Decimal { scale, .. }, Some(own_scales)) = (ty, own_scales) else {
        return None;
    };
    if array.is_null(row) || own_scales.is_null(row) {
        return None;
    }
    Some((*scale, u8::try_from(own_scales.value(row)).ok()?))
}

/// Appends one row's payload to `out` (for many rows sharing one buffer); returns false for
/// a null payload. `scratch` is reused between calls. `own_scales` are the columns' DECIMAL
/// values' own scales, where they keep some ([`own_scales`]).
pub fn encode_into(
    spec: &FormatSpec,
    columns: &[(String, SqlType)],
    arrays: &[ArrayRef],
    own_scales: &[Option<&Int8Array>],
    row: usize,
    out: &mut Vec<u8>,
    scratch: &mut String,
) -> bool {
    let own = |column: usize| own_scales.get(column).copied().flatten();
    if columns.is_empty() {
        return false;
    }
    match spec.format {
        Format::None => false,
        Format::Kafka => match kafka::encode_kafka(&arrays[0], row) {
            Some(bytes) => {
                out.extend_from_slice(&bytes);
                true
            }
            None => false,
        },
        Format::Json => {
            scratch.clear();
            let json = scratch;
            if spec.wraps(columns.len()) {
                json.push('{');
                for (i, ((name, ty), array)) in columns.iter().zip(arrays).enumerate() {
                    if i > 0 {
                        json.push(',');
                    }
                    json::push_string(json, name);
                    json.push(':');
                    json::write_json_column(json, array, ty, row, own(i));
                }
                json.push('}');
            } else {
                if arrays[0].is_null(row) {
                    return false;
                }
                json::write_json_column(json, &arrays[0], &columns[0].1, row, own(0));
            }
            out.extend_from_slice(json.as_bytes());
            true
        }
        Format::Delimited => {
            let fields: Vec<Option<String>> = columns
                .iter()
                .zip(arrays)
                .enumerate()
                .map(|(i, ((_, ty), array))| delimited::column_text(array, ty, row, own(i)))
                .collect();
            if columns.len() == 1 && fields[0].is_none() {
                return false;
            }
            out.extend_from_slice(delimited::join_fields(&fields, spec.delimiter).as_bytes());
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    fn columns(list: &[(&str, SqlType)]) -> Vec<(String, SqlType)> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    }

    fn decode_all(
        spec: &FormatSpec,
        cols: &[(String, SqlType)],
        payloads: &[Option<&[u8]>],
    ) -> (Vec<ArrayRef>, Vec<Result<(), String>>) {
        let mut decoder = RowDecoder::new(spec.clone(), cols.to_vec(), payloads.len());
        let results = payloads.iter().map(|p| decoder.decode(*p)).collect();
        (decoder.finish(), results)
    }

    fn encode_all(
        spec: &FormatSpec,
        cols: &[(String, SqlType)],
        arrays: &[ArrayRef],
    ) -> Vec<Option<String>> {
        (0..arrays[0].len())
            .map(|row| {
                encode(spec, cols, arrays, row).map(|b| String::from_utf8(b).expect("UTF-8"))
            })
            .collect()
    }

    #[test]
    fn json_values_are_matched_case_insensitively_and_written_as_stored() {
        let spec = FormatSpec::new(Format::Json);
        let cols = columns(&[("ID", SqlType::BigInt), ("NAME", SqlType::String)]);
        let (arrays, results) = decode_all(
            &spec,
            &cols,
            &[
                Some(br#"{"id": 1, "Name": "a", "extra": true}"#),
                Some(br#"{"ID": 2}"#),
                Some(b"not json"),
                Some(br#"{"ID": "x", "NAME": "c"}"#),
                None,
            ],
        );
        assert!(results[0].is_ok() && results[1].is_ok() && results[4].is_ok());
        assert!(
            results[2]
                .as_ref()
                .expect_err("bad JSON")
                .contains("Failed to deserialize JSON")
        );
        assert!(results[3].is_err());
        assert!(arrays.iter().all(|a| a.len() == 5), "one entry per record");
        assert_eq!(
            encode_all(&spec, &cols, &arrays)[..2],
            [
                Some(r#"{"ID":1,"NAME":"a"}"#.to_string()),
                Some(r#"{"ID":2,"NAME":null}"#.to_string())
            ]
        );
    }

    #[test]
    fn single_values_wrap_or_not() {
        let cols = columns(&[("V", SqlType::Integer)]);
        let unwrapped = FormatSpec::new(Format::Json).with_wrap_single(false);
        let (arrays, results) = decode_all(&unwrapped, &cols, &[Some(b"10"), Some(b"null")]);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(
            encode_all(&FormatSpec::new(Format::Json), &cols, &arrays),
            [
                Some(r#"{"V":10}"#.to_string()),
                Some(r#"{"V":null}"#.to_string())
            ]
        );
        assert_eq!(
            encode_all(&unwrapped, &cols, &arrays),
            [Some("10".to_string()), None]
        );
    }

    #[test]
    fn flat_json_records_decode_as_nested_ones_do() {
        let spec = FormatSpec::new(Format::Json);
        let cols = columns(&[
            ("ID", SqlType::BigInt),
            ("NAME", SqlType::String),
            (
                "PRICE",
                SqlType::Decimal {
                    precision: 6,
                    scale: 2,
                },
            ),
            ("TAGS", SqlType::Array(Box::new(SqlType::String))),
        ]);
        // Each flat record (the scanner's) beside the same record with a nested value
        // (serde_json's): the flat columns decode alike.
        let records: [&[u8]; 6] = [
            br#"{"id": 1, "name": "a", "price": 1.5}"#,
            br#"{"ID":2,"Name":"b","price":"2.25","id":99}"#,
            br#"{"price": 3, "other": true}"#,
            br#"{"id": "x", "name": 5}"#,
            br#"{"name": "tab\tescaped", "id": 6}"#,
            br#"{"id": 7,}"#,
        ];
        let with_tags: Vec<Vec<u8>> = records
            .iter()
            .map(|r| {
                let text = String::from_utf8_lossy(r);
                text.replacen('{', r#"{"tags": ["t"], "#, 1).into_bytes()
            })
            .collect();
        let flat: Vec<Option<&[u8]>> = records.iter().map(|r| Some(*r)).collect();
        let nested: Vec<Option<&[u8]>> = with_tags.iter().map(|r| Some(r.as_slice())).collect();
        let (flat_arrays, flat_results) = decode_all(&spec, &cols, &flat);
        let (nested_arrays, nested_results) = decode_all(&spec, &cols, &nested);
        let flat_columns = &cols[..3];
        assert_eq!(
            encode_all(&spec, flat_columns, &flat_arrays[..3]),
            encode_all(&spec, flat_columns, &nested_arrays[..3])
        );
        assert_eq!(
            encode_all(&spec, flat_columns, &flat_arrays[..3])[..3],
            [
                Some(r#"{"ID":1,"NAME":"a","PRICE":1.50}"#.to_string()),
                Some(r#"{"ID":2,"NAME":"b","PRICE":2.25}"#.to_string()),
                Some(r#"{"ID":null,"NAME":null,"PRICE":3.00}"#.to_string()),
            ]
        );
        assert_eq!(
            encode_all(&spec, flat_columns, &flat_arrays[..3])[4],
            Some(r#"{"ID":6,"NAME":"tab\tescaped","PRICE":null}"#.to_string())
        );
        for (flat, nested) in flat_results.iter().zip(&nested_results) {
            assert_eq!(flat.is_ok(), nested.is_ok(), "{flat:?} / {nested:?}");
        }
        assert!(flat_results[3].is_err(), "a string where a BIGINT goes");
        assert!(
            flat_results[5]
                .as_ref()
                .is_err_and(|e| e.starts_with("Failed to deserialize JSON")),
            "{:?}",
            flat_results[5]
        );
    }

    #[test]
    fn delimited_rows_check_their_field_count() {
        let spec = FormatSpec::new(Format::Delimited);
        let cols = columns(&[
            ("ID", SqlType::Integer),
            ("NAME", SqlType::String),
            (
                "PRICE",
                SqlType::Decimal {
                    precision: 6,
                    scale: 2,
                },
            ),
        ]);
        let (arrays, results) = decode_all(
            &spec,
            &cols,
            &[Some(b"1,\"a,b\",12.5"), Some(b"2,,"), Some(b"3,x")],
        );
        assert!(results[0].is_ok() && results[1].is_ok());
        assert_eq!(
            results[2].as_ref().expect_err("short row"),
            "Unexpected field count, csvFields:2 schemaFields:3"
        );
        assert_eq!(
            encode_all(&spec, &cols, &arrays)[..2],
            [Some("1,\"a,b\",12.50".to_string()), Some("2,,".to_string())]
        );
        let tabs = FormatSpec::new(Format::Delimited)
            .with_delimiter(FormatSpec::parse_delimiter("TAB").expect("TAB"));
        let (arrays, _) = decode_all(&tabs, &cols, &[Some(b"4\tz\t1")]);
        assert_eq!(
            encode_all(&tabs, &cols, &arrays),
            [Some("4\tz\t1.00".to_string())]
        );
    }

    #[test]
    fn kafka_primitives_are_big_endian_and_sized() {
        let spec = FormatSpec::new(Format::Kafka);
        let cols = columns(&[("K", SqlType::Integer)]);
        let (arrays, results) = decode_all(
            &spec,
            &cols,
            &[Some(&7i32.to_be_bytes()), Some(b"12345"), None],
        );
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(
            results[1].as_ref().expect_err("5 bytes"),
            "Size of data received by IntegerDeserializer is not 4, it is 5"
        );
        assert_eq!(
            encode(&spec, &cols, &arrays, 0),
            Some(7i32.to_be_bytes().to_vec())
        );
        assert_eq!(encode(&spec, &cols, &arrays, 2), None);
    }

    #[test]
    fn formats_refuse_columns_they_cannot_carry() {
        assert!(
            Format::parse("avro")
                .expect_err("no SR")
                .contains("needs a Schema Registry")
        );
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        let two = columns(&[("A", SqlType::Integer), ("B", SqlType::Integer)]);
        assert!(Format::Kafka.check_columns(&two).is_err());
        let nested = columns(&[("A", SqlType::Array(Box::new(SqlType::Integer)))]);
        assert!(Format::Delimited.check_columns(&nested).is_err());
        assert!(Format::None.check_columns(&nested).is_err());
        assert!(Format::Json.check_columns(&nested).is_ok());
        let map = |key: SqlType| {
            SqlType::Array(Box::new(SqlType::Map(
                Box::new(key),
                Box::new(SqlType::Double),
            )))
        };
        assert!(
            Format::Json
                .check_columns(&columns(&[("M", map(SqlType::String))]))
                .is_ok()
        );
        assert_eq!(
            Format::Json.check_columns(&columns(&[("M", map(SqlType::Integer))])),
            Err("JSON only supports MAP types with STRING keys".to_string())
        );
    }
}
