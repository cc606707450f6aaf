//! Dates and timestamps: read from text with Java patterns (`STRINGTODATE`, `PARSE_DATE`,
//! `STRINGTOTIMESTAMP`, `PARSE_TIMESTAMP`), written as text (`TIMESTAMPTOSTRING`,
//! `FORMAT_TIMESTAMP`, `DATETOSTRING`, `FORMAT_DATE`), times of day (`PARSE_TIME`,
//! `FORMAT_TIME`), wall clocks moved between zones (`CONVERT_TZ`), and epoch numbers
//! (`FROM_UNIXTIME`, `FROM_DAYS`, `UNIX_TIMESTAMP`, `UNIX_DATE`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Int32Array, Int64Array, StringArray, StringBuilder,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::time_format::{TimePattern, Zone};
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
        KsqlFunction::udf(
            "timestamptostring",
            |args| format_type(args, is_integer, true),
            format_timestamps,
        ),
        KsqlFunction::udf(
            "format_timestamp",
            |args| format_type(args, is_timestamp, true),
            format_timestamps,
        ),
        KsqlFunction::udf(
            "datetostring",
            |args| format_type(args, is_integer, false),
            format_dates,
        ),
        KsqlFunction::udf(
            "format_date",
            |args| {
                format_type(
                    args,
                    |t| matches!(t, DataType::Date32 | DataType::Null),
                    false,
                )
            },
            format_dates,
        ),
        KsqlFunction::udf(
            "convert_tz",
            |args| match args {
                [time, from, to] if is_timestamp(time) && is_string(from) && is_string(to) => {
                    Some(TIMESTAMP)
                }
                _ => None,
            },
            convert_tz,
        ),
        KsqlFunction::udf("parse_time", |args| date_type(args, TIME), parse_times),
        KsqlFunction::udf(
            "format_time",
            |args| {
                format_type(
                    args,
                    |t| matches!(t, DataType::Time32(_) | DataType::Null),
                    false,
                )
            },
            format_times,
        ),
        KsqlFunction::udf(
            "from_unixtime",
            |args| match args {
                [millis] if is_integer(millis) => Some(TIMESTAMP),
                _ => None,
            },
            |args, _| {
                let millis = arrow::compute::cast(&args[0], &DataType::Int64)?;
                Ok(arrow::compute::cast(&millis, &TIMESTAMP)?)
            },
        ),
        KsqlFunction::udf(
            "from_days",
            |args| match args {
                [days] if is_integer(days) => Some(DataType::Date32),
                _ => None,
            },
            |args, _| {
                let days = arrow::compute::cast(&args[0], &DataType::Int32)?;
                Ok(arrow::compute::cast(&days, &DataType::Date32)?)
            },
        ),
        KsqlFunction::volatile_udf(
            "unix_timestamp",
            |args| match args {
                [] => Some(DataType::Int64),
                [time] if is_timestamp(time) => Some(DataType::Int64),
                _ => None,
            },
            |args, _| match args.first() {
                None => Ok(Arc::new(Int64Array::from(vec![now_millis()]))),
                Some(time) => Ok(arrow::compute::cast(time, &DataType::Int64)?),
            },
        ),
        KsqlFunction::volatile_udf(
            "unix_date",
            |args| match args {
                [] => Some(DataType::Int32),
                [DataType::Date32 | DataType::Null] => Some(DataType::Int32),
                _ => None,
            },
            |args, _| match args.first() {
                None => Ok(Arc::new(Int32Array::from(vec![
                    now_millis().div_euclid(86_400_000) as i32,
                ]))),
                Some(date) => Ok(arrow::compute::cast(date, &DataType::Int32)?),
            },
        ),
    ]
}

/// ksqlDB's `TIMESTAMP`: milliseconds, no zone.
const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

/// ksqlDB's `TIME`: milliseconds of the day.
const TIME: DataType = DataType::Time32(TimeUnit::Millisecond);

/// `CONVERT_TZ(timestamp, from, to)`: a wall-clock time of one zone as another's.
fn convert_tz(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let rows = args[0].len();
    let mut zones = Vec::with_capacity(2);
    for zone in &args[1..3] {
        match constant_string(zone)? {
            None => return Ok(arrow::array::new_null_array(&TIMESTAMP, rows)),
            Some(zone) => zones.push(
                Zone::parse(&zone)
                    .ok_or_else(|| failure(format!("Unknown time-zone ID: {zone}")))?,
            ),
        }
    }
    let millis = arrow::compute::cast(&args[0], &DataType::Int64)?;
    let converted: TimestampMillisecondArray = millis
        .as_primitive::<Int64Type>()
        .iter()
        .enumerate()
        .map(|(row, millis)| {
            let millis = millis?;
            zones[0]
                .convert_local(millis, zones[1])
                .or_else(|| row_failure(row, format!("Timestamp {millis} is out of range")))
        })
        .collect();
    Ok(Arc::new(converted))
}

/// `PARSE_TIME(text, pattern)`: the time of day the text names (its date is ignored),
/// with each row's pattern.
fn parse_times(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let (texts, patterns) = (strings(&args[0])?, strings(&args[1])?);
    let mut last = LastPattern::default();
    let times: arrow::array::Time32MillisecondArray = (0..texts.len())
        .map(|row| {
            if texts.is_null(row) || patterns.is_null(row) {
                return None;
            }
            let text = texts.value(row);
            let parsed = last
                .compiled(patterns.value(row))
                .and_then(|pattern| pattern.parse_millis(text, 0));
            match parsed {
                Ok(millis) => Some(millis.rem_euclid(86_400_000) as i32),
                Err(e) => row_failure(row, format!("Failed to parse time '{text}': {e}")),
            }
        })
        .collect();
    Ok(Arc::new(times))
}

/// `FORMAT_TIME(time, pattern)`.
fn format_times(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let millis = arrow::compute::cast(&args[0], &DataType::Int32)?;
    let millis = arrow::compute::cast(&millis, &DataType::Int64)?;
    let patterns = strings(&args[1])?;
    Ok(format_rows(
        millis.as_primitive::<Int64Type>(),
        &patterns,
        |pattern, millis, out| pattern.write_millis(millis, Zone::UTC, out),
    ))
}

fn is_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Null
    )
}

fn is_timestamp(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(TimeUnit::Millisecond, None) | DataType::Null
    )
}

/// STRING for (a value `is_value` takes, a pattern[, a zone when `zoned`]).
fn format_type(
    args: &[DataType],
    is_value: fn(&DataType) -> bool,
    zoned: bool,
) -> Option<DataType> {
    match args {
        [value, pattern] if is_value(value) && is_string(pattern) => Some(DataType::Utf8),
        [value, pattern, zone]
            if zoned && is_value(value) && is_string(pattern) && is_string(zone) =>
        {
            Some(DataType::Utf8)
        }
        _ => None,
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The last row's pattern, compiled once for the rows after it that repeat it.
#[derive(Default)]
struct LastPattern<'a>(Option<(&'a str, Result<TimePattern, String>)>);

impl<'a> LastPattern<'a> {
    fn compiled(&mut self, text: &'a str) -> Result<&TimePattern, String> {
        let (_, compiled) = match self.0.take() {
            Some(last) if last.0 == text => self.0.insert(last),
            _ => self.0.insert((text, TimePattern::compile(text))),
        };
        compiled.as_ref().map_err(Clone::clone)
    }
}

/// Each row's value (epoch milliseconds or days) as text with its row's pattern; a
/// pattern that does not compile or a value that does not format is NULL, logged. Each
/// text is written into one reused buffer, then copied into the column.
fn format_rows(
    values: &Int64Array,
    patterns: &StringArray,
    format: impl Fn(&TimePattern, i64, &mut String) -> Result<(), String>,
) -> ArrayRef {
    let mut last = LastPattern::default();
    let mut texts = StringBuilder::with_capacity(values.len(), values.len() * 24);
    let mut text = String::new();
    for row in 0..values.len() {
        if values.is_null(row) || patterns.is_null(row) {
            texts.append_null();
            continue;
        }
        let pattern_text = patterns.value(row);
        let pattern = match last.compiled(pattern_text) {
            Ok(pattern) => pattern,
            Err(e) => {
                texts.append_option(row_failure::<&str>(
                    row,
                    format!("Invalid pattern '{pattern_text}': {e}"),
                ));
                continue;
            }
        };
        text.clear();
        match format(pattern, values.value(row), &mut text) {
            Ok(()) => texts.append_value(&text),
            Err(e) => texts.append_option(row_failure::<&str>(row, e)),
        }
    }
    Arc::new(texts.finish())
}

/// `TIMESTAMPTOSTRING(millis, pattern [, zone])` and `FORMAT_TIMESTAMP(timestamp, pattern
/// [, zone])`: in UTC without a zone.
fn format_timestamps(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let rows = args[0].len();
    let zone = match args.get(2) {
        None => Zone::UTC,
        Some(zone) => match constant_string(zone)? {
            None => return Ok(arrow::array::new_null_array(&DataType::Utf8, rows)),
            Some(zone) => Zone::parse(&zone)
                .ok_or_else(|| failure(format!("Unknown time-zone ID: {zone}")))?,
        },
    };
    let millis = arrow::compute::cast(&args[0], &DataType::Int64)?;
    let patterns = strings(&args[1])?;
    Ok(format_rows(
        millis.as_primitive::<Int64Type>(),
        &patterns,
        |pattern, millis, out| pattern.write_millis(millis, zone, out),
    ))
}

/// `DATETOSTRING(days, pattern)` and `FORMAT_DATE(date, pattern)`.
fn format_dates(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let days = arrow::compute::cast(&args[0], &DataType::Int32)?;
    let days = arrow::compute::cast(&days, &DataType::Int64)?;
    let patterns = strings(&args[1])?;
    Ok(format_rows(
        days.as_primitive::<Int64Type>(),
        &patterns,
        |pattern, days, out| pattern.write_days(days, out),
    ))
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

/// Each row's text read with its row's pattern by `parse`; a pattern that does not
/// compile or a text that does not fit it is NULL, logged.
fn parse_rows<T>(
    args: &[ArrayRef],
    what: &str,
    parse: impl Fn(&TimePattern, &str) -> Result<T, String>,
) -> Result<Vec<Option<T>>, DataFusionError> {
    let (texts, patterns) = (strings(&args[0])?, strings(&args[1])?);
    let mut last = LastPattern::default();
    Ok((0..texts.len())
        .map(|row| {
            if texts.is_null(row) || patterns.is_null(row) {
                return None;
            }
            let (text, pattern) = (texts.value(row), patterns.value(row));
            let compiled = match last.compiled(pattern) {
                Ok(compiled) => compiled,
                Err(e) => return row_failure(row, format!("Invalid pattern '{pattern}': {e}")),
            };
            match parse(compiled, text) {
                Ok(value) => Some(value),
                Err(e) => row_failure(row, format!("Failed to parse {what} '{text}': {e}")),
            }
        })
        .collect())
}

/// `STRINGTODATE(text, pattern)` (days as INT) and `PARSE_DATE(text, pattern)` (DATE).
fn parse_dates(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let days = parse_rows(args, "date", |pattern, text| {
        pattern.parse_days(text).map(|days| days as i32)
    })?;
    Ok(match result {
        DataType::Date32 => Arc::new(Date32Array::from(days)),
        _ => Arc::new(Int32Array::from(days)),
    })
}

/// `STRINGTOTIMESTAMP(text, pattern [, zone])` (BIGINT) and `PARSE_TIMESTAMP` (TIMESTAMP):
/// the text read in the zone (a fixed offset or an IANA id; UTC by default) unless it
/// names its own.
fn parse_timestamps(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let zone = match args.get(2).map(constant_string).transpose()?.flatten() {
        None => Zone::UTC,
        Some(zone) => {
            Zone::parse(&zone).ok_or_else(|| failure(format!("Unknown time-zone ID: {zone}")))?
        }
    };
    let millis = parse_rows(args, "timestamp", |pattern, text| {
        pattern.parse_millis_in(text, zone)
    })?;
    Ok(match result {
        DataType::Timestamp(..) => Arc::new(TimestampMillisecondArray::from(millis)),
        _ => Arc::new(Int64Array::from(millis)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(array: &ArrayRef) -> Vec<Option<String>> {
        array
            .as_string::<i32>()
            .iter()
            .map(|t| t.map(str::to_string))
            .collect()
    }

    fn string(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn texts_are_read_with_each_rows_pattern_in_the_zone() {
        use super::super::test_support::eval;
        assert_eq!(
            eval(
                "stringtotimestamp('2018-05-11 21:58:33', 'yyyy-MM-dd HH:mm:ss', 'America/Los_Angeles')"
            ),
            "1526101113000"
        );
        assert_eq!(
            eval(
                "stringtotimestamp('2018-05-11T21:58:33+0100', 'yyyy-MM-dd''T''HH:mm:ssZ', 'America/Los_Angeles')"
            ),
            "1526072313000"
        );
        assert_eq!(eval("stringtodate('2021-03-04', 'yyyy-MM-dd')"), "18690");
        assert_eq!(eval("stringtodate('nope', 'yyyy-MM-dd')"), "NULL");
        // A pattern per row, as a column may hold them.
        assert_eq!(
            eval(
                "MIN(stringtodate(column1, column2)) = MAX(stringtodate(column1, column2)) \
                 FROM (VALUES ('2021-03-04', 'yyyy-MM-dd'), ('04/03/2021', 'dd/MM/yyyy'))"
            ),
            "true"
        );
    }

    #[test]
    fn timestamps_are_written_with_each_rows_pattern_in_the_zone() {
        let millis: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1_526_075_913_000),
            None,
            Some(0),
            Some(0),
        ]));
        let patterns = string(&[
            Some("yyyy-MM-dd HH:mm:ss zzz"),
            Some("yyyy"),
            None,
            Some("qq"),
        ]);
        crate::functions::udf::take_row_failures();
        let out = format_timestamps(
            &[
                millis.clone(),
                patterns.clone(),
                string(&[Some("America/Los_Angeles")]),
            ],
            &DataType::Utf8,
        )
        .expect("formats");
        assert_eq!(
            texts(&out),
            [
                Some("2018-05-11 14:58:33 PDT".to_string()),
                None,
                None,
                None
            ],
            "NULL value or pattern: NULL; a bad pattern: NULL and a failure"
        );
        let failures = crate::functions::udf::take_row_failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].0, 3);
        // Without a zone: UTC. FORMAT_TIMESTAMP takes a TIMESTAMP.
        let timestamps = arrow::compute::cast(&millis, &TIMESTAMP).expect("casts");
        let out = format_timestamps(&[timestamps, string(&[Some("HH:mm"); 4])], &DataType::Utf8)
            .expect("formats");
        assert_eq!(texts(&out)[0].as_deref(), Some("21:58"));
        // An unknown zone fails the call, as ksqlDB's does.
        let unknown = format_timestamps(
            &[millis, patterns, string(&[Some("Nowhere")])],
            &DataType::Utf8,
        );
        assert!(unknown.is_err_and(|e| e.to_string().contains("Unknown time-zone ID: Nowhere")));
        crate::functions::udf::take_row_failures();
    }

    #[test]
    fn wall_clock_times_convert_between_zones_and_times_of_day_read_and_write() {
        let millis: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(100),
            Some(1_589_234_313_000),
            None,
        ]));
        let times = arrow::compute::cast(&millis, &TIMESTAMP).expect("casts");
        let as_millis = |array: ArrayRef| -> Vec<Option<i64>> {
            let array = arrow::compute::cast(&array, &DataType::Int64).expect("casts");
            array.as_primitive::<Int64Type>().iter().collect()
        };
        // ksqlDB's examples: three hours on, by offsets and by names (in May, PDT to EDT).
        for (from, to) in [
            ("+0200", "+0500"),
            ("America/Los_Angeles", "America/New_York"),
        ] {
            let out = convert_tz(
                &[times.clone(), string(&[Some(from)]), string(&[Some(to)])],
                &TIMESTAMP,
            )
            .expect("converts");
            assert_eq!(
                as_millis(out),
                [Some(10_800_100), Some(1_589_245_113_000), None],
                "{from} to {to}"
            );
        }
        let unknown = convert_tz(
            &[times, string(&[Some("UTC")]), string(&[Some("Atlantis")])],
            &TIMESTAMP,
        );
        assert!(unknown.is_err());
        // PARSE_TIME reads the time of day; FORMAT_TIME writes it.
        let written = string(&[Some("00:01:05Lit"), Some("11/05/19"), Some("25:00:00")]);
        let patterns = string(&[Some("HH:mm:ss'Lit'"); 3]);
        crate::functions::udf::take_row_failures();
        let parsed = parse_times(&[written, patterns], &TIME).expect("parses");
        assert_eq!(parsed.data_type(), &TIME);
        let failures = crate::functions::udf::take_row_failures();
        assert_eq!(
            as_millis(arrow::compute::cast(&parsed, &DataType::Int32).expect("casts")),
            [Some(65_000), None, None],
            "a text the pattern does not fit is NULL: {failures:?}"
        );
        assert_eq!(failures.len(), 2);
        let formatted = format_times(&[parsed, string(&[Some("HH.mm.ss"); 3])], &DataType::Utf8)
            .expect("formats");
        assert_eq!(
            texts(&formatted),
            [Some("00.01.05".to_string()), None, None]
        );
    }

    #[test]
    fn dates_are_written_with_each_rows_pattern() {
        let days: ArrayRef = Arc::new(Int32Array::from(vec![Some(17_662), Some(18_993), None]));
        let patterns = string(&[Some("yyyy-MM-dd"), Some("dd-MMM-yyyy"), Some("yyyy")]);
        let out =
            format_dates(&[days.clone(), patterns.clone()], &DataType::Utf8).expect("formats");
        let expected = [
            Some("2018-05-11".to_string()),
            Some("01-Jan-2022".to_string()),
            None,
        ];
        assert_eq!(texts(&out), expected);
        // FORMAT_DATE takes a DATE.
        let dates = arrow::compute::cast(&days, &DataType::Date32).expect("casts");
        let out = format_dates(&[dates, patterns], &DataType::Utf8).expect("formats");
        assert_eq!(texts(&out), expected);
    }

    #[test]
    fn epoch_numbers_convert_to_and_from_timestamps_and_dates() {
        let udf = |name: &str| {
            functions()
                .into_iter()
                .find(|f| f.name() == name)
                .expect("registered")
        };
        let call = |name: &str, args: Vec<ArrayRef>| {
            let udf = udf(name);
            let types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
            let return_type = udf.return_type(&types).expect("takes these arguments");
            let rows = args.first().map_or(1, |a| a.len());
            let fields = types
                .iter()
                .map(|t| Arc::new(arrow::datatypes::Field::new("a", t.clone(), true)))
                .collect();
            udf.invoke_with_args(datafusion::logical_expr::ScalarFunctionArgs {
                args: args
                    .into_iter()
                    .map(datafusion::logical_expr::ColumnarValue::Array)
                    .collect(),
                arg_fields: fields,
                number_rows: rows,
                return_field: Arc::new(arrow::datatypes::Field::new("r", return_type, true)),
                config_options: Arc::default(),
            })
            .expect("evaluates")
            .into_array(rows)
            .expect("an array")
        };
        let millis: ArrayRef = Arc::new(Int64Array::from(vec![Some(1_526_075_913_000), None]));
        let timestamps = call("from_unixtime", vec![millis.clone()]);
        assert_eq!(timestamps.data_type(), &TIMESTAMP);
        assert_eq!(&call("unix_timestamp", vec![timestamps]), &millis);
        let days: ArrayRef = Arc::new(Int32Array::from(vec![Some(18_993), None]));
        let dates = call("from_days", vec![days.clone()]);
        assert_eq!(dates.data_type(), &DataType::Date32);
        assert_eq!(&call("unix_date", vec![dates]), &days);
        // Without arguments: now.
        let before = now_millis();
        let now = call("unix_timestamp", Vec::new());
        let now = now.as_primitive::<Int64Type>().value(0);
        assert!(now >= before && now <= now_millis(), "{now}");
        let today = call("unix_date", Vec::new());
        let today = today.as_primitive::<arrow::datatypes::Int32Type>().value(0);
        assert_eq!(i64::from(today), now_millis() / 86_400_000);
        assert!(udf("from_days").return_type(&[DataType::Utf8]).is_err());
        assert!(
            udf("format_date")
                .return_type(&[DataType::Int32, DataType::Utf8])
                .is_err()
        );
    }
}
