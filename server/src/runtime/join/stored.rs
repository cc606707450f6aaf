//! The rows a join keeps: whole decoded Arrow batches, each with a count of the rows still
//! referenced, so a row costs a [`RowRef`] (eight bytes) and no copy. A batch is dropped
//! when none of its rows is referenced any more; when most held rows are dead (a table
//! side whose keys were updated), the live rows are copied into one fresh batch.
//! Output rows are gathered with Arrow's `interleave`. Entry point: [`StoredRows`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

/// A row of a stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    pub batch: u32,
    pub row: u32,
}

#[derive(Debug)]
struct StoredBatch {
    batch: RecordBatch,
    /// Rows referenced by the join's state.
    live: u32,
}

/// Batches of one join input, with the rows the state still references.
#[derive(Debug)]
pub struct StoredRows {
    schema: SchemaRef,
    batches: Vec<Option<StoredBatch>>,
    free: Vec<u32>,
    live_rows: usize,
    held_rows: usize,
    /// One row of NULLs: what a missing side's columns gather from.
    nulls: RecordBatch,
}

/// Below this many held rows a side is never compacted.
const COMPACT_FROM: usize = 64 * 1024;

impl StoredRows {
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        let nulls = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Self {
            schema,
            batches: Vec::new(),
            free: Vec::new(),
            live_rows: 0,
            held_rows: 0,
            nulls,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Holds a batch; its rows are referenced with [`StoredRows::retain`]. A batch nothing
    /// retains is dropped by [`StoredRows::drop_if_unused`].
    pub fn add(&mut self, batch: RecordBatch) -> u32 {
        self.held_rows += batch.num_rows();
        let stored = Some(StoredBatch { batch, live: 0 });
        match self.free.pop() {
            Some(id) => {
                self.batches[id as usize] = stored;
                id
            }
            None => {
                self.batches.push(stored);
                (self.batches.len() - 1) as u32
            }
        }
    }

    pub fn batch(&self, id: u32) -> Option<&RecordBatch> {
        self.batches
            .get(id as usize)
            .and_then(Option::as_ref)
            .map(|b| &b.batch)
    }

    /// The one batch held, when there is exactly one (as after [`StoredRows::compact`]).
    pub fn only_batch(&self) -> Option<&RecordBatch> {
        let mut held = self.batches.iter().flatten();
        match (held.next(), held.next()) {
            (Some(only), None) => Some(&only.batch),
            _ => None,
        }
    }

    /// Whether `row` is a row of a held batch.
    pub fn has_row(&self, row: RowRef) -> bool {
        self.batch(row.batch)
            .is_some_and(|batch| (row.row as usize) < batch.num_rows())
    }

    pub fn retain(&mut self, row: RowRef) {
        if let Some(Some(stored)) = self.batches.get_mut(row.batch as usize) {
            stored.live += 1;
            self.live_rows += 1;
        }
    }

    pub fn release(&mut self, row: RowRef) {
        let Some(Some(stored)) = self.batches.get_mut(row.batch as usize) else {
            return;
        };
        stored.live = stored.live.saturating_sub(1);
        self.live_rows = self.live_rows.saturating_sub(1);
        if stored.live == 0 {
            self.remove(row.batch);
        }
    }

    /// Drops a batch none of whose rows was retained.
    pub fn drop_if_unused(&mut self, id: u32) {
        if matches!(self.batches.get(id as usize), Some(Some(b)) if b.live == 0) {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(stored) = self.batches[id as usize].take() {
            self.held_rows -= stored.batch.num_rows();
            self.free.push(id);
        }
    }

    /// Whether enough held rows are dead that [`StoredRows::compact`] is worth it.
    pub fn wants_compaction(&self) -> bool {
        self.held_rows >= COMPACT_FROM && self.held_rows > 2 * self.live_rows
    }

    /// Copies the rows `refs` point to into one new batch and points them there; every
    /// live row must be among `refs` (each once).
    pub fn compact<'a>(
        &mut self,
        refs: impl IntoIterator<Item = &'a mut RowRef>,
    ) -> Result<(), ArrowError> {
        let mut refs: Vec<&mut RowRef> = refs.into_iter().collect();
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let gathered = self.gather(refs.iter().map(|r| Some(**r)), &all)?;
        let batch = RecordBatch::try_new(self.schema.clone(), gathered)?;
        self.batches.clear();
        self.free.clear();
        self.held_rows = 0;
        let id = self.add(batch);
        for (row, r) in refs.iter_mut().enumerate() {
            **r = RowRef {
                batch: id,
                row: row as u32,
            };
        }
        self.live_rows = refs.len();
        if let Some(Some(stored)) = self.batches.get_mut(id as usize) {
            stored.live = refs.len() as u32;
        }
        if refs.is_empty() {
            self.remove(id);
        }
        Ok(())
    }

    /// The `columns` of the rows `refs` point to, in order; `None` gives a row of NULLs.
    pub fn gather(
        &self,
        refs: impl Iterator<Item = Option<RowRef>>,
        columns: &[usize],
    ) -> Result<Vec<ArrayRef>, ArrowError> {
        let mut sources: Vec<&RecordBatch> = vec![&self.nulls];
        let mut position: HashMap<u32, usize> = HashMap::new();
        let mut indices = Vec::with_capacity(refs.size_hint().0);
        for r in refs {
            let index = match r {
                None => (0, 0),
                Some(r) => {
                    let source = match position.get(&r.batch) {
                        Some(&at) => at,
                        None => {
                            let batch = self.batch(r.batch).ok_or_else(|| {
                                ArrowError::InvalidArgumentError(format!(
                                    "internal: join row {} of a dropped batch {}",
                                    r.row, r.batch
                                ))
                            })?;
                            sources.push(batch);
                            position.insert(r.batch, sources.len() - 1);
                            sources.len() - 1
                        }
                    };
                    (source, r.row as usize)
                }
            };
            indices.push(index);
        }
        columns
            .iter()
            .map(|&column| {
                let arrays: Vec<&dyn arrow::array::Array> =
                    sources.iter().map(|b| b.column(column).as_ref()).collect();
                arrow::compute::interleave(&arrays, &indices)
            })
            .collect()
    }

    /// Rows referenced by the state.
    pub fn live_rows(&self) -> usize {
        self.live_rows
    }
}

/// A schema's fields picked by index.
pub fn project_schema(schema: &SchemaRef, columns: &[usize]) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        columns
            .iter()
            .map(|&c| schema.field(c).clone())
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("V", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .expect("test data is valid")
    }

    fn values(columns: &[ArrayRef]) -> Vec<Option<i64>> {
        columns[0].as_primitive::<Int64Type>().iter().collect()
    }

    #[test]
    fn rows_gather_across_batches_with_nulls_for_missing_rows() {
        let mut rows = StoredRows::new(batch(&[]).schema()).expect("test data is valid");
        let a = rows.add(batch(&[1, 2]));
        let b = rows.add(batch(&[3]));
        let refs = [
            Some(RowRef { batch: b, row: 0 }),
            None,
            Some(RowRef { batch: a, row: 1 }),
        ];
        let gathered = rows
            .gather(refs.into_iter(), &[0])
            .expect("test data is valid");
        assert_eq!(values(&gathered), vec![Some(3), None, Some(2)]);
    }

    #[test]
    fn a_batch_goes_when_its_last_row_is_released() {
        let mut rows = StoredRows::new(batch(&[]).schema()).expect("test data is valid");
        let a = rows.add(batch(&[1, 2]));
        let first = RowRef { batch: a, row: 0 };
        rows.retain(first);
        rows.drop_if_unused(a);
        assert!(rows.batch(a).is_some(), "a retained row keeps its batch");
        rows.release(first);
        assert!(rows.batch(a).is_none());
        let unused = rows.add(batch(&[5]));
        rows.drop_if_unused(unused);
        assert!(rows.batch(unused).is_none());
    }

    #[test]
    fn compaction_keeps_the_live_rows_and_repoints_them() {
        let mut rows = StoredRows::new(batch(&[]).schema()).expect("test data is valid");
        let a = rows.add(batch(&[1, 2, 3]));
        let b = rows.add(batch(&[4, 5]));
        let mut live = [RowRef { batch: b, row: 1 }, RowRef { batch: a, row: 0 }];
        for r in live {
            rows.retain(r);
        }
        rows.compact(live.iter_mut()).expect("test data is valid");
        assert_eq!(live[0].batch, live[1].batch);
        let gathered = rows
            .gather(live.iter().map(|r| Some(*r)), &[0])
            .expect("test data is valid");
        assert_eq!(values(&gathered), vec![Some(5), Some(1)]);
        assert_eq!(rows.live_rows(), 2);
    }
}
