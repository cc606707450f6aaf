//! Adding to and subtracting from times: `DATEADD`/`DATESUB` (DATE), `TIMEADD`/`TIMESUB`
//! (TIME, wrapping around midnight) and `TIMESTAMPADD`/`TIMESTAMPSUB` (TIMESTAMP), each
//! `f(unit, interval, value)` with a unit of Java's `TimeUnit` (`NANOSECONDS` …
//! `DAYS`).
//!
//! The unit is a keyword in ksqlDB (`DATEADD(DAYS, 1, d)`); the planner hands it over as
//! text (`plan::rewrite`), so a unit is a STRING argument here.

use std::sync::Arc;

use arrow::array::TimestampMillisecondArray;
use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Time32MillisecondArray};
use arrow::datatypes::{
    DataType, Date32Type, Time32MillisecondType, TimeUnit, TimestampMillisecondType,
};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::udf::{KsqlFunction, any_null, integers, is_string, row_failure, strings};

/// The functions' names, which take a unit keyword first.
pub const NAMES: [&str; 6] = [
    "dateadd",
    "datesub",
    "timeadd",
    "timesub",
    "timestampadd",
    "timestampsub",
];

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        KsqlFunction::udf(
            "dateadd",
            |args| shift_type(args, DataType::Date32),
            |args, result| shift(args, 1, result),
        ),
        KsqlFunction::udf(
            "datesub",
            |args| shift_type(args, DataType::Date32),
            |args, result| shift(args, -1, result),
        ),
        KsqlFunction::udf(
            "timeadd",
            |args| shift_type(args, DataType::Time32(TimeUnit::Millisecond)),
            |args, result| shift(args, 1, result),
        ),
        KsqlFunction::udf(
            "timesub",
            |args| shift_type(args, DataType::Time32(TimeUnit::Millisecond)),
            |args, result| shift(args, -1, result),
        ),
        KsqlFunction::udf(
            "timestampadd",
            |args| shift_type(args, DataType::Timestamp(TimeUnit::Millisecond, None)),
            |args, result| shift(args, 1, result),
        ),
        KsqlFunction::udf(
            "timestampsub",
            |args| shift_type(args, DataType::Timestamp(TimeUnit::Millisecond, None)),
            |args, result| shift(args, -1, result),
        ),
    ]
}

/// Whether a word is one of Java's `TimeUnit` names (upper case).
pub fn is_time_unit(word: &str) -> bool {
    unit_millis(word, 1).is_some()
}

/// `interval` units in milliseconds, truncated towards zero as `TimeUnit.toMillis`.
fn unit_millis(unit: &str, interval: i64) -> Option<i64> {
    Some(match unit {
        "NANOSECONDS" => interval / 1_000_000,
        "MICROSECONDS" => interval / 1_000,
        "MILLISECONDS" => interval,
        "SECONDS" => interval.saturating_mul(1_000),
        "MINUTES" => interval.saturating_mul(60_000),
        "HOURS" => interval.saturating_mul(3_600_000),
        "DAYS" => interval.saturating_mul(86_400_000),
        _ => return None,
    })
}

fn shift_type(args: &[DataType], value: DataType) -> Option<DataType> {
    match args {
        [unit, interval, v]
            if is_string(unit)
                && matches!(interval, DataType::Int32 | DataType::Int64 | DataType::Null)
                && (*v == value || v.is_null()) =>
        {
            Some(value)
        }
        _ => None,
    }
}

const DAY_MILLIS: i64 = 86_400_000;

/// The value moved by `sign × interval` units: a DATE by whole days (rounded down), a TIME
/// around the clock, a TIMESTAMP by milliseconds.
fn shift(args: &[ArrayRef], sign: i64, result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let units = strings(&args[0])?;
    let intervals = integers(&args[1])?;
    let rows = args[2].len();
    let moved = |row: usize| -> Option<i64> {
        if any_null(args, row) {
            return None;
        }
        let unit = units.value(row);
        match unit_millis(&unit.to_ascii_uppercase(), intervals.value(row)) {
            Some(millis) => Some(millis.saturating_mul(sign)),
            None => row_failure(row, format!("Unknown time unit: {unit}")),
        }
    };
    Ok(match args[2].data_type() {
        DataType::Date32 => {
            let dates = args[2].as_primitive::<Date32Type>();
            let out: Date32Array = (0..rows)
                .map(|row| {
                    let millis = i64::from(dates.value(row)) * DAY_MILLIS + moved(row)?;
                    i32::try_from(millis.div_euclid(DAY_MILLIS)).ok()
                })
                .collect();
            Arc::new(out)
        }
        DataType::Time32(_) => {
            let times = args[2].as_primitive::<Time32MillisecondType>();
            let out: Time32MillisecondArray = (0..rows)
                .map(|row| {
                    let millis = i64::from(times.value(row)) + moved(row)?.rem_euclid(DAY_MILLIS);
                    Some(millis.rem_euclid(DAY_MILLIS) as i32)
                })
                .collect();
            Arc::new(out)
        }
        DataType::Timestamp(..) => {
            let stamps = args[2].as_primitive::<TimestampMillisecondType>();
            let out: TimestampMillisecondArray = (0..rows)
                .map(|row| stamps.value(row).checked_add(moved(row)?))
                .collect();
            Arc::new(out)
        }
        // A NULL value: NULL out.
        _ => arrow::array::new_null_array(result, rows),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{eval, eval_error};

    #[test]
    fn dates_times_and_timestamps_move_by_units() {
        assert_eq!(
            eval("dateadd('DAYS', 10, CAST('1970-01-11' AS DATE))"),
            "1970-01-21"
        );
        assert_eq!(
            eval("datesub('DAYS', 10, CAST('1970-01-11' AS DATE))"),
            "1970-01-01"
        );
        assert_eq!(
            eval("dateadd('HOURS', 25, CAST('1970-01-01' AS DATE))"),
            "1970-01-02"
        );
        assert_eq!(
            eval("dateadd('HOURS', -1, CAST('1970-01-01' AS DATE))"),
            "1969-12-31"
        );
        assert_eq!(
            eval("timeadd('MILLISECONDS', 10, arrow_cast(CAST(86399995 AS INT), 'Time32(ms)'))"),
            "00:00:00.005"
        );
        assert_eq!(
            eval("timesub('MINUTES', 61, arrow_cast(CAST(0 AS INT), 'Time32(ms)'))"),
            "22:59:00"
        );
        assert_eq!(
            eval("timestampadd('SECONDS', 2, arrow_cast(10, 'Timestamp(ms)'))"),
            "1970-01-01T00:00:02.010"
        );
        assert_eq!(
            eval("timestampsub('MICROSECONDS', 5999, arrow_cast(10, 'Timestamp(ms)'))"),
            "1970-01-01T00:00:00.005"
        );
        assert_eq!(
            eval("dateadd('DAYS', CAST(NULL AS INT), CAST('1970-01-11' AS DATE))"),
            "NULL"
        );
        assert_eq!(
            eval("dateadd('FORTNIGHTS', 1, CAST('1970-01-11' AS DATE))"),
            "NULL"
        );
        assert!(
            eval_error("timeadd('DAYS', 1, CAST('1970-01-11' AS DATE))")
                .contains("does not accept parameters (STRING, BIGINT, DATE)")
        );
    }
}
