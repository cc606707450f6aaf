//! [`Materialized`]: the current rows of a table, by key, for pull queries: a table an
//! aggregation or a query over a table writes, or a source table. Every change is applied
//! (a row replaces the key's row, a tombstone removes it); a pull query reads a snapshot as
//! one batch.

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
    windowed: bool,
    /// Rows by their record key bytes (window included): one-row slices of the batches
    /// the changes came in, copied together from time to time (see [`Rows::compact`]),
    /// or, when every column's type allows it, Arrow's compact row format (by key bytes,
    /// in an [`ArenaMap`]: a row costs its bytes and a few words).
    rows: Mutex<Rows>,
    encoded: Option<(RowConverter, Mutex<EncodedRows>)>,
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
        windowed: bool,
    ) -> Materialized {
        let field = |(name, ty): &(String, SqlType)| Field::new(name, ty.to_arrow(), true);
        let bounds = crate::plan::aggregate::WINDOW_BOUNDS
            .iter()
            .filter(|_| windowed)
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
            windowed,
            rows: Mutex::new(Rows::default()),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The names of the key columns (and the window bounds, for windowed tables).
    pub fn key_names(&self) -> Vec<String> {
        let bounds = crate::plan::aggregate::WINDOW_BOUNDS
            .iter()
            .filter(|_| self.windowed)
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
        if self.windowed {
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
        table.applied += rows;
        table.compact(&self.schema);
    }

    /// The row of one key of a table that is not windowed, given as its key columns' text
    /// (one each, in order); `None` when the text does not fit the key's type, an empty
    /// batch when the key has no row.
    pub fn lookup(&self, key: &[&str]) -> Option<RecordBatch> {
        if self.windowed || key.len() != self.key_columns.len() || key.is_empty() {
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

    /// Every current row, in key order.
    pub fn snapshot(&self) -> RecordBatch {
        if let Some((converter, table)) = &self.encoded {
            let table = table.lock();
            let mut rows: Vec<(&[u8], &Box<[u8]>)> = table.iter().collect();
            rows.sort_unstable_by_key(|(key, _)| *key);
            let parser = converter.parser();
            let columns = converter.convert_rows(rows.iter().map(|(_, row)| parser.parse(row)));
            if let Ok(batch) = columns.and_then(|c| RecordBatch::try_new(self.schema.clone(), c)) {
                return batch;
            }
        }
        let table = self.rows.lock();
        let rows: Vec<&RecordBatch> = table.by_key.values().collect();
        arrow::compute::concat_batches(&self.schema, rows)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.schema.clone()))
    }
}
