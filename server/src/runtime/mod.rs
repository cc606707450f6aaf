//! Push-based operators on Arrow batches: records of a source partition decode into a batch
//! ([`SourceDecoder`]), a plan filters and projects it, and rows encode back into records
//! for a sink topic ([`SinkEncoder`]).

pub mod aggregate;
pub mod arena_map;
pub mod join;
pub mod state;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, Int32Array,
    Int64Array, ListBuilder, StringBuilder, StructBuilder,
};
use arrow::datatypes::{DataType, Int64Type, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use riffle_grammar::ast::SourceKind;

use crate::catalog::{Source, headers_type};
use crate::format::{self, FormatSpec, RowDecoder};
use crate::functions::time_format::TimePattern;
use crate::log::{ProducerRecord, Record};
use crate::types::SqlType;

/// A record that could not be read, for the processing log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub message: String,
    /// The record stops the query instead of being skipped (an invalid timestamp under
    /// `ksql.timestamp.throw.on.invalid`).
    pub fatal: bool,
}

/// Decodes a source's records into batches of its Arrow schema.
#[derive(Debug)]
pub struct SourceDecoder {
    source: Source,
    key_columns: Vec<(String, SqlType)>,
    value_columns: Vec<(String, SqlType)>,
    header_columns: Vec<(String, Option<String>)>,
    /// `TIMESTAMP_FORMAT`, for a string `TIMESTAMP` column.
    timestamp_pattern: Option<TimePattern>,
    /// The value columns left NULL without decoding (see [`SourceDecoder::reading_only`]).
    skipped_values: Vec<bool>,
    /// A record without a valid time stops the query instead of being skipped.
    fail_on_invalid_timestamp: bool,
}

impl SourceDecoder {
    pub fn new(source: Source) -> Self {
        Self {
            header_columns: source.header_columns(),
            timestamp_pattern: source
                .timestamp_format
                .as_deref()
                .and_then(|p| TimePattern::compile(p).ok()),
            key_columns: source.key_columns(),
            skipped_values: vec![false; source.value_columns().len()],
            value_columns: source.value_columns(),
            source,
            fail_on_invalid_timestamp: false,
        }
    }

    /// Makes a record without a valid time a fatal error, as ksqlDB's
    /// `ksql.timestamp.throw.on.invalid` does.
    pub fn failing_on_invalid_timestamps(mut self, fail: bool) -> Self {
        self.fail_on_invalid_timestamp = fail;
        self
    }

    /// Decodes only the value columns a query reads (`used`, by name) and the timestamp
    /// column, where skipping a column cannot hide an error: JSON STRING columns, which
    /// take any value. The others are NULL in the batches.
    pub fn reading_only(mut self, used: &std::collections::HashSet<String>) -> Self {
        if self.source.value_format.format != crate::format::Format::Json {
            return self;
        }
        let timestamp = self.source.timestamp.as_deref();
        self.skipped_values = self
            .value_columns
            .iter()
            .map(|(name, ty)| {
                *ty == SqlType::String
                    && !used.contains(name)
                    && !timestamp.is_some_and(|t| t.eq_ignore_ascii_case(name))
            })
            .collect();
        self
    }

    /// The first record of `records` (those with a value) that must stop the query: one
    /// without a valid time when the decoder fails on those. `None` otherwise, at no cost.
    pub fn first_fatal(&self, records: &[Record], partition: i32) -> Option<RecordError> {
        if !self.fail_on_invalid_timestamp {
            return None;
        }
        let (_, errors) = self.decode_records(records, partition, false);
        let valued = |offset: i64| {
            records
                .binary_search_by_key(&offset, |r| r.offset)
                .is_ok_and(|at| records[at].value.is_some())
        };
        errors
            .into_iter()
            .filter(|e| e.fatal && valued(e.offset))
            .min_by_key(|e| e.offset)
    }

    /// Decodes records of one partition. Records that fail to decode are left out and
    /// reported; on a stream, records with a null value are skipped, as ksqlDB does.
    pub fn decode(&self, records: &[Record], partition: i32) -> (RecordBatch, Vec<RecordError>) {
        self.decode_records(records, partition, false)
    }

    /// Decodes records of one partition as [`SourceDecoder::decode`] does, but keeps a
    /// stream's records without a value, as rows whose value columns are NULL (their key
    /// still gives a `PARTITION BY` key).
    pub fn decode_keeping_null_values(
        &self,
        records: &[Record],
        partition: i32,
    ) -> (RecordBatch, Vec<RecordError>) {
        self.decode_records(records, partition, true)
    }

    fn decode_records(
        &self,
        records: &[Record],
        partition: i32,
        keep_null_values: bool,
    ) -> (RecordBatch, Vec<RecordError>) {
        let count = records.len();
        let mut keys = RowDecoder::new(
            self.source.key_format.clone(),
            self.key_columns.clone(),
            count,
        );
        let mut values = RowDecoder::new(
            self.source.value_format.clone(),
            self.value_columns.clone(),
            count,
        )
        .skipping(self.skipped_values.clone());
        let mut keep = Vec::with_capacity(count);
        let mut errors = Vec::new();
        let mut bounds = self
            .source
            .window
            .map(|_| (Vec::with_capacity(count), Vec::with_capacity(count)));
        for record in records {
            let key_bytes = match (self.source.window, &mut bounds) {
                (Some(kind), Some((starts, ends))) => {
                    let (inner, window) =
                        aggregate::split_windowed_key(record.key.as_deref(), kind);
                    starts.push(window.map(|w| w.0));
                    ends.push(window.map(|w| w.1));
                    inner
                }
                _ => record.key.as_deref(),
            };
            let key = keys.decode(key_bytes);
            let value = values.decode(record.value.as_deref());
            let skipped = record.value.is_none()
                && self.source.kind == SourceKind::Stream
                && !keep_null_values;
            let error = key
                .err()
                .map(|e| format!("Failed to deserialize key: {e}"))
                .or_else(|| {
                    value
                        .err()
                        .map(|e| format!("Failed to deserialize value: {e}"))
                });
            if let Some(message) = &error {
                errors.push(RecordError {
                    topic: self.source.topic.clone(),
                    partition,
                    offset: record.offset,
                    message: message.clone(),
                    fatal: false,
                });
            }
            keep.push(error.is_none() && !skipped);
        }
        let mut columns: Vec<ArrayRef> = keys.finish();
        columns.extend(values.finish());
        for (_, key) in &self.header_columns {
            columns.push(match key {
                Some(key) => header_values(records, key),
                None => all_headers(records),
            });
        }
        let rowtime = self.rowtime(records, &columns);
        // A record without a valid time (negative, or text the format does not read) is
        // skipped, as ksqlDB's timestamp extractor skips it.
        if let Some(times) = rowtime.as_primitive_opt::<Int64Type>() {
            for (row, record) in records.iter().enumerate() {
                let valid = times.is_valid(row) && times.value(row) >= 0;
                if !valid && keep[row] {
                    keep[row] = false;
                    let fatal = self.fail_on_invalid_timestamp;
                    let message = match fatal {
                        true => format!(
                            "Fatal user code error in TimestampExtractor callback for record \
                             (topic {}, partition {partition}, offset {}): the record has no \
                             valid time (it is negative, NULL or not in TIMESTAMP_FORMAT)",
                            self.source.topic, record.offset
                        ),
                        false => "Invalid timestamp: the record has no valid time (it is \
                                  negative, NULL or not in TIMESTAMP_FORMAT); it is skipped"
                            .into(),
                    };
                    errors.push(RecordError {
                        topic: self.source.topic.clone(),
                        partition,
                        offset: record.offset,
                        message,
                        fatal,
                    });
                }
            }
        }
        columns.push(rowtime);
        columns.push(Arc::new(Int32Array::from(vec![partition; count])));
        columns.push(Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.offset),
        )));
        if let Some((starts, ends)) = bounds {
            columns.push(Arc::new(Int64Array::from(starts)));
            columns.push(Arc::new(Int64Array::from(ends)));
        }
        let batch = RecordBatch::try_new(self.source.arrow_schema(), columns)
            .expect("decoders build one column per field, of its type");
        if keep.iter().all(|k| *k) {
            return (batch, errors);
        }
        let mask = BooleanArray::from(keep);
        let batch = arrow::compute::filter_record_batch(&batch, &mask)
            .expect("the mask has one entry per row");
        (batch, errors)
    }

    /// ROWTIME: the record timestamp, or the `TIMESTAMP` column's value.
    fn rowtime(&self, records: &[Record], columns: &[ArrayRef]) -> ArrayRef {
        let from_records = || -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                records.iter().map(|r| r.timestamp),
            ))
        };
        let Some(name) = &self.source.timestamp else {
            return from_records();
        };
        let index = self
            .key_columns
            .iter()
            .chain(&self.value_columns)
            .position(|(column, _)| column == name);
        let Some(column) = index.map(|i| &columns[i]) else {
            return from_records();
        };
        if let Some(values) = column.as_primitive_opt::<Int64Type>() {
            return Arc::new(values.clone());
        }
        if let Some(values) = column.as_primitive_opt::<TimestampMillisecondType>() {
            return Arc::new(Int64Array::new(
                values.values().clone(),
                values.nulls().cloned(),
            ));
        }
        if let (Some(pattern), Some(texts)) =
            (&self.timestamp_pattern, column.as_string_opt::<i32>())
        {
            return Arc::new(Int64Array::from_iter(
                texts
                    .iter()
                    .map(|t| t.and_then(|t| pattern.parse_millis(t, 0).ok())),
            ));
        }
        from_records()
    }
}

/// A `HEADER('key')` column: the value of the last header with that key.
fn header_values(records: &[Record], key: &str) -> ArrayRef {
    Arc::new(BinaryArray::from_iter(records.iter().map(|record| {
        record
            .headers
            .iter()
            .rev()
            .find(|header| header.key == key)
            .and_then(|header| header.value.as_deref())
    })))
}

/// A `HEADERS` column: every header of the record, in order, as `{KEY, VALUE}` structs.
fn all_headers(records: &[Record]) -> ArrayRef {
    let DataType::List(item) = headers_type().to_arrow() else {
        unreachable!("HEADERS is an array type");
    };
    let DataType::Struct(fields) = item.data_type().clone() else {
        unreachable!("HEADERS holds structs");
    };
    let entries = StructBuilder::new(
        fields,
        vec![
            Box::new(StringBuilder::new()) as Box<dyn ArrayBuilder>,
            Box::new(BinaryBuilder::new()),
        ],
    );
    let mut list = ListBuilder::new(entries).with_field(item);
    for record in records {
        let entries = list.values();
        for header in &record.headers {
            entries
                .field_builder::<StringBuilder>(0)
                .expect("field 0 is the key")
                .append_value(&header.key);
            entries
                .field_builder::<BinaryBuilder>(1)
                .expect("field 1 is the value")
                .append_option(header.value.as_deref());
            entries.append(true);
        }
        list.append(true);
    }
    Arc::new(list.finish())
}

/// Encodes rows of a query's output into records for a sink.
#[derive(Debug, Clone)]
pub struct SinkEncoder {
    pub key_columns: Vec<(String, SqlType)>,
    pub value_columns: Vec<(String, SqlType)>,
    pub key_format: FormatSpec,
    pub value_format: FormatSpec,
    /// The sink's `TIMESTAMP` column: records take their time from it, and rows where it
    /// is NULL or negative get the time -1, which the query drops.
    pub timestamp_column: Option<String>,
    /// How the sink's keys are windowed: each key ends with its row's window.
    pub window: Option<crate::plan::aggregate::WindowKind>,
    /// The sink topic's partitions (`None` without a sink topic): a windowed record goes to
    /// the partition its key without the window hashes to, as Kafka Streams'
    /// `WindowedStreamPartitioner` places it, so that all windows of a key share one.
    pub partitions: Option<i32>,
    /// The records keep their input's key columns (no PARTITION BY, grouping or join): a
    /// row whose key columns are all NULL was read from a record without a key and is
    /// written without one, as ksqlDB passes the missing key on (a new key of NULLs, from
    /// PARTITION BY, is still a key).
    pub keeps_input_key: bool,
}

impl SinkEncoder {
    /// The columns the sink records carry.
    pub fn schema(&self) -> crate::types::LogicalSchema {
        crate::types::LogicalSchema::from_key_and_value_columns(
            &self.key_columns,
            &self.value_columns,
        )
    }

    /// Appends a window to a record's key (for a windowed sink), placing the record by the
    /// key without it.
    pub fn window_record(&self, record: &mut ProducerRecord, start: i64, end: i64) {
        let Some(kind) = self.window else {
            return;
        };
        let key = record.key.as_deref().unwrap_or_default();
        if let (Some(partitions), Some(_)) = (self.partitions, &record.key) {
            record.partition = Some(crate::log::partitioner::partition_for_key(key, partitions));
        }
        record.key = Some(aggregate::windowed_key(key, kind, start, end));
    }

    /// One record per row; `rowtime` gives each record's timestamp.
    pub fn encode(&self, output: &RecordBatch, rowtime: &ArrayRef) -> Vec<ProducerRecord> {
        // Functions may return other Arrow types for the same SQL type (`Utf8View` for a
        // STRING): every column is cast to the sink's declared type first.
        let pick = |columns: &[(String, SqlType)]| -> Vec<ArrayRef> {
            columns
                .iter()
                .map(|(name, ty)| {
                    let target = ty.to_arrow();
                    match output.column_by_name(name) {
                        Some(array) if array.data_type() == &target => array.clone(),
                        Some(array) => arrow::compute::cast(array, &target).unwrap_or_else(|_| {
                            arrow::array::new_null_array(&target, output.num_rows())
                        }),
                        None => arrow::array::new_null_array(&target, output.num_rows()),
                    }
                })
                .collect()
        };
        let keys = pick(&self.key_columns);
        let values = pick(&self.value_columns);
        let sink_times = self
            .timestamp_column
            .as_ref()
            .and_then(|name| output.column_by_name(name))
            .and_then(|column| arrow::compute::cast(column, &DataType::Int64).ok())
            .map(|column| {
                let times = column.as_primitive::<Int64Type>();
                Int64Array::from_iter_values((0..times.len()).map(|row| {
                    if times.is_valid(row) {
                        times.value(row).max(-1)
                    } else {
                        -1
                    }
                }))
            });
        let times = match &sink_times {
            Some(times) => Some(times),
            None => rowtime.as_primitive_opt::<Int64Type>(),
        };
        let rows = output.num_rows();
        // One buffer for all keys and one for all values: records slice them, so a batch
        // costs two allocations, not two per row.
        let mut scratch = String::new();
        let mut encode_all = |spec: &FormatSpec,
                              columns: &[(String, SqlType)],
                              arrays: &[ArrayRef],
                              missing_when_all_null: bool| {
            let own_scales = format::own_scales(output, columns.iter().map(|(n, _)| n.as_str()));
            let mut buffer = Vec::with_capacity(rows * 32);
            let mut ranges = Vec::with_capacity(rows);
            for row in 0..rows {
                if missing_when_all_null && arrays.iter().all(|a| a.is_null(row)) {
                    ranges.push(None);
                    continue;
                }
                let start = buffer.len();
                let present = format::encode_into(
                    spec,
                    columns,
                    arrays,
                    &own_scales,
                    row,
                    &mut buffer,
                    &mut scratch,
                );
                ranges.push(present.then_some(start..buffer.len()));
            }
            let buffer = Bytes::from(buffer);
            ranges
                .into_iter()
                .map(|range| range.map(|r| buffer.slice(r)))
                .collect::<Vec<_>>()
        };
        let encoded_keys = encode_all(
            &self.key_format,
            &self.key_columns,
            &keys,
            self.keeps_input_key,
        );
        let encoded_values = encode_all(&self.value_format, &self.value_columns, &values, false);
        encoded_keys
            .into_iter()
            .zip(encoded_values)
            .enumerate()
            .map(|(row, (key, value))| ProducerRecord {
                partition: None,
                timestamp: times.filter(|t| !t.is_null(row)).map(|t| t.value(row)),
                key,
                value,
                headers: Vec::new(),
            })
            .collect()
    }
}
