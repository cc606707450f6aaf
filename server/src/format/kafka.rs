//! The `KAFKA` format: Kafka's primitive serializers for a single column.
//!
//! INT is 4 bytes big-endian, BIGINT 8, DOUBLE an 8-byte IEEE-754 big-endian, STRING UTF-8,
//! BYTES raw. No coercion: a payload of the wrong size is an error.

use arrow::array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int32Array, Int64Array, StringArray,
};

use super::appender::Appender;
use crate::types::SqlType;

/// Whether the KAFKA format can carry a column of this type.
pub fn supports(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Integer | SqlType::BigInt | SqlType::Double | SqlType::String | SqlType::Bytes
    )
}

pub fn append_kafka(appender: &mut Appender, payload: &[u8]) -> Result<(), String> {
    fn sized<const N: usize>(payload: &[u8], name: &str) -> Result<[u8; N], String> {
        payload.try_into().map_err(|_| {
            format!(
                "Size of data received by {name} is not {N}, it is {}",
                payload.len()
            )
        })
    }
    let result =
        match appender {
            Appender::Integer(b) => sized::<4>(payload, "IntegerDeserializer")
                .map(|v| b.append_value(i32::from_be_bytes(v))),
            Appender::BigInt(b) => sized::<8>(payload, "LongDeserializer")
                .map(|v| b.append_value(i64::from_be_bytes(v))),
            Appender::Double(b) => sized::<8>(payload, "DoubleDeserializer")
                .map(|v| b.append_value(f64::from_be_bytes(v))),
            Appender::String(b) => {
                b.append_value(String::from_utf8_lossy(payload));
                Ok(())
            }
            Appender::Bytes(b) => {
                b.append_value(payload);
                Ok(())
            }
            _ => Err("the KAFKA format only carries INT, BIGINT, DOUBLE, STRING and BYTES".into()),
        };
    if result.is_err() {
        appender.append_null();
    }
    result
}

pub fn encode_kafka(array: &ArrayRef, row: usize) -> Option<Vec<u8>> {
    if array.is_null(row) {
        return None;
    }
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<Int32Array>() {
        return Some(a.value(row).to_be_bytes().to_vec());
    }
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(a.value(row).to_be_bytes().to_vec());
    }
    if let Some(a) = any.downcast_ref::<Float64Array>() {
        return Some(a.value(row).to_be_bytes().to_vec());
    }
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Some(a.value(row).as_bytes().to_vec());
    }
    if let Some(a) = any.downcast_ref::<BinaryArray>() {
        return Some(a.value(row).to_vec());
    }
    None
}
