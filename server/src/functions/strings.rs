//! ksqlDB's string functions where DataFusion has none or differs: `CHR`, `ELT`, `FIELD`,
//! `INSTR` (from a position, forwards or backwards, the n-th occurrence), `ENCODE`, `SUBSTRING` (text and bytes), `LPAD`/`RPAD` (text and bytes), `TRIM` (Java's: every control character and
//! space), `SPLIT` (text and bytes), `SPLIT_TO_MAP`, the five `MASK` functions, and the
//! regular expressions `REGEXP_EXTRACT`, `REGEXP_EXTRACT_ALL`, `REGEXP_REPLACE` (every
//! match, Java's `$1` groups) and `REGEXP_SPLIT_TO_ARRAY`.
//!
//! NULL in any argument is NULL out unless a function says otherwise (`FIELD`, `MASK`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Int32Array, ListBuilder, MapBuilder, MapFieldNames,
    StringBuilder,
};
use arrow::datatypes::DataType;
use base64::Engine;
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;
use regex::Regex;

use super::udf::{
    KsqlFunction, any_null, failure, integers, is_binary, is_string, null_rows, row_failure,
    string_list, strings,
};
use crate::types::SqlType;

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf("chr", chr_type, chr),
        KsqlFunction::udf("elt", elt_type, elt),
        KsqlFunction::udf("field", field_type, field),
        KsqlFunction::udf("instr", instr_type, instr),
        KsqlFunction::udf("encode", encode_type, encode),
        // In place of DataFusion's `substr` (whose alias `substring` was). The planner makes
        // `SUBSTRING(s, p)`, which sqlparser reads as SQL's form, a call of this function.
        KsqlFunction::udf("substring", substring_type, substring).with_aliases(["substr"]),
        KsqlFunction::udf("lpad", pad_type, |args, _| pad(args, Side::Left)),
        KsqlFunction::udf("rpad", pad_type, |args, _| pad(args, Side::Right)),
        KsqlFunction::udf("trim", one_string, trim),
        KsqlFunction::udf("split", split_type, split),
        KsqlFunction::udf("split_to_map", split_to_map_type, split_to_map),
        KsqlFunction::udf(
            "mask",
            |args| mask_type(args, false),
            |args, _| mask(args, None),
        ),
        KsqlFunction::udf(
            "mask_keep_left",
            |args| mask_type(args, true),
            |args, _| mask(args, Some(Part::KeepLeft)),
        ),
        KsqlFunction::udf(
            "mask_keep_right",
            |args| mask_type(args, true),
            |args, _| mask(args, Some(Part::KeepRight)),
        ),
        KsqlFunction::udf(
            "mask_left",
            |args| mask_type(args, true),
            |args, _| mask(args, Some(Part::Left)),
        ),
        KsqlFunction::udf(
            "mask_right",
            |args| mask_type(args, true),
            |args, _| mask(args, Some(Part::Right)),
        ),
        KsqlFunction::udf(
            "regexp_extract",
            |args| regexp_extract_type(args, DataType::Utf8),
            regexp_extract,
        ),
        KsqlFunction::udf(
            "regexp_extract_all",
            |args| regexp_extract_type(args, string_list()),
            regexp_extract_all,
        ),
        KsqlFunction::udf("regexp_replace", regexp_replace_type, regexp_replace),
        KsqlFunction::udf(
            "regexp_split_to_array",
            |args| all_strings(args, 2).then(string_list),
            regexp_split_to_array,
        ),
    ]
}

fn all_strings(args: &[DataType], count: usize) -> bool {
    args.len() == count && args.iter().all(is_string)
}

fn one_string(args: &[DataType]) -> Option<DataType> {
    all_strings(args, 1).then_some(DataType::Utf8)
}

/// A string function evaluated row by row into one reused buffer: `write` answers `false`
/// for a NULL result. Rows where any argument is NULL are NULL without calling it.
fn string_rows(
    args: &[ArrayRef],
    mut write: impl FnMut(usize, &[&str], &mut String) -> bool,
) -> Result<ArrayRef, DataFusionError> {
    let texts = args.iter().map(strings).collect::<Result<Vec<_>, _>>()?;
    let rows = args.first().map_or(0, |a| a.len());
    let mut out = StringBuilder::with_capacity(rows, rows * 16);
    let mut buffer = String::new();
    let mut values: Vec<&str> = Vec::with_capacity(args.len());
    for row in 0..rows {
        if texts.iter().any(|t| t.is_null(row)) {
            out.append_null();
            continue;
        }
        values.clear();
        values.extend(texts.iter().map(|t| t.value(row)));
        buffer.clear();
        if write(row, &values, &mut buffer) {
            out.append_value(&buffer);
        } else {
            out.append_null();
        }
    }
    Ok(Arc::new(out.finish()))
}

fn chr_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [t] if is_string(t) || t.is_integer() => Some(DataType::Utf8),
        _ => None,
    }
}

/// `CHR(code)`: the character of a Unicode code point, or of a UTF-16 escape text such as
/// `'\u004b'` or a surrogate pair `'\ud820\udeb8'`. NULL for anything else.
fn chr(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    if args[0].data_type().is_integer() {
        let codes = integers(&args[0])?;
        let out: arrow::array::StringArray = codes
            .iter()
            .map(|code| {
                let code = u32::try_from(code?).ok()?;
                char::from_u32(code).map(String::from)
            })
            .collect();
        return Ok(Arc::new(out));
    }
    string_rows(args, |_, values, out| match unescape_utf16(values[0]) {
        Some(text) => {
            out.push_str(&text);
            true
        }
        None => false,
    })
}

/// `\uXXXX` escapes (one or more, as UTF-16 code units) as text.
fn unescape_utf16(text: &str) -> Option<String> {
    let mut units = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let hex = rest.strip_prefix("\\u")?.get(..4)?;
        units.push(u16::from_str_radix(hex, 16).ok()?);
        rest = &rest[6..];
    }
    if units.is_empty() {
        return None;
    }
    String::from_utf16(&units).ok()
}

fn elt_type(args: &[DataType]) -> Option<DataType> {
    let (n, rest) = args.split_first()?;
    ((n.is_integer() || n.is_null()) && rest.iter().all(is_string)).then_some(DataType::Utf8)
}

/// `ELT(n, a, b, …)`: the n-th text (from 1); NULL when n is out of range.
fn elt(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let positions = integers(&args[0])?;
    let texts = args[1..]
        .iter()
        .map(strings)
        .collect::<Result<Vec<_>, _>>()?;
    let out: arrow::array::StringArray = (0..args[0].len())
        .map(|row| {
            let n = usize::try_from(positions.iter().nth(row).flatten()?).ok()?;
            let text = texts.get(n.checked_sub(1)?)?;
            text.is_valid(row).then(|| text.value(row).to_string())
        })
        .collect();
    Ok(Arc::new(out))
}

fn field_type(args: &[DataType]) -> Option<DataType> {
    (!args.is_empty() && args.iter().all(is_string)).then_some(DataType::Int32)
}

/// `FIELD(text, a, b, …)`: the position (from 1) of the first of `a, b, …` equal to `text`;
/// 0 when none is, or `text` is NULL.
fn field(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let texts = args.iter().map(strings).collect::<Result<Vec<_>, _>>()?;
    let out: Int32Array = (0..args[0].len())
        .map(|row| {
            let wanted = &texts[0];
            if wanted.is_null(row) {
                return Some(0);
            }
            let position = texts[1..]
                .iter()
                .position(|t| t.is_valid(row) && t.value(row) == wanted.value(row));
            Some(position.map_or(0, |p| p as i32 + 1))
        })
        .collect();
    Ok(Arc::new(out))
}

fn instr_type(args: &[DataType]) -> Option<DataType> {
    let (texts, numbers) = args.split_at(args.len().min(2));
    let integer = |t: &DataType| t.is_integer() || t.is_null();
    let takes = texts.len() == 2
        && numbers.len() <= 2
        && texts.iter().all(is_string)
        && numbers.iter().all(integer);
    takes.then_some(DataType::Int32)
}

/// `INSTR(text, wanted[, position[, occurrence]])`: the position (from 1, in characters)
/// where the `occurrence`-th `wanted` (default the first) starts, searching forwards from
/// character `position` (default 1) or, when it is negative, backwards from that many
/// characters before the end; 0 when there is none.
fn instr(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let texts = strings(&args[0])?;
    let wanted = strings(&args[1])?;
    let positions = args.get(2).map(integers).transpose()?;
    let occurrences = args.get(3).map(integers).transpose()?;
    let out: Int32Array = (0..texts.len())
        .map(|row| {
            if any_null(args, row) {
                return None;
            }
            let position = positions.as_ref().map_or(1, |p| p.value(row));
            let occurrence = occurrences.as_ref().map_or(1, |o| o.value(row));
            Some(instr_position(
                texts.value(row),
                wanted.value(row),
                position,
                occurrence,
            ))
        })
        .collect();
    Ok(Arc::new(out))
}

fn instr_position(text: &str, wanted: &str, position: i64, occurrence: i64) -> i32 {
    let Ok(occurrence) = usize::try_from(occurrence) else {
        return 0;
    };
    if occurrence == 0 {
        return 0;
    }
    // Byte offset of a character position (from 0), the end past the last character.
    let byte_at = |chars: usize| {
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(at, _)| at)
    };
    let found = if position >= 0 {
        let from = byte_at(usize::try_from(position - 1).unwrap_or(0));
        match_starts(text, wanted)
            .filter(|&at| at >= from)
            .nth(occurrence - 1)
    } else {
        // The latest character a match may start at.
        let Ok(latest) = usize::try_from(text.chars().count() as i64 + position) else {
            return 0;
        };
        let latest = byte_at(latest);
        let before = match_starts(text, wanted)
            .take_while(|&at| at <= latest)
            .count();
        before
            .checked_sub(occurrence)
            .and_then(|nth| match_starts(text, wanted).nth(nth))
    };
    found.map_or(0, |at| text[..at].chars().count() as i32 + 1)
}

/// Where each match of `wanted` starts in `text` (byte offsets), overlapping ones included.
fn match_starts<'a>(text: &'a str, wanted: &'a str) -> impl Iterator<Item = usize> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + text.get(from..)?.find(wanted)?;
        from = at + text[at..].chars().next().map_or(1, char::len_utf8);
        Some(at)
    })
}

fn encode_type(args: &[DataType]) -> Option<DataType> {
    all_strings(args, 3).then_some(DataType::Utf8)
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Hex,
    Utf8,
    Ascii,
    Base64,
}

impl Encoding {
    fn parse(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().as_str() {
            "hex" => Some(Encoding::Hex),
            "utf8" => Some(Encoding::Utf8),
            "ascii" => Some(Encoding::Ascii),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }

    /// Text in this encoding, as bytes.
    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => {
                // Only `0x…` may have an odd number of digits (read with a leading zero);
                // `X'…'` and bare digits come in pairs, as ksqlDB reads them.
                let digits = match text.strip_prefix("0x") {
                    Some(digits) => digits,
                    None => {
                        let digits = text
                            .strip_prefix("X'")
                            .or_else(|| text.strip_prefix("x'"))
                            .and_then(|t| t.strip_suffix('\''))
                            .unwrap_or(text);
                        if digits.len() % 2 == 1 {
                            return None;
                        }
                        digits
                    }
                };
                super::bytes::decode_hex(digits).ok()
            }
            Encoding::Utf8 => Some(text.as_bytes().to_vec()),
            // Java writes '?' for each character US-ASCII cannot hold.
            Encoding::Ascii => Some(
                text.chars()
                    .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                    .collect(),
            ),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }

    /// Bytes as text in this encoding.
    fn encode(self, bytes: &[u8], out: &mut String) {
        use std::fmt::Write;
        match self {
            Encoding::Hex => bytes.iter().for_each(|b| {
                let _ = write!(out, "{b:02x}");
            }),
            Encoding::Utf8 => out.push_str(&String::from_utf8_lossy(bytes)),
            // Java reads each byte US-ASCII cannot hold as U+FFFD.
            Encoding::Ascii => out.extend(bytes.iter().map(|&b| {
                if b.is_ascii() {
                    b as char
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode_string(bytes, out),
        }
    }
}

/// `ENCODE(text, from, to)`: text written in the encoding `from` (`hex`, `utf8`, `ascii`,
/// `base64`) rewritten in the encoding `to`. NULL for an unknown encoding or text that is
/// not valid in `from`.
fn encode(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    string_rows(args, |_, values, out| {
        let (Some(from), Some(to)) = (Encoding::parse(values[1]), Encoding::parse(values[2]))
        else {
            return false;
        };
        match from.decode(values[0]) {
            Some(bytes) => {
                to.encode(&bytes, out);
                true
            }
            None => false,
        }
    })
}

fn substring_type(args: &[DataType]) -> Option<DataType> {
    let integer = |t: &DataType| t.is_integer() || t.is_null();
    match args {
        [input, rest @ ..] if (1..=2).contains(&rest.len()) && rest.iter().all(integer) => {
            if is_string(input) {
                Some(DataType::Utf8)
            } else if is_binary(input) {
                Some(DataType::Binary)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The characters (or bytes) `SUBSTRING` keeps of `count`, as a range: from `position`
/// (from 1, 0 reading as 1; negative counts from the end) for `length` or to the end; a
/// range past the end is empty.
fn substring_range(count: usize, position: i64, length: Option<i64>) -> std::ops::Range<usize> {
    let count = count as i64;
    let start = if position < 0 {
        (count + position).max(0)
    } else {
        (position - 1).clamp(0, count)
    };
    let end = length.map_or(count, |length| {
        start.saturating_add(length).min(count).max(start)
    });
    start as usize..end as usize
}

/// `SUBSTRING(str, pos [, length])` over text or bytes, as ksqlDB counts positions.
fn substring(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let positions = integers(&args[1])?;
    let lengths = args.get(2).map(integers).transpose()?;
    let length = |row: usize| lengths.as_ref().map(|l| l.value(row));
    let rows = args[0].len();
    if *result == DataType::Binary {
        let input = arrow::compute::cast(&args[0], &DataType::Binary)?;
        let input = input.as_binary::<i32>();
        let mut out = BinaryBuilder::with_capacity(rows, 0);
        for row in 0..rows {
            if any_null(args, row) {
                out.append_null();
                continue;
            }
            let bytes = input.value(row);
            out.append_value(
                &bytes[substring_range(bytes.len(), positions.value(row), length(row))],
            );
        }
        return Ok(Arc::new(out.finish()));
    }
    let input = strings(&args[0])?;
    let nulls = null_rows(args);
    let mut out = StringBuilder::with_capacity(rows, input.values().len());
    for row in 0..rows {
        if nulls.as_ref().is_some_and(|nulls| nulls.is_null(row)) {
            out.append_null();
            continue;
        }
        let text = input.value(row);
        if text.is_ascii() {
            out.append_value(&text[substring_range(text.len(), positions.value(row), length(row))]);
            continue;
        }
        let count = text.chars().count();
        let range = substring_range(count, positions.value(row), length(row));
        // Character positions to byte offsets.
        let byte_at = |index: usize| {
            text.char_indices()
                .nth(index)
                .map_or(text.len(), |(at, _)| at)
        };
        out.append_value(&text[byte_at(range.start)..byte_at(range.end)]);
    }
    Ok(Arc::new(out.finish()))
}

fn pad_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [s, n, p] if is_string(s) && is_string(p) && (n.is_integer() || n.is_null()) => {
            Some(DataType::Utf8)
        }
        [s, n, p] if is_binary(s) && is_binary(p) && (n.is_integer() || n.is_null()) => {
            Some(DataType::Binary)
        }
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Side {
    Left,
    Right,
}

/// `LPAD(input, length, padding)` / `RPAD`: `input` cut or padded with repeats of
/// `padding` to `length` characters (bytes for BYTES). NULL when `length` is negative or
/// `padding` is empty.
fn pad(args: &[ArrayRef], side: Side) -> Result<ArrayRef, DataFusionError> {
    let lengths = integers(&args[1])?;
    let rows = args[0].len();
    let length = |row: usize| -> Option<usize> {
        if any_null(args, row) {
            return None;
        }
        usize::try_from(lengths.value(row)).ok()
    };
    if is_binary(args[0].data_type()) && *args[0].data_type() != DataType::Null {
        let input = arrow::compute::cast(&args[0], &DataType::Binary)?;
        let padding = arrow::compute::cast(&args[2], &DataType::Binary)?;
        let (input, padding) = (input.as_binary::<i32>(), padding.as_binary::<i32>());
        let mut out = BinaryBuilder::with_capacity(rows, 0);
        let mut buffer = Vec::new();
        for row in 0..rows {
            match length(row).filter(|_| !padding.value(row).is_empty()) {
                Some(length) => {
                    buffer.clear();
                    pad_into(
                        &mut buffer,
                        input.value(row),
                        padding.value(row),
                        length,
                        side,
                    );
                    out.append_value(&buffer);
                }
                None => out.append_null(),
            }
        }
        return Ok(Arc::new(out.finish()));
    }
    let input = strings(&args[0])?;
    let padding = strings(&args[2])?;
    let mut out = StringBuilder::with_capacity(rows, 0);
    let mut buffer = String::new();
    for row in 0..rows {
        match length(row).filter(|_| !padding.value(row).is_empty()) {
            Some(length) => {
                // Lengths count characters, not bytes.
                let text = input.value(row);
                let chars = text.chars().count();
                buffer.clear();
                if chars >= length {
                    let end = text
                        .char_indices()
                        .nth(length)
                        .map_or(text.len(), |(i, _)| i);
                    buffer.push_str(&text[..end]);
                } else {
                    let fill = padding.value(row).chars().cycle().take(length - chars);
                    match side {
                        Side::Left => {
                            buffer.extend(fill);
                            buffer.push_str(text);
                        }
                        Side::Right => {
                            buffer.push_str(text);
                            buffer.extend(fill);
                        }
                    }
                }
                out.append_value(&buffer);
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn pad_into(out: &mut Vec<u8>, input: &[u8], padding: &[u8], length: usize, side: Side) {
    if input.len() >= length {
        out.extend_from_slice(&input[..length]);
        return;
    }
    let fill = padding.iter().cycle().take(length - input.len());
    match side {
        Side::Left => {
            out.extend(fill);
            out.extend_from_slice(input);
        }
        Side::Right => {
            out.extend_from_slice(input);
            out.extend(fill);
        }
    }
}

/// `TRIM(text)`: without leading and trailing spaces and control characters (Java's
/// `String.trim`).
fn trim(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    // Each trimmed text is a slice of its input, copied once, into the column.
    let trimmed: arrow::array::StringArray = strings(&args[0])?
        .iter()
        .map(|text| text.map(|text| text.trim_matches(|c: char| c <= ' ')))
        .collect();
    Ok(Arc::new(trimmed))
}

fn split_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [a, b] if is_string(a) && is_string(b) => Some(string_list()),
        [a, b] if is_binary(a) && is_binary(b) => {
            Some(SqlType::Array(Box::new(SqlType::Bytes)).to_arrow())
        }
        _ => None,
    }
}

/// `SPLIT(input, delimiter)`: the parts between delimiters, empty ones kept; an empty
/// delimiter splits into characters (bytes).
fn split(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let rows = args[0].len();
    if is_binary(args[0].data_type()) && *args[0].data_type() != DataType::Null {
        let input = arrow::compute::cast(&args[0], &DataType::Binary)?;
        let delimiter = arrow::compute::cast(&args[1], &DataType::Binary)?;
        let (input, delimiter) = (input.as_binary::<i32>(), delimiter.as_binary::<i32>());
        let mut out = ListBuilder::new(BinaryBuilder::new());
        for row in 0..rows {
            if any_null(args, row) {
                out.append_null();
                continue;
            }
            let (bytes, delimiter) = (input.value(row), delimiter.value(row));
            if delimiter.is_empty() {
                if bytes.is_empty() {
                    out.values().append_value(b"");
                }
                for byte in bytes {
                    out.values().append_value([*byte]);
                }
            } else {
                let mut start = 0;
                let mut at = 0;
                while at + delimiter.len() <= bytes.len() {
                    if &bytes[at..at + delimiter.len()] == delimiter {
                        out.values().append_value(&bytes[start..at]);
                        at += delimiter.len();
                        start = at;
                    } else {
                        at += 1;
                    }
                }
                out.values().append_value(&bytes[start..]);
            }
            out.append(true);
        }
        return Ok(Arc::new(out.finish()));
    }
    let input = strings(&args[0])?;
    let delimiter = strings(&args[1])?;
    let mut out = ListBuilder::new(StringBuilder::new());
    for row in 0..rows {
        if input.is_null(row) || delimiter.is_null(row) {
            out.append_null();
            continue;
        }
        let (text, delimiter) = (input.value(row), delimiter.value(row));
        if delimiter.is_empty() {
            if text.is_empty() {
                out.values().append_value("");
            }
            let mut buffer = [0u8; 4];
            for c in text.chars() {
                out.values().append_value(c.encode_utf8(&mut buffer));
            }
        } else {
            for part in text.split(delimiter) {
                out.values().append_value(part);
            }
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

fn split_to_map_type(args: &[DataType]) -> Option<DataType> {
    all_strings(args, 3)
        .then(|| SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::String)).to_arrow())
}

pub(super) fn string_map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
}

/// `SPLIT_TO_MAP(input, entryDelimiter, kvDelimiter)`: entries split at `entryDelimiter`
/// (empty ones skipped), each split at `kvDelimiter` into key and value (entries without
/// one skipped; a later key replaces an earlier one). NULL when a delimiter is empty.
fn split_to_map(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let texts = args.iter().map(strings).collect::<Result<Vec<_>, _>>()?;
    let mut out = string_map_builder();
    let mut entries: Vec<(&str, &str)> = Vec::new();
    for row in 0..args[0].len() {
        let [input, entry_delimiter, kv_delimiter] = [0, 1, 2].map(|i| texts[i].value(row));
        if any_null(args, row) || entry_delimiter.is_empty() || kv_delimiter.is_empty() {
            out.append(false)?;
            continue;
        }
        entries.clear();
        for entry in input.split(entry_delimiter).filter(|e| !e.is_empty()) {
            let mut parts = entry.split(kv_delimiter);
            if let (Some(key), Some(value)) = (parts.next(), parts.next()) {
                match entries.iter_mut().find(|(k, _)| *k == key) {
                    Some(existing) => existing.1 = value,
                    None => entries.push((key, value)),
                }
            }
        }
        for (key, value) in &entries {
            out.keys().append_value(key);
            out.values().append_value(value);
        }
        out.append(true)?;
    }
    Ok(Arc::new(out.finish()))
}

fn mask_type(args: &[DataType], counted: bool) -> Option<DataType> {
    let (input, rest) = args.split_first()?;
    let rest = if counted {
        let (count, rest) = rest.split_first()?;
        if !(count.is_integer() || count.is_null()) {
            return None;
        }
        rest
    } else {
        rest
    };
    (is_string(input) && rest.len() <= 4 && rest.iter().all(is_string)).then_some(DataType::Utf8)
}

/// Which characters a `MASK_…` function masks.
#[derive(Clone, Copy)]
enum Part {
    KeepLeft,
    KeepRight,
    Left,
    Right,
}

/// `MASK(text [, upper, lower, digit, other])` and `MASK_KEEP_LEFT / MASK_KEEP_RIGHT /
/// MASK_LEFT / MASK_RIGHT(text, n [, …])`: upper-case letters written as `X`, lower-case
/// as `x`, digits as `n` and anything else as `-`, or as the first character of the
/// replacement given; a NULL replacement leaves that kind of character as it is.
fn mask(args: &[ArrayRef], part: Option<Part>) -> Result<ArrayRef, DataFusionError> {
    let name = match part {
        None => "mask",
        Some(Part::KeepLeft) => "mask_keep_left",
        Some(Part::KeepRight) => "mask_keep_right",
        Some(Part::Left) => "mask_left",
        Some(Part::Right) => "mask_right",
    };
    let input = strings(&args[0])?;
    let (counts, replacements) = match part {
        Some(_) => (Some(integers(&args[1])?), &args[2..]),
        None => (None, &args[1..]),
    };
    let replacements = replacements
        .iter()
        .map(strings)
        .collect::<Result<Vec<_>, _>>()?;
    let defaults = ['X', 'x', 'n', '-'];
    let mut out = StringBuilder::new();
    let mut buffer = String::new();
    for row in 0..args[0].len() {
        if input.is_null(row) {
            out.append_null();
            continue;
        }
        let count = match &counts {
            None => 0,
            Some(counts) if counts.is_null(row) => {
                out.append_null();
                continue;
            }
            Some(counts) => match usize::try_from(counts.value(row)) {
                Ok(count) => count,
                Err(_) => {
                    row_failure::<()>(
                        row,
                        format!("function {name} requires a non-negative number"),
                    );
                    out.append_null();
                    continue;
                }
            },
        };
        // `None`: that kind of character is kept.
        let with: [Option<char>; 4] = std::array::from_fn(|i| match replacements.get(i) {
            None => Some(defaults[i]),
            Some(r) if r.is_null(row) => None,
            Some(r) => r.value(row).chars().next().or(Some(defaults[i])),
        });
        let text = input.value(row);
        let length = text.chars().count();
        let masked = |i: usize| match part {
            None => true,
            Some(Part::KeepLeft) => i >= count,
            Some(Part::KeepRight) => i + count < length,
            Some(Part::Left) => i < count,
            Some(Part::Right) => i + count >= length,
        };
        buffer.clear();
        for (i, c) in text.chars().enumerate() {
            let kind = if c.is_uppercase() {
                0
            } else if c.is_lowercase() {
                1
            } else if c.is_numeric() {
                2
            } else {
                3
            };
            buffer.push(match with[kind] {
                Some(replacement) if masked(i) => replacement,
                _ => c,
            });
        }
        out.append_value(&buffer);
    }
    Ok(Arc::new(out.finish()))
}

/// The last regular expression compiled, reused while rows bring the same pattern.
#[derive(Default)]
struct LastRegex(Option<(String, Regex)>);

impl LastRegex {
    /// The compiled `pattern`; a bad pattern fails the call (ksqlDB refuses it).
    fn get(&mut self, pattern: &str) -> Result<&Regex, DataFusionError> {
        if self.0.as_ref().is_none_or(|(source, _)| source != pattern) {
            let regex = Regex::new(pattern)
                .map_err(|e| failure(format!("Invalid regular expression pattern: {e}")))?;
            self.0 = Some((pattern.to_string(), regex));
        }
        Ok(&self.0.as_ref().expect("set above").1)
    }
}

fn regexp_extract_type(args: &[DataType], result: DataType) -> Option<DataType> {
    match args {
        [p, s] if is_string(p) && is_string(s) => Some(result),
        [p, s, g] if is_string(p) && is_string(s) && (g.is_integer() || g.is_null()) => {
            Some(result)
        }
        _ => None,
    }
}

/// The group argument of `REGEXP_EXTRACT(_ALL)` (0, the whole match, when absent).
fn group_numbers(args: &[ArrayRef]) -> Result<Option<arrow::array::Int64Array>, DataFusionError> {
    args.get(2).map(integers).transpose()
}

/// `REGEXP_EXTRACT(pattern, text [, group])`: the first match (or its group); NULL when
/// nothing matches.
fn regexp_extract(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let groups = group_numbers(args)?;
    let mut regex = LastRegex::default();
    let texts = [strings(&args[0])?, strings(&args[1])?];
    let mut out = StringBuilder::new();
    for row in 0..args[0].len() {
        if any_null(args, row) {
            out.append_null();
            continue;
        }
        let group = groups.as_ref().map_or(0, |g| g.value(row));
        let regex = regex.get(texts[0].value(row))?;
        let found = usize::try_from(group).ok().and_then(|group| {
            regex
                .captures(texts[1].value(row))
                .and_then(|c| c.get(group))
                .map(|m| m.as_str())
        });
        out.append_option(found);
    }
    Ok(Arc::new(out.finish()))
}

/// `REGEXP_EXTRACT_ALL(pattern, text [, group])`: every match (or its group), in order.
fn regexp_extract_all(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let groups = group_numbers(args)?;
    let mut regex = LastRegex::default();
    let texts = [strings(&args[0])?, strings(&args[1])?];
    let mut out = ListBuilder::new(StringBuilder::new());
    for row in 0..args[0].len() {
        if any_null(args, row) {
            out.append_null();
            continue;
        }
        let group = usize::try_from(groups.as_ref().map_or(0, |g| g.value(row))).ok();
        let regex = regex.get(texts[0].value(row))?;
        for captures in regex.captures_iter(texts[1].value(row)) {
            let found = group.and_then(|g| captures.get(g)).map(|m| m.as_str());
            out.values().append_option(found);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

fn regexp_replace_type(args: &[DataType]) -> Option<DataType> {
    all_strings(args, 3).then_some(DataType::Utf8)
}

/// `REGEXP_REPLACE(text, pattern, replacement)`: every match replaced; `$1` in the
/// replacement is the match's first group, `\$` a dollar sign, as in Java.
fn regexp_replace(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let mut regex = LastRegex::default();
    let mut replacement: Option<(String, String)> = None;
    let mut failed = None;
    let out = string_rows(args, |_, values, out| {
        let regex = match regex.get(values[1]) {
            Ok(regex) => regex,
            Err(error) => {
                failed.get_or_insert(error);
                return false;
            }
        };
        if replacement
            .as_ref()
            .is_none_or(|(java, _)| java != values[2])
        {
            let rust = rust_replacement(values[2], regex.captures_len());
            replacement = Some((values[2].to_string(), rust));
        }
        let (_, rust) = replacement.as_ref().expect("set above");
        out.push_str(&regex.replace_all(values[0], rust.as_str()));
        true
    })?;
    match failed {
        Some(error) => Err(error),
        None => Ok(out),
    }
}

/// A Java replacement text (`$1`, `\$`) in the `regex` crate's syntax (`${1}`, `$$`).
fn rust_replacement(java: &str, groups: usize) -> String {
    let mut out = String::with_capacity(java.len());
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                // Java reads digits while they still name a group.
                let mut number = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    let longer = format!("{number}{d}");
                    if !number.is_empty() && longer.parse::<usize>().is_ok_and(|n| n >= groups) {
                        break;
                    }
                    number = longer;
                    chars.next();
                }
                out.push_str(&format!("${{{number}}}"));
            }
            '$' if chars.peek() == Some(&'{') => out.push('$'),
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

/// `REGEXP_SPLIT_TO_ARRAY(text, pattern)`: the parts between matches, empty ones kept.
fn regexp_split_to_array(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let mut regex = LastRegex::default();
    let texts = [strings(&args[0])?, strings(&args[1])?];
    let mut out = ListBuilder::new(StringBuilder::new());
    for row in 0..args[0].len() {
        if any_null(args, row) {
            out.append_null();
            continue;
        }
        for part in regex.get(texts[1].value(row))?.split(texts[0].value(row)) {
            out.values().append_value(part);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{eval, eval_error};
    use super::*;

    #[test]
    fn chr_reads_code_points_and_utf16_escapes() {
        assert_eq!(eval("chr(75)"), "K");
        assert_eq!(eval("chr(22909)"), "好");
        assert_eq!(eval("chr(99000)"), "𘊸");
        assert_eq!(eval("chr(-1)"), "NULL");
        assert_eq!(eval("chr(CAST(NULL AS INT))"), "NULL");
        assert_eq!(eval(r"chr('\u004b')"), "K");
        assert_eq!(eval(r"chr('\ud820\udeb8')"), "𘊸");
        for not_an_escape in ["'75'", "'004b'", "'bogus'", "''", r"'\ud820'"] {
            assert_eq!(eval(&format!("chr({not_an_escape})")), "NULL");
        }
        assert!(eval_error("chr(true)").contains("does not accept parameters (BOOLEAN)"));
    }

    #[test]
    fn elt_picks_and_field_finds_a_position() {
        assert_eq!(eval("elt(2, 'a', 'b', 'c')"), "b");
        assert_eq!(eval("elt(0, 'a')"), "NULL");
        assert_eq!(eval("elt(3, 'a', 'b')"), "NULL");
        assert_eq!(eval("elt(1, CAST(NULL AS STRING), 'b')"), "NULL");
        assert_eq!(eval("field('b', 'a', 'b', 'b')"), "2");
        assert_eq!(eval("field('z', 'a', 'b')"), "0");
        assert_eq!(
            eval("field(CAST(NULL AS STRING), 'a', CAST(NULL AS STRING))"),
            "0"
        );
        assert_eq!(
            eval("elt(field('hello', 'x', 'hello'), 'x', 'hello')"),
            "hello"
        );
    }

    #[test]
    fn encode_rewrites_text_between_encodings() {
        assert_eq!(
            eval("encode('4578616d706C6521', 'hex', 'utf8')"),
            "Example!"
        );
        assert_eq!(
            eval("encode('0x4578616d706C6521', 'hex', 'base64')"),
            "RXhhbXBsZSE="
        );
        assert_eq!(eval("encode('X''4578''', 'hex', 'ascii')"), "Ex");
        // An odd number of digits: a leading zero after `0x`, refused otherwise.
        assert_eq!(eval("encode('0x578', 'hex', 'base64')"), "BXg=");
        assert_eq!(eval("encode('X''578''', 'hex', 'base64')"), "NULL");
        assert_eq!(eval("encode('578', 'hex', 'base64')"), "NULL");
        assert_eq!(
            eval("encode('Example!', 'utf8', 'hex')"),
            "4578616d706c6521"
        );
        assert_eq!(eval("encode('Ελλάδα', 'ascii', 'utf8')"), "??????");
        assert_eq!(eval("encode('c39c', 'hex', 'ascii')"), "\u{fffd}\u{fffd}");
        assert_eq!(
            eval("encode('zpXOu867zqzOtM6x', 'base64', 'utf8')"),
            "Ελλάδα"
        );
        assert_eq!(eval("encode('abc', 'base64', 'nonsense')"), "NULL");
        assert_eq!(eval("encode('xyz', 'hex', 'utf8')"), "NULL");
        assert_eq!(eval("encode(CAST(NULL AS STRING), 'hex', 'utf8')"), "NULL");
    }

    #[test]
    fn substring_counts_positions_as_ksqldb_does() {
        // Called directly: DataFusion's SQL reads `substring(…)` and `substr(…)` as SQL's
        // SUBSTRING, which the planner turns into a call of this function (the engine's
        // tests go that way).
        let text = |text: Option<&str>, position: Option<i32>, length: Option<Option<i32>>| {
            let mut args: Vec<ArrayRef> = vec![
                Arc::new(arrow::array::StringArray::from(vec![text])),
                Arc::new(Int32Array::from(vec![position])),
            ];
            if let Some(length) = length {
                args.push(Arc::new(Int32Array::from(vec![length])));
            }
            let out = substring(&args, &DataType::Utf8).expect("evaluates");
            let out = out.as_string::<i32>();
            out.is_valid(0).then(|| out.value(0).to_string())
        };
        let cases = [
            (("some string", 0, Some(2)), "so"),
            (("some string", 1, Some(2)), "so"),
            (("some string", 6, None), "string"),
            (("some string", -6, None), "string"),
            (("some string", -6, Some(3)), "str"),
            (("some string", -20, Some(4)), "some"),
            (("abc", 10, None), ""),
            (("abc", 2, Some(-1)), ""),
            (("abc", 2, Some(100)), "bc"),
            (("Ελλάδα", 2, Some(3)), "λλά"),
            (("Ελλάδα", -2, None), "δα"),
        ];
        for ((input, position, length), expected) in cases {
            assert_eq!(
                text(Some(input), Some(position), length.map(Some)).as_deref(),
                Some(expected),
                "SUBSTRING('{input}', {position}, {length:?})"
            );
        }
        assert_eq!(text(None, Some(1), None), None);
        assert_eq!(text(Some("abc"), None, None), None);
        assert_eq!(text(Some("abc"), Some(1), Some(None)), None);
        // A bare NULL, typed NULL rather than INT, as the position.
        let untyped: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::StringArray::from(vec!["abc"])),
            Arc::new(arrow::array::NullArray::new(1)),
        ];
        let out = substring(&untyped, &DataType::Utf8).expect("evaluates");
        assert!(out.is_null(0));
        let bytes: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::BinaryArray::from(vec![Some(
                b"abc".as_slice(),
            )])),
            Arc::new(Int32Array::from(vec![-1])),
            Arc::new(Int32Array::from(vec![5])),
        ];
        let out = substring(&bytes, &DataType::Binary).expect("evaluates");
        assert_eq!(out.as_binary::<i32>().value(0), b"c");
        assert_eq!(substring_type(&[DataType::Int32, DataType::Int32]), None);
    }

    #[test]
    fn pads_cut_or_fill_text_and_bytes() {
        assert_eq!(eval("lpad('yes', 8, 'no')"), "nononyes");
        assert_eq!(eval("rpad('yes', 8, 'no')"), "yesnonon");
        assert_eq!(eval("lpad('yes', 2, 'no')"), "ye");
        assert_eq!(eval("rpad('yes', 0, 'no')"), "");
        assert_eq!(eval("lpad('yes', -1, 'no')"), "NULL");
        assert_eq!(eval("rpad('yes', 5, '')"), "NULL");
        assert_eq!(eval("lpad('é', 3, 'ü')"), "üüé");
        assert_eq!(eval("lpad(CAST(NULL AS STRING), 3, 'x')"), "NULL");
        assert_eq!(
            eval("from_bytes(lpad(to_bytes('yes', 'utf8'), 5, to_bytes('no', 'utf8')), 'utf8')"),
            "noyes"
        );
        assert_eq!(
            eval("from_bytes(rpad(to_bytes('yes', 'utf8'), 2, to_bytes('no', 'utf8')), 'utf8')"),
            "ye"
        );
        assert_eq!(
            eval("rpad(to_bytes('yes', 'utf8'), 4, to_bytes('', 'utf8'))"),
            "NULL"
        );
        assert!(eval_error("lpad('a', 'b', 'c')").contains("does not accept parameters"));
    }

    #[test]
    fn trim_removes_spaces_and_control_characters_at_both_ends() {
        assert_eq!(
            eval("trim(' \t with white space \t\n')"),
            "with white space"
        );
        assert_eq!(eval("trim('inner  space')"), "inner  space");
        assert_eq!(eval("trim(CAST(NULL AS STRING))"), "NULL");
    }

    #[test]
    fn split_keeps_empty_parts_and_splits_characters_on_an_empty_delimiter() {
        assert_eq!(eval("split('a.b.c', '.')"), "[a, b, c]");
        assert_eq!(eval("split('..a..', '.')"), "[, , a, , ]");
        assert_eq!(eval("split('a$$b.c', '$$')"), "[a, b.c]");
        assert_eq!(eval("split('abc', '')"), "[a, b, c]");
        assert_eq!(eval("array_length(split('', '.'))"), "1");
        assert_eq!(eval("array_length(split('', ''))"), "1");
        assert_eq!(eval("split('a', CAST(NULL AS STRING))"), "NULL");
        assert_eq!(
            eval("array_length(split(to_bytes('a,b,,c', 'utf8'), to_bytes(',', 'utf8')))"),
            "4"
        );
        assert_eq!(
            eval("from_bytes(split(to_bytes('ab', 'utf8'), to_bytes('', 'utf8'))[2], 'utf8')"),
            "b"
        );
    }

    #[test]
    fn split_to_map_reads_entries_and_skips_broken_ones() {
        assert_eq!(
            eval("split_to_map('apple:green//banana:yellow/', '/', ':')"),
            "{apple: green, banana: yellow}"
        );
        assert_eq!(eval("split_to_map('a:1/b/a:2', '/', ':')"), "{a: 2}");
        assert_eq!(eval("split_to_map('', '/', ':')"), "{}");
        assert_eq!(eval("split_to_map('a:1', '', ':')"), "NULL");
        assert_eq!(
            eval("split_to_map('a:1', '/', CAST(NULL AS STRING))"),
            "NULL"
        );
    }

    #[test]
    fn masks_replace_each_kind_of_character() {
        assert_eq!(eval("mask('Abc-12')"), "Xxx-nn");
        assert_eq!(eval("mask('Abc-12', '*', '#', '9', '_')"), "*##_99");
        assert_eq!(eval("mask('Abc-12', CAST(NULL AS STRING), 'y')"), "Ayy-nn");
        assert_eq!(eval("mask_keep_left('Abc-12', 2)"), "Abx-nn");
        assert_eq!(eval("mask_keep_right('Abc-12', 2)"), "Xxx-12");
        assert_eq!(eval("mask_left('Abc-12', 2)"), "Xxc-12");
        assert_eq!(eval("mask_right('Abc-12', 10)"), "Xxx-nn");
        assert_eq!(eval("mask_left('Abc', -1)"), "NULL");
        assert_eq!(eval("mask(CAST(NULL AS STRING))"), "NULL");
    }

    #[test]
    fn regular_expressions_extract_replace_and_split() {
        assert_eq!(eval("regexp_extract('test.', 'some_test_string')"), "test_");
        assert_eq!(eval("regexp_extract('test.', 'nothing')"), "NULL");
        assert_eq!(
            eval("regexp_extract('(.*) (.*)', 'steven zhang', 2)"),
            "zhang"
        );
        assert_eq!(
            eval("regexp_extract('(.*) (.*)', 'steven zhang', 3)"),
            "NULL"
        );
        assert_eq!(
            eval(r"regexp_extract_all('(\w+) (\w*)', 'apurva mehta agavra ', 2)"),
            "[mehta, ]"
        );
        assert_eq!(eval("regexp_extract_all('x', 'abc')"), "[]");
        assert_eq!(
            eval("regexp_replace('baabbabaa', '(ab)+', 'cat')"),
            "bacatbcataa"
        );
        assert_eq!(
            eval("regexp_replace('John Smith', '(\\w+) (\\w+)', '$2, $1')"),
            "Smith, John"
        );
        assert_eq!(eval(r"regexp_replace('a1', '(\d)', '\$$1')"), "a$1");
        assert_eq!(
            eval("regexp_split_to_array('aabcda', '(ab|cd)')"),
            "[a, , a]"
        );
        assert_eq!(
            eval("regexp_split_to_array('zxy', CAST(NULL AS STRING))"),
            "NULL"
        );
        assert!(eval_error("regexp_extract('(', 'x')").contains("Invalid regular expression"));
    }
}
