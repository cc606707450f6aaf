//! [`Materialized`]: the current rows of a table, by key, for pull queries: a table an
//! aggregation or a query over a table writes, or a source table. Every change is applied
//! (a row replaces the key's row, a tombstone removes it); a pull query reads a snapshot as
//! one batch. A windowed table keeps a window for its retention: once the latest window
//! start is more than the retention past a window's start, the window is let go, as
//! Kafka Streams' window stores drop their old segments.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use parking_lot::Mutex;

use crate::log::ProducerRecord;
use crate::runtime::arena_map::ArenaMap;
use crate::types::SqlType;

#[derive(Debug)]
pub struct Materialized {
    /// Key columns, then the window bounds (windowed tables), then value columns, then
    /// `ROWTIME`.
    schema: SchemaRef,
    key_columns: Vec<(String, SqlType)>,
    value_columns: Vec<(String, SqlType)>,
    /// How the table's keys are written (a lookup encodes the key it is given).
    key_format: crate::format::FormatSpec,
    /// A windowed table's retention, and the window starts it has seen; `None` for a table
    /// that is not windowed.
    retention: Option<Mutex<Retention>>,
    /// Rows by their record key bytes (window included): one-row slices of the batches
    /// the changes came in, copied together from time to time (see [`Rows::compact`]),
    /// or, when every column's type allows it, Arrow's compact row format (by key bytes,
    /// in an [`ArenaMap`]: a row costs its bytes and a few words).
    rows: Mutex<Rows>,
    encoded: Option<(RowConverter, Mutex<EncodedRows>)>,
}

/// When a windowed table lets its old windows go.
#[derive(Debug)]
struct Retention {
    /// Milliseconds of stream time (window starts) a window is kept for.
    keep_for: i64,
    /// The latest window start applied.
    latest_start: i64,
    /// `latest_start` at the last sweep.
    swept_at: i64,
}

impl Retention {
    /// Notes the windows applied; the oldest start still kept when a sweep is due (once
    /// per half retention).
    fn sweep_due(&mut self, windows: &[Option<(i64, i64)>]) -> Option<i64> {
        let latest = windows.iter().flatten().map(|w| w.0).max()?;
        self.latest_start = self.latest_start.max(latest);
        if self.latest_start.saturating_sub(self.swept_at) < (self.keep_for / 2).max(1) {
            return None;
        }
        self.swept_at = self.latest_start;
        Some(
            self.latest_start
                .saturating_sub(self.keep_for)
                .saturating_add(1),
        )
    }
}

/// The window start of a windowed table's record key: its last eight bytes.
fn window_start(key: &[u8]) -> Option<i64> {
    let start = key.len().checked_sub(8)?;
    Some(i64::from_be_bytes(key[start..].try_into().ok()?))
}

/// Rows in Arrow's row format, by key bytes.
type EncodedRows = ArenaMap<Box<[u8]>>;

#[derive(Debug, Default)]
struct Rows {
    by_key: BTreeMap<bytes::Bytes, RecordBatch>,
    /// Changes applied since the last compaction.
    applied: usize,
}

impl Rows {
    /// A row slice keeps its whole batch alive: once the changes applied outnumber twice
    /// the live rows, the rows are copied into one batch and sliced from it, so memory
    /// stays within a few times the table's size.
    fn compact(&mut self, schema: &SchemaRef) {
        if self.applied < 10_000.max(2 * self.by_key.len()) {
            return;
        }
        self.applied = 0;
        let Ok(all) = arrow::compute::concat_batches(schema, self.by_key.values()) else {
            return;
        };
        for (row, slot) in self.by_key.values_mut().enumerate() {
            *slot = all.slice(row, 1);
        }
    }
}

impl Materialized {
    pub fn new(
        key_columns: Vec<(String, SqlType)>,
        value_columns: Vec<(String, SqlType)>,
        key_format: crate::format::FormatSpec,
        window_retention: Option<i64>,
    ) -> Materialized {
        let field = |(name, ty): &(String, SqlType)| Field::new(name, ty.to_arrow(), true);
        let bounds = crate::plan::aggregate::WINDOW_BOUNDS
            .iter()
            .filter(|_| window_retention.is_some())
            .map(|name| Field::new(*name, DataType::Int64, true));
        let fields: Vec<Field> = key_columns
            .iter()
            .map(field)
            .chain(bounds)
            .chain(value_columns.iter().map(field))
            .chain([Field::new("ROWTIME", DataType::Int64, true)])
            .collect();
        let sort_fields: Vec<SortField> = fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let encoded = RowConverter::supports_fields(&sort_fields)
            .then(|| RowConverter::new(sort_fields).ok())
            .flatten()
            .map(|converter| (converter, Mutex::new(ArenaMap::default())));
        Materialized {
            encoded,
            schema: Arc::new(Schema::new(fields)),
            key_columns,
            value_columns,
            key_format,
            retention: window_retention.map(|keep_for| {
                Mutex::new(Retention {
                    keep_for,
                    latest_start: i64::MIN,
                    swept_at: i64::MIN,
                })
            }),
            rows: Mutex::new(Rows::default()),
        }
    }

    fn windowed(&self) -> bool {
        self.retention.is_some()
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The names of the key columns (and the window bounds, for windowed tables).
    pub fn key_names(&self) -> Vec<String> {
        let bounds = crate::plan::aggregate::WINDOW_BOUNDS
            .iter()
            .filter(|_| self.windowed())
            .map(|name| name.to_string());
        self.key_columns
            .iter()
            .map(|(name, _)| name.clone())
            .chain(bounds)
            .collect()
    }

    /// Applies the sink records of a query's output: a record without a value deletes its
    /// key; any other record's row is `output`'s row at the same index, `timestamps` its
    /// time and `windows` (windowed tables) its window.
    pub fn apply(
        &self,
        output: &RecordBatch,
        timestamps: &Int64Array,
        windows: &[Option<(i64, i64)>],
        records: &[ProducerRecord],
    ) {
        let rows = output.num_rows();
        let column = |(name, ty): &(String, SqlType)| -> ArrayRef {
            let target = ty.to_arrow();
            match output.column_by_name(name) {
                Some(array) if array.data_type() == &target => array.clone(),
                Some(array) => arrow::compute::cast(array, &target)
                    .unwrap_or_else(|_| arrow::array::new_null_array(&target, rows)),
                None => arrow::array::new_null_array(&target, rows),
            }
        };
        let mut columns: Vec<ArrayRef> = self.key_columns.iter().map(column).collect();
        if self.windowed() {
            let bound = |pick: fn((i64, i64)) -> i64| -> ArrayRef {
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|row| windows.get(row).copied().flatten().map(pick)),
                ))
            };
            columns.push(bound(|w| w.0));
            columns.push(bound(|w| w.1));
        }
        columns.extend(self.value_columns.iter().map(column));
        columns.push(Arc::new(timestamps.clone()));
        let Ok(batch) = RecordBatch::try_new(self.schema.clone(), columns) else {
            tracing::warn!("a table's rows could not be materialized");
            return;
        };
        let keep_from = self
            .retention
            .as_ref()
            .and_then(|retention| retention.lock().sweep_due(windows));
        let expired =
            |key: &[u8]| keep_from.is_some_and(|from| window_start(key).is_some_and(|s| s < from));
        if let Some((converter, table)) = &self.encoded
            && let Ok(encoded) = converter.convert_columns(batch.columns())
        {
            let mut table = table.lock();
            for (row, record) in records.iter().enumerate().take(rows) {
                let key = record.key.as_deref().unwrap_or_default();
                match record.value {
                    None => {
                        table.remove(key);
                    }
                    Some(_) => {
                        table.insert(key, encoded.row(row).data().into());
                    }
                }
            }
            if keep_from.is_some() {
                let old: Vec<Box<[u8]>> = table
                    .iter()
                    .filter(|(key, _)| expired(key))
                    .map(|(key, _)| key.into())
                    .collect();
                for key in old {
                    table.remove(&key);
                }
            }
            return;
        }
        let mut table = self.rows.lock();
        for (row, record) in records.iter().enumerate().take(rows) {
            let key = record.key.clone().unwrap_or_default();
            match record.value {
                None => table.by_key.remove(&key),
                Some(_) => table.by_key.insert(key, batch.slice(row, 1)),
            };
        }
        if keep_from.is_some() {
            table.by_key.retain(|key, _| !expired(key));
        }
        table.applied += rows;
        table.compact(&self.schema);
    }

    /// The row of one key of a table that is not windowed, given as its key columns' text
    /// (one each, in order); `None` when the text does not fit the key's type, an empty
    /// batch when the key has no row.
    pub fn lookup(&self, key: &[&str]) -> Option<RecordBatch> {
        if self.windowed() || key.len() != self.key_columns.len() || key.is_empty() {
            return None;
        }
        let arrays: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .zip(key)
            .map(|((_, ty), text)| {
                let text: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![*text]));
                arrow::compute::cast(&text, &ty.to_arrow())
                    .ok()
                    .filter(|a| a.null_count() == 0)
            })
            .collect::<Option<_>>()?;
        let mut bytes = Vec::new();
        let mut scratch = String::new();
        crate::format::encode_into(
            &self.key_format,
            &self.key_columns,
            &arrays,
            &[],
            0,
            &mut bytes,
            &mut scratch,
        )
        .then_some(())?;
        let empty = || RecordBatch::new_empty(self.schema.clone());
        if let Some((converter, table)) = &self.encoded {
            let table = table.lock();
            let Some(row) = table.get(bytes.as_slice()) else {
                return Some(empty());
            };
            let columns = converter
                .convert_rows([converter.parser().parse(row)])
                .ok()?;
            return RecordBatch::try_new(self.schema.clone(), columns).ok();
        }
        let table = self.rows.lock();
        Some(
            table
                .by_key
                .get(bytes.as_slice())
                .cloned()
                .unwrap_or_else(empty),
        )
    }

    /// Every current row, in key order (a windowed table's within its retention).
    pub fn snapshot(&self) -> RecordBatch {
        let retained = self.retention.as_ref().map(|r| {
            let r = r.lock();
            r.latest_start.saturating_sub(r.keep_for).saturating_add(1)
        });
        let kept =
            |key: &[u8]| retained.is_none_or(|from| window_start(key).is_none_or(|s| s >= from));
        if let Some((converter, table)) = &self.encoded {
            let table = table.lock();
            let mut rows: Vec<(&[u8], &Box<[u8]>)> =
                table.iter().filter(|(key, _)| kept(key)).collect();
            rows.sort_unstable_by_key(|(key, _)| *key);
            let parser = converter.parser();
            let columns = converter.convert_rows(rows.iter().map(|(_, row)| parser.parse(row)));
            if let Ok(batch) = columns.and_then(|c| RecordBatch::try_new(self.schema.clone(), c)) {
                return batch;
            }
        }
        let table = self.rows.lock();
        let rows: Vec<&RecordBatch> = table
            .by_key
            .iter()
            .filter(|(key, _)| kept(key))
            .map(|(_, row)| row)
            .collect();
        arrow::compute::concat_batches(&self.schema, rows)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.schema.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Format, FormatSpec};
    use crate::plan::aggregate::WindowKind;
    use crate::runtime::aggregate::windowed_key;

    /// Applies a row of key `id` in the 10 ms window starting at each of `starts`.
    fn apply_windows(table: &Materialized, id: i64, starts: &[i64]) {
        let rows = starts.len();
        let schema = Arc::new(Schema::new(vec![
            Field::new("ID", DataType::Int64, true),
            Field::new("N", DataType::Int64, true),
        ]));
        let output = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![id; rows])),
                Arc::new(Int64Array::from(vec![1; rows])),
            ],
        )
        .expect("a valid batch");
        let kind = WindowKind::Tumbling { size: 10 };
        let records: Vec<ProducerRecord> = starts
            .iter()
            .map(|&start| ProducerRecord {
                key: Some(windowed_key(&id.to_be_bytes(), kind, start, start + 10)),
                value: Some(bytes::Bytes::from_static(b"{}")),
                ..ProducerRecord::default()
            })
            .collect();
        let windows: Vec<Option<(i64, i64)>> = starts.iter().map(|&s| Some((s, s + 10))).collect();
        table.apply(
            &output,
            &Int64Array::from(starts.to_vec()),
            &windows,
            &records,
        );
    }

    #[test]
    fn a_windowed_table_lets_windows_go_once_they_are_past_its_retention() {
        let table = Materialized::new(
            vec![("ID".into(), SqlType::BigInt)],
            vec![("N".into(), SqlType::BigInt)],
            FormatSpec::new(Format::Kafka),
            Some(100),
        );
        apply_windows(&table, 1, &[0, 50]);
        apply_windows(&table, 2, &[100]);
        let starts = |table: &Materialized| -> Vec<i64> {
            let snapshot = table.snapshot();
            let column = snapshot
                .column_by_name("WINDOWSTART")
                .expect("window bounds");
            let mut starts: Vec<i64> = column
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("BIGINT starts")
                .values()
                .to_vec();
            starts.sort_unstable();
            starts
        };
        // A window is kept while its start is within 100 ms of the latest start (100).
        assert_eq!(starts(&table), [50, 100]);
        apply_windows(&table, 1, &[260]);
        assert_eq!(starts(&table), [260]);
    }
}
