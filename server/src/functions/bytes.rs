//! String and byte functions: `LEN`, `FROM_BYTES`, `TO_BYTES`, and the numbers read from
//! bytes (`INT_FROM_BYTES`, `BIGINT_FROM_BYTES`, `DOUBLE_FROM_BYTES`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::DataType;
use base64::Engine;
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::udf::{
    KsqlFunction, constant_string, failure, is_binary, is_string, row_failure, strings,
};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf("len", len_type, len),
        KsqlFunction::udf("from_bytes", from_bytes_type, from_bytes),
        KsqlFunction::udf("to_bytes", to_bytes_type, to_bytes),
        KsqlFunction::udf(
            "int_from_bytes",
            |args| number_from_bytes_type(args, DataType::Int32),
            number_from_bytes,
        ),
        KsqlFunction::udf(
            "bigint_from_bytes",
            |args| number_from_bytes_type(args, DataType::Int64),
            number_from_bytes,
        ),
        KsqlFunction::udf(
            "double_from_bytes",
            |args| number_from_bytes_type(args, DataType::Float64),
            number_from_bytes,
        ),
    ]
}

fn len_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [t] if is_string(t) || is_binary(t) => Some(DataType::Int32),
        _ => None,
    }
}

/// `LEN(string)`: the length Java's `String.length()` gives, in UTF-16 code units (a
/// character beyond the Basic Multilingual Plane, an emoji, counts two); `LEN(bytes)`:
/// bytes. NULL for NULL.
fn len(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let input = &args[0];
    let lengths =
        |offsets: &[i32]| -> Vec<i32> { offsets.windows(2).map(|w| w[1] - w[0]).collect() };
    if is_binary(input.data_type()) && *input.data_type() != DataType::Null {
        let bytes = arrow::compute::cast(input, &DataType::Binary)?;
        let bytes = bytes.as_binary::<i32>();
        let counted = lengths(bytes.value_offsets());
        return Ok(Arc::new(Int32Array::new(
            counted.into(),
            bytes.nulls().cloned(),
        )));
    }
    let texts = strings(input)?;
    let counted = if texts.values().is_ascii() {
        // One check over the whole column: then every byte is a code unit.
        lengths(texts.value_offsets())
    } else {
        (0..texts.len())
            .map(|row| utf16_length(texts.value(row)))
            .collect()
    };
    Ok(Arc::new(Int32Array::new(
        counted.into(),
        texts.nulls().cloned(),
    )))
}

/// The UTF-16 code units of a text: a unit per character, two for a character of four
/// UTF-8 bytes.
fn utf16_length(text: &str) -> i32 {
    let units = text
        .bytes()
        .map(|byte| usize::from(byte & 0xC0 != 0x80) + usize::from(byte >= 0xF0))
        .sum::<usize>();
    i32::try_from(units).unwrap_or(i32::MAX)
}

/// The encodings `FROM_BYTES` and `TO_BYTES` name.
#[derive(Clone, Copy)]
enum Encoding {
    Hex,
    Utf8,
    Ascii,
    Base64,
}

fn encoding(args: &[ArrayRef]) -> Result<Option<Encoding>, DataFusionError> {
    let Some(name) = constant_string(&args[1])? else {
        return Ok(None);
    };
    Ok(Some(match name.to_ascii_lowercase().as_str() {
        "hex" => Encoding::Hex,
        "utf8" => Encoding::Utf8,
        "ascii" => Encoding::Ascii,
        "base64" => Encoding::Base64,
        _ => {
            return Err(failure(format!(
                "Supported input encodings are: hex, utf8, ascii and base64, but got {name}"
            )));
        }
    }))
}

fn from_bytes_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [b, e] if is_binary(b) && is_string(e) => Some(DataType::Utf8),
        _ => None,
    }
}

/// `FROM_BYTES(bytes, encoding)`: bytes as text in `hex` (upper case), `utf8`, `ascii` or
/// `base64`.
fn from_bytes(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let Some(encoding) = encoding(args)? else {
        return Ok(arrow::array::new_null_array(&DataType::Utf8, args[0].len()));
    };
    let bytes = arrow::compute::cast(&args[0], &DataType::Binary)?;
    let out: StringArray = bytes
        .as_binary::<i32>()
        .iter()
        .enumerate()
        .map(|(row, bytes)| {
            let bytes = bytes?;
            match encoding {
                Encoding::Hex => Some(bytes.iter().map(|b| format!("{b:02X}")).collect()),
                Encoding::Utf8 | Encoding::Ascii => match String::from_utf8(bytes.to_vec()) {
                    Ok(text) => Some(text),
                    Err(_) => row_failure(row, "the bytes are not valid text in this encoding"),
                },
                Encoding::Base64 => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            }
        })
        .collect();
    Ok(Arc::new(out))
}

fn to_bytes_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [s, e] if is_string(s) && is_string(e) => Some(DataType::Binary),
        _ => None,
    }
}

/// `TO_BYTES(string, encoding)`: the bytes a `hex`, `utf8`, `ascii` or `base64` text
/// stands for.
fn to_bytes(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let Some(encoding) = encoding(args)? else {
        return Ok(arrow::array::new_null_array(
            &DataType::Binary,
            args[0].len(),
        ));
    };
    let out: Vec<Option<Vec<u8>>> = strings(&args[0])?
        .iter()
        .enumerate()
        .map(|(row, text)| {
            let text = text?;
            let bytes = match encoding {
                Encoding::Hex => decode_hex(text),
                Encoding::Utf8 | Encoding::Ascii => Ok(text.as_bytes().to_vec()),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("'{text}' is not base64: {e}")),
            };
            match bytes {
                Ok(bytes) => Some(bytes),
                Err(message) => row_failure(row, message),
            }
        })
        .collect();
    Ok(Arc::new(BinaryArray::from_iter(out)))
}

pub(super) fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    // An odd number of digits reads as if a leading zero were written.
    let padded = if text.len() % 2 == 1 {
        format!("0{text}")
    } else {
        text.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| {
            padded
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("'{text}' is not a hex string"))
        })
        .collect()
}

fn number_from_bytes_type(args: &[DataType], result: DataType) -> Option<DataType> {
    match args {
        [b] if is_binary(b) => Some(result),
        [b, order] if is_binary(b) && is_string(order) => Some(result),
        _ => None,
    }
}

/// `INT_FROM_BYTES(bytes [, 'BIG_ENDIAN' | 'LITTLE_ENDIAN'])` and its BIGINT and DOUBLE
/// kin (told apart by their return type): exactly 4 or 8 bytes, big-endian unless told
/// otherwise.
fn number_from_bytes(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let width = if *result == DataType::Int32 { 4 } else { 8 };
    let little = match args.get(1) {
        None => false,
        Some(order) => match constant_string(order)?.map(|o| o.to_ascii_uppercase()) {
            None => false,
            Some(o) if o == "BIG_ENDIAN" => false,
            Some(o) if o == "LITTLE_ENDIAN" => true,
            Some(o) => {
                return Err(failure(format!(
                    "Byte order must be BIG_ENDIAN or LITTLE_ENDIAN, but found {o}"
                )));
            }
        },
    };
    let bytes = arrow::compute::cast(&args[0], &DataType::Binary)?;
    let mut words = Vec::with_capacity(bytes.len());
    for (row, value) in bytes.as_binary::<i32>().iter().enumerate() {
        words.push(match value {
            None => None,
            Some(b) if b.len() != width => row_failure(
                row,
                format!(
                    "Number of bytes must be equal to {width}, but found {}",
                    b.len()
                ),
            ),
            Some(b) => {
                let mut word = [0u8; 8];
                word[..width].copy_from_slice(b);
                if little {
                    word[..width].reverse();
                }
                Some(word)
            }
        });
    }
    let big_endian = |word: [u8; 8]| match width {
        4 => i64::from(i32::from_be_bytes([word[0], word[1], word[2], word[3]])),
        _ => i64::from_be_bytes(word),
    };
    Ok(match result {
        DataType::Int32 => Arc::new(Int32Array::from_iter(
            words.iter().map(|w| w.map(|w| big_endian(w) as i32)),
        )),
        DataType::Float64 => Arc::new(Float64Array::from_iter(
            words.iter().map(|w| w.map(f64::from_be_bytes)),
        )),
        _ => Arc::new(Int64Array::from_iter(
            words.iter().map(|w| w.map(big_endian)),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::eval;

    #[test]
    fn len_counts_as_java_counts() {
        assert_eq!(eval("len('hello')"), "5");
        assert_eq!(eval("len('')"), "0");
        // Two bytes, one code unit; three bytes, one; four bytes, two (a surrogate pair).
        assert_eq!(eval("len('héllo')"), "5");
        assert_eq!(eval("len('日本')"), "2");
        assert_eq!(eval("len('a😀b')"), "4");
        assert_eq!(eval("len(CAST(NULL AS VARCHAR))"), "NULL");
        assert_eq!(eval("len(to_bytes('aGVsbG8=', 'base64'))"), "5");
        assert_eq!(eval("len(CAST(NULL AS BYTEA))"), "NULL");
    }
}
