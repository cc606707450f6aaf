//! ksqlDB's functions over JSON text: `EXTRACTJSONFIELD`, `IS_JSON_STRING`,
//! `JSON_ARRAY_CONTAINS`, `JSON_ARRAY_LENGTH`, `JSON_CONCAT`, `JSON_ITEMS`, `JSON_KEYS`,
//! `JSON_RECORDS`, and `TO_JSON_STRING`, which writes any value as JSON.
//!
//! Text that is not JSON gives NULL (or `false`), never an error: these functions are how
//! queries find out whether a text is JSON. Numbers keep the digits they were written with.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListBuilder, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;
use serde_json::Value;

use super::strings::string_map_builder;
use super::udf::{KsqlFunction, integers, is_string, string_list, strings};
use crate::format::json::{Times, write_json_value};
use crate::types::SqlType;

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf(
            "extractjsonfield",
            |args| match args {
                [json, path] if is_string(json) && is_string(path) => Some(DataType::Utf8),
                _ => None,
            },
            extract_json_field,
        ),
        KsqlFunction::udf(
            "is_json_string",
            |args| one_string(args, DataType::Boolean),
            is_json_string,
        ),
        KsqlFunction::udf(
            "json_array_contains",
            json_array_contains_type,
            json_array_contains,
        ),
        KsqlFunction::udf(
            "json_array_length",
            |args| one_string(args, DataType::Int32),
            json_array_length,
        ),
        KsqlFunction::udf("json_concat", json_concat_type, json_concat),
        KsqlFunction::udf(
            "json_items",
            |args| one_string(args, string_list()),
            json_items,
        ),
        KsqlFunction::udf(
            "json_keys",
            |args| one_string(args, string_list()),
            json_keys,
        ),
        KsqlFunction::udf(
            "json_records",
            |args| {
                one_string(
                    args,
                    SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::String)).to_arrow(),
                )
            },
            json_records,
        ),
        KsqlFunction::udf("to_json_string", to_json_string_type, to_json_string),
    ]
}

fn one_string(args: &[DataType], result: DataType) -> Option<DataType> {
    match args {
        [t] if is_string(t) => Some(result),
        _ => None,
    }
}

/// A text as JSON, or `None` when it is not JSON.
fn parse(text: Option<&str>) -> Option<Value> {
    serde_json::from_str(text?).ok()
}

/// `EXTRACTJSONFIELD(json, '$.path')`: the value at a JSON path (`$.a.b`, `$.a[0]`,
/// `$['a']`); strings come back unquoted, other values as JSON text; NULL when the text is
/// not JSON or the path leads nowhere. The document is read once, front to back, skipping
/// what is off the path: only the value found is built.
fn extract_json_field(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let documents = strings(&args[0])?;
    let paths = strings(&args[1])?;
    let mut last_path: Option<(&str, Option<Vec<PathStep>>)> = None;
    let mut out = StringBuilder::with_capacity(documents.len(), documents.len() * 8);
    for (document, path) in documents.iter().zip(paths.iter()) {
        let (Some(document), Some(path)) = (document, path) else {
            out.append_null();
            continue;
        };
        let steps = match &last_path {
            Some((text, steps)) if *text == path => steps,
            _ => &last_path.insert((path, PathStep::parse(path))).1,
        };
        let found = steps.as_deref().and_then(|steps| {
            let mut reader = serde_json::Deserializer::from_str(document);
            serde::de::DeserializeSeed::deserialize(AtPath(steps), &mut reader)
                .ok()
                .flatten()
        });
        match found {
            None | Some(Value::Null) => out.append_null(),
            Some(Value::String(text)) => out.append_value(text),
            Some(other) => out.append_value(other.to_string()),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// One step of a JSON path: a field of an object, or an item of an array.
#[derive(Debug, PartialEq)]
enum PathStep {
    Field(String),
    Item(usize),
}

impl PathStep {
    /// `$.a.b`, `$.a[0]`, `$['a']`; `None` for anything else.
    fn parse(path: &str) -> Option<Vec<PathStep>> {
        let mut rest = path.trim().strip_prefix('$')?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                steps.push(PathStep::Field(after[..end].to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']')?;
                let index = after[..end].trim();
                steps.push(match index.strip_prefix(['\'', '"']) {
                    Some(quoted) => PathStep::Field(quoted.trim_end_matches(['\'', '"']).into()),
                    None => PathStep::Item(index.parse().ok()?),
                });
                rest = &after[end + 1..];
            } else {
                return None;
            }
        }
        Some(steps)
    }
}

/// Reads a JSON value and answers the value at the end of its steps (`None` when the path
/// leads nowhere), skipping everything else without building it. What follows the value
/// is ignored, as Jackson ignores it.
struct AtPath<'p>(&'p [PathStep]);

impl<'de> serde::de::DeserializeSeed<'de> for AtPath<'_> {
    type Value = Option<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        match self.0.split_first() {
            None => serde::Deserialize::deserialize(reader).map(Some),
            Some((step, rest)) => reader.deserialize_any(Step { step, rest }),
        }
    }
}

/// One step of [`AtPath`] over the value it reaches.
struct Step<'p> {
    step: &'p PathStep,
    rest: &'p [PathStep],
}

/// A key of an object, answering whether it is the one wanted.
struct KeyIs<'p>(&'p str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<bool, D::Error> {
        reader.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

impl<'de> serde::de::Visitor<'de> for Step<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::IgnoredAny;
        let wanted = match self.step {
            PathStep::Field(name) => Some(name.as_str()),
            PathStep::Item(_) => None,
        };
        let mut found = None;
        // Every entry is read (the reader insists); a repeated key's last value counts.
        while let Some(matches) = map.next_key_seed(KeyIs(wanted.unwrap_or_default()))? {
            if matches && wanted.is_some() {
                found = map.next_value_seed(AtPath(self.rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::IgnoredAny;
        let wanted = match self.step {
            PathStep::Item(index) => Some(*index),
            PathStep::Field(_) => None,
        };
        let mut found = None;
        let mut index = 0;
        loop {
            if Some(index) == wanted {
                match seq.next_element_seed(AtPath(self.rest))? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }

    // A scalar has no fields or items: the path leads nowhere.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `IS_JSON_STRING(text)`: whether the text is one JSON value (NULL is not).
fn is_json_string(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let out: BooleanArray = strings(&args[0])?
        .iter()
        .map(|text| Some(parse(text).is_some()))
        .collect();
    Ok(Arc::new(out))
}

fn json_array_contains_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [json, value]
            if is_string(json)
                && (is_string(value)
                    || matches!(
                        value,
                        DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Boolean
                    )) =>
        {
            Some(DataType::Boolean)
        }
        _ => None,
    }
}

/// Whether a JSON item equals the searched value of a row.
type ItemMatches = dyn Fn(&Value, usize) -> bool;

/// `JSON_ARRAY_CONTAINS(json, value)`: whether the JSON array holds the value — a string,
/// an integer (INT, BIGINT), a floating-point number (DOUBLE) or a boolean of the same kind,
/// or JSON `null` for NULL. `false` when the text is not a JSON array.
fn json_array_contains(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let documents = strings(&args[0])?;
    let wanted = &args[1];
    let matches: Box<ItemMatches> = match wanted.data_type() {
        DataType::Int32 | DataType::Int64 => {
            let numbers = integers(wanted)?;
            Box::new(move |item, row| {
                item.is_i64() && item.as_i64() == Some(numbers.value(row))
                    || item.is_u64() && item.as_u64() == u64::try_from(numbers.value(row)).ok()
            })
        }
        DataType::Float64 => {
            let numbers = wanted.as_primitive::<Float64Type>().clone();
            Box::new(move |item, row| item.is_f64() && item.as_f64() == Some(numbers.value(row)))
        }
        DataType::Boolean => {
            let booleans = wanted.as_boolean().clone();
            Box::new(move |item, row| item.as_bool() == Some(booleans.value(row)))
        }
        _ => {
            let texts = strings(wanted)?;
            Box::new(move |item, row| item.as_str() == Some(texts.value(row)))
        }
    };
    let out: BooleanArray = (0..documents.len())
        .map(|row| {
            let Some(Value::Array(items)) =
                parse(documents.is_valid(row).then(|| documents.value(row)))
            else {
                return Some(false);
            };
            Some(if wanted.is_null(row) {
                items.iter().any(Value::is_null)
            } else {
                items.iter().any(|item| matches(item, row))
            })
        })
        .collect();
    Ok(Arc::new(out))
}

/// `JSON_ARRAY_LENGTH(json)`: the number of items of a JSON array; NULL for anything else.
fn json_array_length(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let out: Int32Array = strings(&args[0])?
        .iter()
        .map(|text| match parse(text)? {
            Value::Array(items) => Some(items.len() as i32),
            _ => None,
        })
        .collect();
    Ok(Arc::new(out))
}

fn json_concat_type(args: &[DataType]) -> Option<DataType> {
    (!args.is_empty() && args.iter().all(is_string)).then_some(DataType::Utf8)
}

/// `JSON_CONCAT(json, json, …)`: objects merged (a later key replaces an earlier one);
/// otherwise one array of every item, arrays contributing their items and other values
/// themselves. NULL when any text is not JSON.
fn json_concat(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let texts = args.iter().map(strings).collect::<Result<Vec<_>, _>>()?;
    let out: StringArray = (0..args[0].len())
        .map(|row| {
            let values = texts
                .iter()
                .map(|t| parse(t.is_valid(row).then(|| t.value(row))))
                .collect::<Option<Vec<Value>>>()?;
            let concatenated = if values.iter().all(Value::is_object) {
                let mut merged = serde_json::Map::new();
                for value in values {
                    if let Value::Object(fields) = value {
                        merged.extend(fields);
                    }
                }
                Value::Object(merged)
            } else {
                let mut items = Vec::new();
                for value in values {
                    match value {
                        Value::Array(inner) => items.extend(inner),
                        other => items.push(other),
                    }
                }
                Value::Array(items)
            };
            Some(concatenated.to_string())
        })
        .collect();
    Ok(Arc::new(out))
}

/// `JSON_ITEMS(json)`: the items of a JSON array, each as JSON text.
fn json_items(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    list_of_texts(args, |value| match value {
        Value::Array(items) => Some(items.iter().map(Value::to_string).collect()),
        _ => None,
    })
}

/// `JSON_KEYS(json)`: the keys of a JSON object, in order.
fn json_keys(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    list_of_texts(args, |value| match value {
        Value::Object(fields) => Some(fields.keys().cloned().collect()),
        _ => None,
    })
}

fn list_of_texts(
    args: &[ArrayRef],
    items: impl Fn(Value) -> Option<Vec<String>>,
) -> Result<ArrayRef, DataFusionError> {
    let mut out = ListBuilder::new(StringBuilder::new());
    for text in strings(&args[0])?.iter() {
        match parse(text).and_then(&items) {
            Some(items) => {
                for item in items {
                    out.values().append_value(item);
                }
                out.append(true);
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `JSON_RECORDS(json)`: the fields of a JSON object, each value as JSON text.
fn json_records(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let mut out = string_map_builder();
    for text in strings(&args[0])?.iter() {
        match parse(text) {
            Some(Value::Object(fields)) => {
                for (key, value) in fields {
                    out.keys().append_value(key);
                    out.values().append_value(value.to_string());
                }
                out.append(true)?;
            }
            _ => out.append(false)?,
        }
    }
    Ok(Arc::new(out.finish()))
}

fn to_json_string_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [DataType::Null] => Some(DataType::Utf8),
        [t] => SqlType::from_arrow(t).map(|_| DataType::Utf8),
        _ => None,
    }
}

/// `TO_JSON_STRING(value)`: any value as JSON text (`null` for NULL); dates and times are
/// ISO-8601 texts.
fn to_json_string(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let input = &args[0];
    let rows = input.len();
    let Some(ty) = SqlType::from_arrow(input.data_type()) else {
        return Ok(Arc::new(StringArray::from(vec!["null"; rows])));
    };
    // The writer reads ksqlDB's own Arrow layouts (plain UTF-8, `item` lists …).
    let input = arrow::compute::cast(input, &ty.to_arrow())?;
    let mut out = StringBuilder::with_capacity(rows, rows * 8);
    let mut buffer = String::new();
    for row in 0..rows {
        buffer.clear();
        write_json_value(&mut buffer, &input, &ty, row, Times::AsText);
        out.append_value(&buffer);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{eval, eval_error};

    #[test]
    fn a_field_is_extracted_by_its_path_without_reading_the_rest() {
        let extract = |document: &str, path: &str| {
            eval(&format!(
                "extractjsonfield('{}', '{}')",
                document.replace('\'', "''"),
                path.replace('\'', "''")
            ))
        };
        let order = r#"{"id": 7, "device": {"os": "ios", "tags": ["a", {"k": 1.50}]}, "x": null}"#;
        assert_eq!(extract(order, "$.device.os"), "ios");
        assert_eq!(extract(order, "$.id"), "7");
        assert_eq!(extract(order, "$.device.tags[1].k"), "1.50");
        assert_eq!(extract(order, "$['device']['tags'][0]"), "a");
        assert_eq!(extract(order, "$.device.tags[1]"), r#"{"k":1.50}"#);
        assert_eq!(
            extract(order, "$.device"),
            r#"{"os":"ios","tags":["a",{"k":1.50}]}"#
        );
        // Nowhere: a missing field, an item past the end, a field of a scalar, NULL.
        for path in [
            "$.missing",
            "$.device.tags[5]",
            "$.id.more",
            "$.x",
            "$.device[0]",
        ] {
            assert_eq!(extract(order, path), "NULL", "{path}");
        }
        // A repeated key's last value, escaped keys, and whatever follows the document.
        assert_eq!(extract(r#"{"a": 1, "a": 2}"#, "$.a"), "2");
        assert_eq!(extract(r#"{"a\u0062": "escaped"}"#, "$.ab"), "escaped");
        assert_eq!(extract(r#"{"a": "\"quoted\""}"#, "$.a"), r#""quoted""#);
        assert_eq!(extract(r#"{"a": 1}} trailing"#, "$.a"), "1");
        assert_eq!(extract("not json", "$.a"), "NULL");
        assert_eq!(extract(r#"{"a": 1"#, "$.a"), "NULL");
        assert_eq!(extract(r#"{"a": 1}"#, "a"), "NULL");
        assert_eq!(
            eval("extractjsonfield(CAST(NULL AS VARCHAR), '$.a')"),
            "NULL"
        );
        assert!(eval_error("extractjsonfield(1, '$.a')").contains("does not accept parameters"));
    }

    #[test]
    fn json_texts_are_recognized() {
        for json in ["'1'", "'[1, 2, 3]'", r#"'"abc"'"#, "'{}'", "'null'"] {
            assert_eq!(eval(&format!("is_json_string({json})")), "true", "{json}");
        }
        for not_json in ["'abc'", "''", "'{'", "CAST(NULL AS STRING)"] {
            assert_eq!(
                eval(&format!("is_json_string({not_json})")),
                "false",
                "{not_json}"
            );
        }
    }

    #[test]
    fn arrays_are_searched_by_kind_and_counted() {
        assert_eq!(
            eval(r#"json_array_contains('["Pink", null]', 'Pink')"#),
            "true"
        );
        assert_eq!(eval(r#"json_array_contains('["Red"]', 'Pink')"#), "false");
        assert_eq!(
            eval("json_array_contains('[1, 2.5]', CAST(1 AS INT))"),
            "true"
        );
        assert_eq!(
            eval("json_array_contains('[1.0]', CAST(1 AS BIGINT))"),
            "false"
        );
        assert_eq!(
            eval("json_array_contains('[1, 2.5]', CAST(2.5 AS DOUBLE))"),
            "true"
        );
        assert_eq!(eval("json_array_contains('[true]', true)"), "true");
        assert_eq!(
            eval(r#"json_array_contains('[null]', CAST(NULL AS STRING))"#),
            "true"
        );
        assert_eq!(eval(r#"json_array_contains('{"a": 1}', 'a')"#), "false");
        assert_eq!(eval("json_array_contains('[', 'a')"), "false");
        assert_eq!(eval("json_array_length('[1, [2, 3]]')"), "2");
        assert_eq!(eval("json_array_length('[]')"), "0");
        assert_eq!(eval("json_array_length('{}')"), "NULL");
        assert_eq!(eval("json_array_length('')"), "NULL");
        assert!(eval_error("json_array_contains('[]', [1])").contains("does not accept"));
    }

    #[test]
    fn concatenation_merges_objects_or_joins_items() {
        assert_eq!(
            eval(r#"json_concat('{"a": 1}', '{"b": 2}')"#),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(
            eval(r#"json_concat('{"a": {"5": 6}}', '{"a": {"3": 4}}')"#),
            r#"{"a":{"3":4}}"#
        );
        assert_eq!(eval("json_concat('[1, 2]', '[3]', '4')"), "[1,2,3,4]");
        assert_eq!(eval(r#"json_concat('[1]', '{"a": 1}')"#), r#"[1,{"a":1}]"#);
        assert_eq!(eval("json_concat('null', 'null')"), "[null,null]");
        assert_eq!(eval("json_concat('1', '')"), "NULL");
        assert_eq!(eval("json_concat('1', CAST(NULL AS STRING))"), "NULL");
    }

    #[test]
    fn items_keys_and_records_keep_json_text() {
        assert_eq!(
            eval(r#"json_items('[{"type": "A"}, 1.50, "x"]')"#),
            r#"[{"type":"A"}, 1.50, "x"]"#
        );
        assert_eq!(eval("json_items('{}')"), "NULL");
        assert_eq!(eval(r#"json_keys('{"b": 1, "a": [2]}')"#), "[b, a]");
        assert_eq!(eval("json_keys('[1]')"), "NULL");
        assert_eq!(
            eval(r#"json_records('{"b": 1, "a": {"c": "d"}}')"#),
            r#"{b: 1, a: {"c":"d"}}"#
        );
        assert_eq!(eval("json_records('nope')"), "NULL");
    }

    #[test]
    fn any_value_is_written_as_json() {
        assert_eq!(eval("to_json_string(CAST(1 AS INT))"), "1");
        assert_eq!(eval("to_json_string('abc')"), r#""abc""#);
        assert_eq!(eval("to_json_string(CAST(NULL AS STRING))"), "null");
        assert_eq!(eval("to_json_string(NULL)"), "null");
        assert_eq!(eval("to_json_string(123.456e0)"), "123.456");
        assert_eq!(eval("to_json_string(true)"), "true");
        assert_eq!(eval("to_json_string(make_array(1, 2))"), "[1,2]");
        assert_eq!(
            eval("to_json_string(CAST('1971-11-28T23:46:40' AS TIMESTAMP))"),
            r#""1971-11-28T23:46:40.000""#
        );
        assert_eq!(
            eval("to_json_string(CAST('1972-09-27' AS DATE))"),
            r#""1972-09-27""#
        );
        assert_eq!(
            eval("to_json_string(named_struct('ID', 1, 'NAME', 'Alice'))"),
            r#"{"ID":1,"NAME":"Alice"}"#
        );
        assert_eq!(
            eval("to_json_string(map(['id'], [make_array(1, 2)]))"),
            r#"{"id":[1,2]}"#
        );
    }
}
