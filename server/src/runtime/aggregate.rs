//! The streaming aggregation: each group's state is a set of DataFusion accumulators, kept
//! per group key (and per window for windowed queries); every input row that changes a
//! group emits that group's new row (per-record emission, as ksqlDB's tests expect).
//!
//! Windows follow ksqlDB: tumbling and hopping windows are aligned to the epoch and
//! end-exclusive; sessions merge when records fall within the gap of each other, and a
//! merge emits a tombstone for each session it replaces. Stream time is the largest record
//! time seen; a record for a window that ended more than the grace period before stream
//! time is late and dropped. A `HAVING` that stops holding for a group emits a tombstone.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use crate::plan::PlanError;
use crate::plan::aggregate::{AggregatePlan, WindowKind};

/// One group's state.
#[derive(Debug)]
struct Group {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// The largest record time that went into the group: the time of its output records.
    timestamp: i64,
    /// Whether the group's last output was a row (not filtered out by `HAVING`).
    shown: bool,
}

/// What one input row did to the output: a group's new row, or a tombstone.
#[derive(Debug)]
pub struct Changes {
    /// The output rows (the plan's projection), one per change.
    pub output: RecordBatch,
    /// Whether each change is a tombstone (no value).
    pub tombstones: Vec<bool>,
    pub timestamps: Int64Array,
    /// Each change's window, for windowed queries.
    pub windows: Vec<Option<(i64, i64)>>,
    /// The index (in the input batch) of the row that caused each change.
    pub input_rows: Vec<usize>,
}

/// Rows of the aggregated schema being gathered for one batch of changes.
#[derive(Default)]
struct Pending {
    rows: Vec<RecordBatch>,
    tombstones: Vec<bool>,
    timestamps: Vec<i64>,
    windows: Vec<Option<(i64, i64)>>,
    input_rows: Vec<usize>,
    /// For each change, the group it belongs to (for `HAVING` bookkeeping).
    groups: Vec<Option<OwnedRow>>,
}

/// A running aggregation.
pub struct Aggregation {
    plan: Arc<AggregatePlan>,
    /// Group values (and window bounds) in Arrow's row format: the state's key.
    converter: RowConverter,
    groups: HashMap<OwnedRow, Group>,
    /// Sessions per group (without window bounds): their (start, end), for merging.
    sessions: HashMap<OwnedRow, Vec<(i64, i64)>>,
    session_converter: Option<RowConverter>,
    stream_time: i64,
    /// Records dropped because their window had closed.
    pub late_records: u64,
    processed: u64,
}

impl std::fmt::Debug for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregation")
            .field("groups", &self.groups.len())
            .field("stream_time", &self.stream_time)
            .finish_non_exhaustive()
    }
}

/// How often (in records) closed windows are evicted.
const EVICT_EVERY: u64 = 10_000;

impl Aggregation {
    pub fn new(plan: Arc<AggregatePlan>) -> Result<Aggregation, PlanError> {
        let sort_fields = |count: usize| -> Vec<SortField> {
            plan.aggregated_schema.fields()[..count]
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect()
        };
        let converter = RowConverter::new(sort_fields(plan.group_width()))?;
        let session_converter = match plan.windowing.map(|w| w.kind) {
            Some(WindowKind::Session { .. }) => {
                Some(RowConverter::new(sort_fields(plan.group_width() - 2))?)
            }
            _ => None,
        };
        Ok(Aggregation {
            plan,
            converter,
            groups: HashMap::new(),
            sessions: HashMap::new(),
            session_converter,
            stream_time: i64::MIN,
            late_records: 0,
            processed: 0,
        })
    }

    /// Folds a batch of input rows (with `ROWTIME`) into the state; answers the changes, in
    /// input order.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Changes, PlanError> {
        let plan = self.plan.clone();
        let (batch, input_rows) = match &plan.filter {
            Some(predicate) => {
                let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
                let mask = mask
                    .as_boolean_opt()
                    .ok_or_else(|| PlanError::Plan("WHERE must be a boolean expression".into()))?;
                let rows = (0..mask.len())
                    .filter(|&i| mask.is_valid(i) && mask.value(i))
                    .collect::<Vec<_>>();
                (arrow::compute::filter_record_batch(batch, mask)?, rows)
            }
            None => (batch.clone(), (0..batch.num_rows()).collect()),
        };
        let rows = batch.num_rows();
        let groups = plan
            .group_by
            .iter()
            .map(|e| e.evaluate(&batch)?.into_array(rows))
            .collect::<Result<Vec<_>, _>>()?;
        let arguments = plan
            .aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| e.evaluate(&batch)?.into_array(rows))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let times = batch
            .column_by_name("ROWTIME")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
            .ok_or_else(|| PlanError::Plan("internal: no ROWTIME".into()))?;
        let mut pending = Pending::default();
        for (row, &cause) in input_rows.iter().enumerate() {
            // A row whose group is NULL belongs to no group: ksqlDB drops it.
            if groups.iter().any(|g| g.is_null(row)) {
                continue;
            }
            let time = times.value(row);
            self.stream_time = self.stream_time.max(time);
            let group_values: Vec<ArrayRef> = groups.iter().map(|g| g.slice(row, 1)).collect();
            let args: Vec<Vec<ArrayRef>> = arguments
                .iter()
                .map(|a| a.iter().map(|v| v.slice(row, 1)).collect())
                .collect();
            match plan.windowing {
                None => self.update(&group_values, None, &args, time, cause, &mut pending)?,
                Some(windowing) => match windowing.kind {
                    WindowKind::Session { gap } => self.update_session(
                        &group_values,
                        gap,
                        windowing.grace,
                        &args,
                        time,
                        cause,
                        &mut pending,
                    )?,
                    kind => {
                        for window in windows_of(kind, time) {
                            // A window closes `grace` after its end (by stream time).
                            if window.1 + windowing.grace <= self.stream_time {
                                self.late_records += 1;
                                continue;
                            }
                            self.update(
                                &group_values,
                                Some(window),
                                &args,
                                time,
                                cause,
                                &mut pending,
                            )?;
                        }
                    }
                },
            }
            self.processed += 1;
            if self.processed.is_multiple_of(EVICT_EVERY) {
                self.evict_closed_windows();
            }
        }
        self.finish(pending)
    }

    /// The state key of a group (and window).
    fn key(
        &self,
        group_values: &[ArrayRef],
        window: Option<(i64, i64)>,
    ) -> Result<OwnedRow, PlanError> {
        let mut columns = group_values.to_vec();
        if let Some((start, end)) = window {
            columns.push(Arc::new(Int64Array::from(vec![start])));
            columns.push(Arc::new(Int64Array::from(vec![end])));
        }
        let rows = self.converter.convert_columns(&columns)?;
        Ok(rows.row(0).owned())
    }

    fn new_group(&self, time: i64) -> Result<Group, PlanError> {
        Ok(Group {
            accumulators: self
                .plan
                .aggregates
                .iter()
                .map(|a| a.create_accumulator())
                .collect::<Result<_, _>>()?,
            timestamp: time,
            shown: false,
        })
    }

    /// Adds a row to its group (in `window`) and records the group's new row.
    fn update(
        &mut self,
        group_values: &[ArrayRef],
        window: Option<(i64, i64)>,
        args: &[Vec<ArrayRef>],
        time: i64,
        cause: usize,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let key = self.key(group_values, window)?;
        if !self.groups.contains_key(&key) {
            let group = self.new_group(time)?;
            self.groups.insert(key.clone(), group);
        }
        let group = self
            .groups
            .get_mut(&key)
            .ok_or_else(|| PlanError::Plan("internal: a group vanished".into()))?;
        for (accumulator, values) in group.accumulators.iter_mut().zip(args) {
            accumulator.update_batch(values)?;
        }
        group.timestamp = group.timestamp.max(time);
        let values = evaluate(&mut group.accumulators)?;
        let timestamp = group.timestamp;
        let row = aggregated_row(&self.plan, group_values, window, &values)?;
        pending.push(row, false, timestamp, window, cause, Some(key));
        Ok(())
    }

    /// Adds a row to the session it extends, merging the sessions it bridges; each merged
    /// away session gets a tombstone.
    #[allow(clippy::too_many_arguments)]
    fn update_session(
        &mut self,
        group_values: &[ArrayRef],
        gap: i64,
        grace: i64,
        args: &[Vec<ArrayRef>],
        time: i64,
        cause: usize,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let converter = self
            .session_converter
            .as_ref()
            .ok_or_else(|| PlanError::Plan("internal: no session key".into()))?;
        let group_key = converter.convert_columns(group_values)?.row(0).owned();
        let existing = self.sessions.get(&group_key).cloned().unwrap_or_default();
        let (touching, others): (Vec<_>, Vec<_>) = existing
            .into_iter()
            .partition(|(start, end)| *start - gap <= time && time <= *end + gap);
        let start = touching
            .iter()
            .map(|w| w.0)
            .chain([time])
            .min()
            .unwrap_or(time);
        let end = touching
            .iter()
            .map(|w| w.1)
            .chain([time])
            .max()
            .unwrap_or(time);
        if end + grace <= self.stream_time {
            self.late_records += 1;
            return Ok(());
        }
        let mut merged = self.new_group(time)?;
        for window in &touching {
            let key = self.key(group_values, Some(*window))?;
            let Some(mut old) = self.groups.remove(&key) else {
                continue;
            };
            if old.shown {
                let values = evaluate(&mut old.accumulators)?;
                let row = aggregated_row(&self.plan, group_values, Some(*window), &values)?;
                pending.push(row, true, old.timestamp, Some(*window), cause, None);
            }
            for (into, from) in merged
                .accumulators
                .iter_mut()
                .zip(old.accumulators.iter_mut())
            {
                let state: Vec<ArrayRef> = from
                    .state()?
                    .into_iter()
                    .map(|s| s.to_array())
                    .collect::<Result<_, _>>()?;
                into.merge_batch(&state)?;
            }
            merged.timestamp = merged.timestamp.max(old.timestamp);
        }
        for (accumulator, values) in merged.accumulators.iter_mut().zip(args) {
            accumulator.update_batch(values)?;
        }
        merged.timestamp = merged.timestamp.max(time);
        let window = (start, end);
        let values = evaluate(&mut merged.accumulators)?;
        let row = aggregated_row(&self.plan, group_values, Some(window), &values)?;
        let key = self.key(group_values, Some(window))?;
        pending.push(
            row,
            false,
            merged.timestamp,
            Some(window),
            cause,
            Some(key.clone()),
        );
        self.groups.insert(key, merged);
        let mut sessions = others;
        sessions.push(window);
        self.sessions.insert(group_key, sessions);
        Ok(())
    }

    /// Runs `HAVING` and the projection over the gathered rows.
    fn finish(&mut self, pending: Pending) -> Result<Changes, PlanError> {
        let plan = &self.plan;
        let aggregated = if pending.rows.is_empty() {
            RecordBatch::new_empty(plan.aggregated_schema.clone())
        } else {
            arrow::compute::concat_batches(&plan.aggregated_schema, &pending.rows)?
        };
        let count = aggregated.num_rows();
        let passes = match &plan.having {
            Some(predicate) => {
                let mask = predicate.evaluate(&aggregated)?.into_array(count)?;
                let mask = mask
                    .as_boolean_opt()
                    .cloned()
                    .ok_or_else(|| PlanError::Plan("HAVING must be a boolean expression".into()))?;
                Some(mask)
            }
            None => None,
        };
        let columns = plan
            .projection
            .iter()
            .map(|c| c.expr.evaluate(&aggregated)?.into_array(count))
            .collect::<Result<Vec<_>, _>>()?;
        let output = RecordBatch::try_new(plan.output_schema.clone(), columns)?;
        // A group filtered out by HAVING: a tombstone if it was shown, nothing otherwise.
        let mut keep = Vec::with_capacity(count);
        let mut tombstones = Vec::with_capacity(count);
        for i in 0..count {
            let holds = passes
                .as_ref()
                .is_none_or(|m: &BooleanArray| m.is_valid(i) && m.value(i));
            let forced = pending.tombstones[i];
            let group = pending.groups[i]
                .as_ref()
                .and_then(|k| self.groups.get_mut(k));
            match (forced, holds, group) {
                (true, _, _) => {
                    keep.push(true);
                    tombstones.push(true);
                }
                (false, true, group) => {
                    if let Some(group) = group {
                        group.shown = true;
                    }
                    keep.push(true);
                    tombstones.push(false);
                }
                (false, false, Some(group)) if group.shown => {
                    group.shown = false;
                    keep.push(true);
                    tombstones.push(true);
                }
                (false, false, _) => {
                    keep.push(false);
                    tombstones.push(false);
                }
            }
        }
        let mask = BooleanArray::from(keep.clone());
        fn pick<T>(values: Vec<T>, keep: &[bool]) -> Vec<T> {
            values
                .into_iter()
                .zip(keep)
                .filter_map(|(v, k)| k.then_some(v))
                .collect()
        }
        Ok(Changes {
            output: arrow::compute::filter_record_batch(&output, &mask)?,
            tombstones: pick(tombstones, &keep),
            timestamps: Int64Array::from(pick(pending.timestamps, &keep)),
            windows: pick(pending.windows, &keep),
            input_rows: pick(pending.input_rows, &keep),
        })
    }

    /// Forgets windows that can no longer change: ended more than the grace period (or the
    /// retention, when longer) before stream time.
    fn evict_closed_windows(&mut self) {
        let Some(windowing) = self.plan.windowing else {
            return;
        };
        let keep_for = windowing.grace.max(windowing.retention.unwrap_or(0));
        let horizon = self.stream_time.saturating_sub(keep_for);
        let width = self.plan.group_width();
        let converter = &self.converter;
        self.groups
            .retain(|key, _| window_end(converter, key, width).is_none_or(|end| end > horizon));
        for sessions in self.sessions.values_mut() {
            sessions.retain(|(_, end)| *end > horizon);
        }
        self.sessions.retain(|_, sessions| !sessions.is_empty());
    }

    /// How many groups (windows included) the state holds.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

impl Pending {
    fn push(
        &mut self,
        row: RecordBatch,
        tombstone: bool,
        timestamp: i64,
        window: Option<(i64, i64)>,
        cause: usize,
        group: Option<OwnedRow>,
    ) {
        self.rows.push(row);
        self.tombstones.push(tombstone);
        self.timestamps.push(timestamp);
        self.windows.push(window);
        self.input_rows.push(cause);
        self.groups.push(group);
    }
}

/// The end of the window in a state key (its last value), if the key has one.
fn window_end(converter: &RowConverter, key: &OwnedRow, width: usize) -> Option<i64> {
    let columns = converter.convert_rows([key.row()]).ok()?;
    let end = columns.get(width - 1)?.as_primitive_opt::<Int64Type>()?;
    (width >= 2 && end.is_valid(0)).then(|| end.value(0))
}

fn evaluate(accumulators: &mut [Box<dyn Accumulator>]) -> Result<Vec<ScalarValue>, PlanError> {
    Ok(accumulators
        .iter_mut()
        .map(|a| a.evaluate())
        .collect::<Result<_, _>>()?)
}

/// One row of the aggregated schema: group values, window bounds, aggregate values.
fn aggregated_row(
    plan: &AggregatePlan,
    group_values: &[ArrayRef],
    window: Option<(i64, i64)>,
    values: &[ScalarValue],
) -> Result<RecordBatch, PlanError> {
    let mut columns: Vec<ArrayRef> = group_values.to_vec();
    if let Some((start, end)) = window {
        columns.push(Arc::new(Int64Array::from(vec![start])));
        columns.push(Arc::new(Int64Array::from(vec![end])));
    }
    let fields = plan.aggregated_schema.fields();
    for (value, field) in values.iter().zip(&fields[columns.len()..]) {
        let array = value.to_array()?;
        // Accumulators may answer a related type (a dictionary, a view): cast to the plan's.
        let array = if array.data_type() == field.data_type() {
            array
        } else {
            arrow::compute::cast(&array, field.data_type())?
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(
        plan.aggregated_schema.clone(),
        columns,
    )?)
}

/// Kafka Streams' windowed key bytes: the key, then the window start (time windows), or the
/// window end and then its start (sessions), each 8 bytes big-endian.
pub fn windowed_key(key: &[u8], kind: WindowKind, start: i64, end: i64) -> bytes::Bytes {
    let mut out = Vec::with_capacity(key.len() + 16);
    out.extend_from_slice(key);
    if matches!(kind, WindowKind::Session { .. }) {
        out.extend_from_slice(&end.to_be_bytes());
    }
    out.extend_from_slice(&start.to_be_bytes());
    bytes::Bytes::from(out)
}

/// A windowed key's own bytes and its window (start, end); a key too short to hold a window
/// has none. A time window's end is its start plus the window size.
pub fn split_windowed_key(
    key: Option<&[u8]>,
    kind: WindowKind,
) -> (Option<&[u8]>, Option<(i64, i64)>) {
    let Some(key) = key else {
        return (None, None);
    };
    let long = |bytes: &[u8]| {
        <[u8; 8]>::try_from(bytes)
            .map(i64::from_be_bytes)
            .unwrap_or(0)
    };
    match kind {
        WindowKind::Session { .. } if key.len() >= 16 => {
            let (inner, bounds) = key.split_at(key.len() - 16);
            (Some(inner), Some((long(&bounds[8..]), long(&bounds[..8]))))
        }
        WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } if key.len() >= 8 => {
            let (inner, bounds) = key.split_at(key.len() - 8);
            let start = long(bounds);
            (Some(inner), Some((start, start.saturating_add(size))))
        }
        _ => (Some(key), None),
    }
}

/// The tumbling or hopping windows a record time falls in: epoch-aligned, end-exclusive.
pub fn windows_of(kind: WindowKind, time: i64) -> Vec<(i64, i64)> {
    match kind {
        WindowKind::Tumbling { size } if size > 0 => {
            let start = time - time.rem_euclid(size);
            vec![(start, start + size)]
        }
        WindowKind::Hopping { size, advance } if size > 0 && advance > 0 => {
            let last = time - time.rem_euclid(advance);
            let mut windows = Vec::new();
            let mut start = last;
            while start > time - size {
                if start >= 0 {
                    windows.push((start, start + size));
                }
                start -= advance;
            }
            windows.reverse();
            windows
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch_and_end_exclusive() {
        assert_eq!(
            windows_of(WindowKind::Tumbling { size: 30_000 }, 89_999),
            [(60_000, 90_000)]
        );
        assert_eq!(
            windows_of(WindowKind::Tumbling { size: 30_000 }, 90_000),
            [(90_000, 120_000)]
        );
        assert_eq!(
            windows_of(
                WindowKind::Hopping {
                    size: 30_000,
                    advance: 10_000
                },
                25_000
            ),
            [(0, 30_000), (10_000, 40_000), (20_000, 50_000)]
        );
        assert_eq!(
            windows_of(
                WindowKind::Hopping {
                    size: 30_000,
                    advance: 10_000
                },
                5_000
            ),
            [(0, 30_000)]
        );
    }
}
