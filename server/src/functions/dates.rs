//! Reading dates and timestamps from text with Java patterns: `STRINGTODATE`,
//! `PARSE_DATE`, `STRINGTOTIMESTAMP` and `PARSE_TIMESTAMP`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Int32Array, Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::time_format::{TimePattern, zone_offset_minutes};
use super::udf::{KsqlFunction, constant_string, failure, is_string, row_failure, strings};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf(
            "stringtodate",
            |args| date_type(args, DataType::Int32),
            parse_dates,
        ),
        KsqlFunction::udf(
            "parse_date",
            |args| date_type(args, DataType::Date32),
            parse_dates,
        ),
        KsqlFunction::udf(
            "stringtotimestamp",
            |args| timestamp_type(args, DataType::Int64),
            parse_timestamps,
        ),
        KsqlFunction::udf(
            "parse_timestamp",
            |args| timestamp_type(args, DataType::Timestamp(TimeUnit::Millisecond, None)),
            parse_timestamps,
        ),
    ]
}

fn date_type(args: &[DataType], result: DataType) -> Option<DataType> {
    match args {
        [text, pattern] if is_string(text) && is_string(pattern) => Some(result),
        _ => None,
    }
}

fn timestamp_type(args: &[DataType], result: DataType) -> Option<DataType> {
    match args {
        [text, pattern] if is_string(text) && is_string(pattern) => Some(result),
        [text, pattern, zone] if is_string(text) && is_string(pattern) && is_string(zone) => {
            Some(result)
        }
        _ => None,
    }
}

fn pattern(args: &[ArrayRef]) -> Result<Option<TimePattern>, DataFusionError> {
    constant_string(&args[1])?
        .map(|p| TimePattern::compile(&p).map_err(failure))
        .transpose()
}

/// `STRINGTODATE(text, pattern)` (days as INT) and `PARSE_DATE(text, pattern)` (DATE).
fn parse_dates(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let Some(pattern) = pattern(args)? else {
        return Ok(arrow::array::new_null_array(result, args[0].len()));
    };
    let days: Vec<Option<i32>> = strings(&args[0])?
        .iter()
        .enumerate()
        .map(|(row, text)| {
            let text = text?;
            match pattern.parse_days(text) {
                Ok(days) => Some(days as i32),
                Err(e) => row_failure(row, format!("Failed to parse date '{text}': {e}")),
            }
        })
        .collect();
    Ok(match result {
        DataType::Date32 => Arc::new(Date32Array::from(days)),
        _ => Arc::new(Int32Array::from(days)),
    })
}

/// `STRINGTOTIMESTAMP(text, pattern [, zone])` (BIGINT) and `PARSE_TIMESTAMP` (TIMESTAMP).
fn parse_timestamps(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let Some(pattern) = pattern(args)? else {
        return Ok(arrow::array::new_null_array(result, args[0].len()));
    };
    let offset = match args.get(2) {
        None => 0,
        Some(zone) => match constant_string(zone)? {
            None => 0,
            Some(zone) => zone_offset_minutes(&zone)
                .ok_or_else(|| failure(format!("Unknown time-zone ID: {zone}")))?,
        },
    };
    let millis: Vec<Option<i64>> = strings(&args[0])?
        .iter()
        .enumerate()
        .map(|(row, text)| {
            let text = text?;
            match pattern.parse_millis(text, offset) {
                Ok(millis) => Some(millis),
                Err(e) => row_failure(row, format!("Failed to parse timestamp '{text}': {e}")),
            }
        })
        .collect();
    Ok(match result {
        DataType::Timestamp(..) => Arc::new(TimestampMillisecondArray::from(millis)),
        _ => Arc::new(Int64Array::from(millis)),
    })
}
