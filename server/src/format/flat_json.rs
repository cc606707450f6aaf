//! A scanner for the common shape of JSON records: one object whose values are scalars
//! (`{"auction":1000,"channel":"web","extra":null}`). It finds each field's name and raw
//! value text in one pass over the bytes, without building values, so a record is decoded
//! with one read of its text instead of a generic parser's visitor.
//!
//! Anything else — nested values, escapes, invalid syntax — is declined, and the caller
//! parses the record with `serde_json`, which gives the exact error. Entry point:
//! [`scan_flat_object`].

use std::ops::Range;

/// One field: the byte ranges of its name (inside the quotes) and of its raw value.
pub type FlatField = (Range<usize>, Range<usize>);

/// Lists the fields of `text` into `fields` when it is a flat JSON object whose names and
/// strings have no escapes; `false` (with `fields` in any state) otherwise.
pub fn scan_flat_object(text: &[u8], fields: &mut Vec<FlatField>) -> bool {
    fields.clear();
    let mut at = skip_whitespace(text, 0);
    if text.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_whitespace(text, at + 1);
    if text.get(at) == Some(&b'}') {
        return skip_whitespace(text, at + 1) == text.len();
    }
    loop {
        if text.get(at) != Some(&b'"') {
            return false;
        }
        let Some(name_end) = plain_string_end(text, at + 1) else {
            return false;
        };
        let name = at + 1..name_end;
        at = skip_whitespace(text, name_end + 1);
        if text.get(at) != Some(&b':') {
            return false;
        }
        at = skip_whitespace(text, at + 1);
        let value_start = at;
        let value_end = match text.get(at) {
            Some(b'"') => match plain_string_end(text, at + 1) {
                Some(end) => end + 1,
                None => return false,
            },
            Some(b'-' | b'0'..=b'9') => match number_end(text, at) {
                Some(end) => end,
                None => return false,
            },
            Some(b't') if text[at..].starts_with(b"true") => at + 4,
            Some(b'f') if text[at..].starts_with(b"false") => at + 5,
            Some(b'n') if text[at..].starts_with(b"null") => at + 4,
            _ => return false,
        };
        fields.push((name, value_start..value_end));
        at = skip_whitespace(text, value_end);
        match text.get(at) {
            Some(b',') => at = skip_whitespace(text, at + 1),
            Some(b'}') => return skip_whitespace(text, at + 1) == text.len(),
            _ => return false,
        }
    }
}

fn skip_whitespace(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = text.get(at) {
        at += 1;
    }
    at
}

/// The index of the quote closing a string whose content starts at `from`, when the
/// content has no escape and no control character (which JSON forbids unescaped).
fn plain_string_end(text: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    // Eight bytes at a time: stop at the first word holding a quote, a backslash or a byte
    // below 0x20 (bytes of 0x80 and above are UTF-8 and pass).
    while let Some(chunk) = text.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
        let special = has_zero(word ^ (ONES * u64::from(b'"')))
            | has_zero(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS);
        if special != 0 {
            break;
        }
        at += 8;
    }
    while let Some(&byte) = text.get(at) {
        match byte {
            b'"' => return Some(at),
            b'\\' | 0..=0x1f => return None,
            _ => at += 1,
        }
    }
    None
}

/// The end of a JSON number starting at `from` (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`).
fn number_end(text: &[u8], from: usize) -> Option<usize> {
    let digits = |mut at: usize| {
        let start = at;
        while text.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        (at > start).then_some(at)
    };
    let mut at = from;
    if text.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match text.get(at) {
        Some(b'0') => at + 1,
        Some(b'1'..=b'9') => digits(at)?,
        _ => return None,
    };
    if text.get(at) == Some(&b'.') {
        at = digits(at + 1)?;
    }
    if let Some(b'e' | b'E') = text.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = text.get(at) {
            at += 1;
        }
        at = digits(at)?;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Option<Vec<(&str, &str)>> {
        let mut fields = Vec::new();
        scan_flat_object(text.as_bytes(), &mut fields).then(|| {
            fields
                .iter()
                .map(|(name, value)| (&text[name.clone()], &text[value.clone()]))
                .collect()
        })
    }

    #[test]
    fn flat_objects_list_their_fields() {
        assert_eq!(
            scan(
                r#" { "a" : 1 , "long_name_here":"a string of more than eight bytes","c":-0.5e+3,"d":true,"e":false,"f":null, "g":"é"} "#
            ),
            Some(vec![
                ("a", "1"),
                ("long_name_here", r#""a string of more than eight bytes""#),
                ("c", "-0.5e+3"),
                ("d", "true"),
                ("e", "false"),
                ("f", "null"),
                ("g", r#""é""#),
            ])
        );
        assert_eq!(scan("{}"), Some(vec![]));
    }

    #[test]
    fn other_shapes_and_invalid_json_are_declined() {
        for text in [
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":"with \" escape"}"#,
            r#"{"a\"b":1}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1,}"#,
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{"a":tru}"#,
            r#"{"a":"unterminated string that is long}"#,
            "[1]",
            "",
        ] {
            assert_eq!(scan(text), None, "{text}");
        }
    }
}
