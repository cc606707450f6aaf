//! The streaming aggregation: each group's state is a set of DataFusion accumulators, kept
//! per group key (and per window for windowed queries); every input row that changes a
//! group emits that group's new row (per-record emission, as ksqlDB's tests expect).
//!
//! Windows follow ksqlDB: tumbling and hopping windows are aligned to the epoch and
//! end-exclusive; sessions merge when records fall within the gap of each other, and a
//! merge emits a tombstone for each session it replaces. Stream time is the largest record
//! time seen; a record for a window that ended more than the grace period before stream
//! time is late and dropped. A `HAVING` that stops holding for a group emits a tombstone.
//!
//! With coalesced emission (ksqlDB's record cache, on by default) a changed group is only
//! marked; [`Aggregation::flush`] emits each marked group's latest row once. Per-record
//! emission (the cache off, as ksqlDB's tests run) emits every change as it happens.
//!
//! With `EMIT FINAL` nothing is emitted as rows arrive; once stream time passes a window's
//! end plus the grace period, its row is emitted once and its state dropped. As in ksqlDB,
//! a time window is only emitted while it is retained (start at least stream time minus
//! size plus grace, or the `RETENTION`): a jump in stream time skips the windows it
//! passes over.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use crate::plan::PlanError;
use crate::plan::aggregate::{AggregatePlan, WindowKind};

mod changelog;
mod final_windows;

use super::arena_map::ArenaMap;
use final_windows::{ClosedWindow, FinalWindows};

/// The hash maps of the state: keys are group bytes, hashed fast (no untrusted-input
/// flooding concern: a group only exists once a record made it).
type StateMap<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// One group's state.
#[derive(Debug)]
struct Group {
    /// Inline for the common single aggregate: no allocation besides the accumulator's.
    accumulators: smallvec::SmallVec<[Box<dyn Accumulator>; 1]>,
    /// The largest record time that went into the group: the time of its output records.
    timestamp: i64,
    /// Whether the group's last output was a row (not filtered out by `HAVING`).
    shown: bool,
    /// Changed since the last flush (coalesced emission) or, with a changelog, since the
    /// last changelog write.
    dirty: bool,
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
    /// The headers of the record that caused each change, which its output record carries
    /// (as Kafka Streams forwards them); empty when no input record had any.
    pub headers: Vec<Vec<crate::log::Header>>,
    /// The input rows on which something failed, and why (for the processing log). The
    /// state keeps what did not fail, as ksqlDB's does: an aggregate that refused a value
    /// leaves that row out; a `HAVING` that failed does not hold; a column that failed is
    /// NULL.
    pub errors: Vec<RowError>,
}

/// An input row (its index in the batch) and what failed on it.
pub type RowError = (usize, String);

/// Where a change's group values come from.
enum GroupRow {
    /// A row of the filtered batch.
    Batch(u32),
    /// A group's bytes (a change a table's update or delete made to an earlier group).
    Stored(Box<[u8]>),
}

/// The changes of one batch, gathered column by column.
struct Pending {
    /// For each change, where its group values come from.
    rows: Vec<GroupRow>,
    /// For each aggregate, its value in each change.
    values: Vec<Vec<ScalarValue>>,
    facts: ChangeFacts,
    errors: Vec<RowError>,
}

/// What each change is besides its values: what [`Changes`] tells of it, and (for `HAVING`
/// bookkeeping) the state key of its group.
#[derive(Default)]
struct ChangeFacts {
    tombstones: Vec<bool>,
    timestamps: Vec<i64>,
    windows: Vec<Option<(i64, i64)>>,
    input_rows: Vec<usize>,
    groups: Vec<Option<Box<[u8]>>>,
}

/// A table row that went into a group.
#[derive(Debug)]
struct PreviousRow {
    group: Box<[u8]>,
    /// For each aggregate, its argument values.
    arguments: Vec<Vec<ScalarValue>>,
}

/// A running aggregation.
pub struct Aggregation {
    plan: Arc<AggregatePlan>,
    /// Turns group values into bytes: with the window bounds appended, the state's key.
    converter: RowConverter,
    groups: ArenaMap<Group>,
    /// Sessions per group (the group values' bytes): their (start, end), for merging.
    sessions: StateMap<Vec<(i64, i64)>>,
    /// Windowed groups by window end and slot, for eviction. (A slot freed by a merged
    /// session or an `EMIT FINAL` window may hold another group later: eviction checks
    /// the group's end.)
    window_ends: BTreeSet<(i64, u32)>,
    /// The groups changed since the last flush (coalesced emission) or, with a changelog,
    /// since the last changelog write.
    dirty: DirtyGroups,
    /// With a changelog (see [`changelog`]): the slots flushed since the last changelog
    /// write, and the keys of the groups dropped (closed windows, merged sessions) and of
    /// the table rows changed.
    unlogged: Vec<u32>,
    removed: Vec<Box<[u8]>>,
    previous_changed: Vec<Box<[u8]>>,
    /// How the state is written to its changelog; `None` without one.
    changelog: Option<changelog::StateCodec>,
    /// The key of the group being updated (no allocation per row).
    key_buffer: Vec<u8>,
    /// Over a table: each key's current row, its group and aggregate arguments, to take
    /// back out of the group when the row changes or is deleted.
    previous: StateMap<PreviousRow>,
    stream_time: i64,
    /// `EMIT FINAL`: the sessions not emitted yet, by end, with their state keys (time
    /// windows are found by their end in `window_ends`).
    pending_windows: BTreeSet<(i64, Box<[u8]>)>,
    /// `EMIT FINAL`: the close time of the last emission.
    last_close: Option<i64>,
    /// `EMIT FINAL` over tumbling or hopping windows: the open windows, folded a batch at a
    /// time (see [`final_windows`]); the other state fields stay empty.
    final_windows: Option<FinalWindows>,
    /// Records dropped because their window had closed.
    pub late_records: u64,
    processed: u64,
}

impl std::fmt::Debug for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregation")
            .field("groups", &self.held_groups())
            .field("stream_time", &self.stream_time)
            .finish_non_exhaustive()
    }
}

/// How often (in records) closed windows are evicted.
const EVICT_EVERY: u64 = 10_000;

/// The state key of a group in a window: the group's bytes, then the window bounds.
fn state_key(group: &[u8], window: Option<(i64, i64)>) -> Box<[u8]> {
    let mut key = Vec::with_capacity(group.len() + 16);
    fill_state_key(&mut key, group, window);
    key.into_boxed_slice()
}

/// The group's bytes of a state key: without the window bounds, when it has them.
fn group_of_state_key(key: &[u8], windowed: bool) -> &[u8] {
    &key[..key.len().saturating_sub(if windowed { 16 } else { 0 })]
}

/// The window of a state key: its last 16 bytes, when windowed.
fn window_of_state_key(key: &[u8], windowed: bool) -> Option<(i64, i64)> {
    if !windowed || key.len() < 16 {
        return None;
    }
    let bounds = &key[key.len() - 16..];
    let long = |b: &[u8]| <[u8; 8]>::try_from(b).map(i64::from_be_bytes).ok();
    Some((long(&bounds[..8])?, long(&bounds[8..])?))
}

/// [`state_key`] written into a reused buffer.
fn fill_state_key(key: &mut Vec<u8>, group: &[u8], window: Option<(i64, i64)>) {
    key.clear();
    key.extend_from_slice(group);
    if let Some((start, end)) = window {
        key.extend_from_slice(&start.to_be_bytes());
        key.extend_from_slice(&end.to_be_bytes());
    }
}

impl Aggregation {
    pub fn new(plan: Arc<AggregatePlan>) -> Result<Aggregation, PlanError> {
        let window_columns = if plan.windowing.is_some() { 2 } else { 0 };
        let sort_fields: Vec<SortField> = plan.aggregated_schema.fields()
            [..plan.group_width() - window_columns]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let time_windowed = plan
            .windowing
            .is_some_and(|w| !matches!(w.kind, WindowKind::Session { .. }));
        let final_windows = (plan.emit_final && time_windowed && !plan.over_table)
            .then(|| FinalWindows::new(plan.aggregates.clone()));
        Ok(Aggregation {
            final_windows,
            converter: RowConverter::new(sort_fields)?,
            plan,
            groups: ArenaMap::default(),
            sessions: StateMap::default(),
            window_ends: BTreeSet::new(),
            dirty: DirtyGroups::default(),
            unlogged: Vec::new(),
            removed: Vec::new(),
            previous_changed: Vec::new(),
            changelog: None,
            key_buffer: Vec::new(),
            previous: StateMap::default(),
            pending_windows: BTreeSet::new(),
            last_close: None,
            stream_time: i64::MIN,
            late_records: 0,
            processed: 0,
        })
    }

    /// Folds a batch of a stream's rows (with `ROWTIME`) into the state; answers the
    /// changes, in input order.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Changes, PlanError> {
        self.fold(batch, None)
    }

    /// Folds a batch of a table's rows into the state: `keys` are the rows' table keys. A
    /// key's earlier row is taken out of its group first (a change of that group); a row
    /// the `WHERE` leaves out only takes the earlier one out.
    pub fn process_table(
        &mut self,
        batch: &RecordBatch,
        keys: &[&[u8]],
    ) -> Result<Changes, PlanError> {
        self.fold(batch, Some(keys))
    }

    /// Deletes table keys (tombstones, with their times): each key's row is taken out of
    /// its group.
    pub fn delete(&mut self, deletes: &[(&[u8], i64)]) -> Result<Changes, PlanError> {
        let mut pending = Pending::new(self.plan.aggregates.len());
        for (cause, (key, time)) in deletes.iter().enumerate() {
            self.retract(key, *time, cause, true, &mut pending)?;
        }
        self.finish(pending, &[], None)
    }

    /// Folds a batch: an error means nothing changed (the expressions over the batch
    /// failed), so that its rows can be folded one at a time. What fails once the state
    /// changes is reported in [`Changes::errors`].
    fn fold(
        &mut self,
        batch: &RecordBatch,
        table_keys: Option<&[&[u8]]>,
    ) -> Result<Changes, PlanError> {
        let prepared = self.prepare(batch)?;
        let rows = prepared.original_times.len();
        match self.fold_prepared(prepared, table_keys) {
            Ok(changes) => Ok(changes),
            Err(error) => Ok(Changes {
                output: RecordBatch::new_empty(self.plan.output_schema.clone()),
                tombstones: Vec::new(),
                timestamps: Int64Array::from(Vec::<i64>::new()),
                windows: Vec::new(),
                input_rows: Vec::new(),
                headers: Vec::new(),
                errors: (0..rows)
                    .map(|row| (row, format!("the aggregation lost its changes: {error}")))
                    .collect(),
            }),
        }
    }

    /// Evaluates a batch's `WHERE`, groups and aggregate arguments; the state is untouched.
    fn prepare(&self, batch: &RecordBatch) -> Result<Prepared, PlanError> {
        let plan = &self.plan;
        // Functions note the rows they fail on: these are this batch's.
        crate::functions::udf::take_row_failures();
        let original_times = batch
            .column_by_name("ROWTIME")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
            .ok_or_else(|| PlanError::Plan("internal: no ROWTIME".into()))?;
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
        let mut errors = crate::functions::udf::take_row_failures();
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
        // These count rows of the filtered batch.
        errors.extend(
            crate::functions::udf::take_row_failures()
                .into_iter()
                .map(|(row, message)| (input_rows.get(row).copied().unwrap_or(row), message)),
        );
        let times = batch
            .column_by_name("ROWTIME")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
            .ok_or_else(|| PlanError::Plan("internal: no ROWTIME".into()))?;
        // Every row's group, as bytes, converted once for the batch.
        let group_rows = self.converter.convert_columns(&groups)?;
        Ok(Prepared {
            original_times,
            input_rows,
            groups,
            arguments,
            times,
            group_rows,
            errors,
        })
    }

    /// Folds a prepared batch into the state.
    fn fold_prepared(
        &mut self,
        prepared: Prepared,
        table_keys: Option<&[&[u8]]>,
    ) -> Result<Changes, PlanError> {
        let Prepared {
            original_times,
            input_rows,
            groups,
            arguments,
            times,
            group_rows,
            errors,
        } = prepared;
        if self.final_windows.is_some() {
            return self.fold_final(
                &input_rows,
                &groups,
                &group_rows,
                &arguments,
                &times,
                errors,
            );
        }
        let plan = self.plan.clone();
        let mut pending = Pending::new(plan.aggregates.len());
        pending.errors = errors;
        // Each row's aggregate arguments, one-row slices, in buffers reused row after row.
        let mut args: Vec<Vec<ArrayRef>> = arguments
            .iter()
            .map(|a| Vec::with_capacity(a.len()))
            .collect();
        // Without GROUP BY, every row is in the one group whose key is empty.
        let group_bytes = |row: usize| -> &[u8] {
            if groups.is_empty() {
                &[]
            } else {
                group_rows.row(row).data()
            }
        };
        let mut passed = input_rows.iter().copied().enumerate().peekable();
        for cause in 0..original_times.len() {
            let filtered = passed.next_if(|(_, original)| *original == cause);
            // A row whose group is NULL belongs to no group: ksqlDB drops it.
            let grouped = filtered
                .map(|(row, _)| row)
                .filter(|row| !groups.iter().any(|g| g.is_null(*row)));
            if let Some(keys) = table_keys {
                // An update within the same group shows only the group's final row.
                let same_group = grouped.is_some_and(|row| {
                    self.previous
                        .get(keys[cause])
                        .is_some_and(|p| *p.group == *group_bytes(row))
                });
                let time = original_times.value(cause);
                let retracted = self.retract(keys[cause], time, cause, !same_group, &mut pending);
                if let Err(error) = retracted {
                    pending.errors.push((cause, error.to_string()));
                }
            }
            let Some(row) = grouped else {
                continue;
            };
            let time = times.value(row);
            self.stream_time = self.stream_time.max(time);
            let group = group_bytes(row);
            for (slot, columns) in args.iter_mut().zip(&arguments) {
                slot.clear();
                slot.extend(columns.iter().map(|v| v.slice(row, 1)));
            }
            let at = Row {
                index: row,
                group,
                time,
                cause,
            };
            if let Some(keys) = table_keys {
                if let Err(error) = self.update(&at, None, &args, &mut pending) {
                    pending.errors.push((cause, error.to_string()));
                    continue;
                }
                let arguments = args
                    .iter()
                    .map(|values| {
                        values
                            .iter()
                            .map(|v| ScalarValue::try_from_array(v, 0))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.previous.insert(
                    keys[cause].into(),
                    PreviousRow {
                        group: group.into(),
                        arguments,
                    },
                );
                if self.changelog.is_some() {
                    self.previous_changed.push(keys[cause].into());
                }
                continue;
            }
            // An aggregate that refuses the row leaves it out of that group.
            let folded = match plan.windowing {
                None => self.update(&at, None, &args, &mut pending),
                Some(windowing) => match windowing.kind {
                    WindowKind::Session { gap } => {
                        self.update_session(&at, gap, windowing.grace, &args, &mut pending)
                    }
                    kind => windows_of(kind, time).into_iter().try_for_each(|window| {
                        // A window closes `grace` after its end (by stream time).
                        if window.1 + windowing.grace <= self.stream_time {
                            self.late_records += 1;
                            return Ok(());
                        }
                        self.update(&at, Some(window), &args, &mut pending)
                    }),
                },
            };
            if let Err(error) = folded {
                pending.errors.push((cause, error.to_string()));
            }
            if plan.emit_final {
                self.emit_closed_windows(cause, &mut pending)?;
            }
            self.processed += 1;
            // Coalesced emission evicts when it flushes, so no changed group goes unseen.
            if self.processed.is_multiple_of(EVICT_EVERY) && !self.plan.emission.coalesces() {
                self.evict_closed_windows();
            }
        }
        self.finish(pending, &groups, Some(&group_rows))
    }

    /// Takes a table key's earlier row out of its group, and records the group's new row.
    fn retract(
        &mut self,
        key: &[u8],
        time: i64,
        cause: usize,
        emit: bool,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let Some(previous) = self.previous.remove(key) else {
            return Ok(());
        };
        if self.changelog.is_some() {
            self.previous_changed.push(key.into());
        }
        let track = self.tracks_changes();
        let Some(slot) = self.groups.slot(&previous.group) else {
            return Ok(());
        };
        let Some(group) = self.groups.value_at(slot) else {
            return Ok(());
        };
        for (accumulator, values) in group.accumulators.iter_mut().zip(&previous.arguments) {
            let arrays = values
                .iter()
                .map(|v| v.to_array_of_size(1))
                .collect::<Result<Vec<_>, _>>()?;
            accumulator.retract_batch(&arrays)?;
        }
        group.timestamp = group.timestamp.max(time);
        if track {
            self.dirty.mark(group, slot, previous.group.len());
        }
        if !emit || self.plan.emission.coalesces() {
            return Ok(());
        }
        let values = evaluate(&mut group.accumulators)?;
        let having_key = self.plan.having.is_some().then(|| previous.group.clone());
        if having_key.is_none() {
            group.shown = true;
        }
        let timestamp = group.timestamp;
        pending.push_change(
            (GroupRow::Stored(previous.group), cause),
            values,
            false,
            timestamp,
            None,
            having_key,
        );
        Ok(())
    }

    /// Adds a row to its group (in `window`) and records the group's new row.
    fn update(
        &mut self,
        at: &Row<'_>,
        window: Option<(i64, i64)>,
        args: &[Vec<ArrayRef>],
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let track = self.tracks_changes();
        fill_state_key(&mut self.key_buffer, at.group, window);
        let slot = match self.groups.slot(&self.key_buffer) {
            Some(slot) => slot,
            None => {
                let group = new_group(&self.plan, at.time)?;
                let slot = self.groups.insert(&self.key_buffer, group);
                // `EMIT FINAL` finds a time window's groups by its end, in `window_ends`.
                if let Some((_, end)) = window {
                    self.window_ends.insert((end, slot));
                }
                slot
            }
        };
        let group = self
            .groups
            .value_at(slot)
            .ok_or_else(|| PlanError::Plan("internal: a group vanished".into()))?;
        for (accumulator, values) in group.accumulators.iter_mut().zip(args) {
            accumulator.update_batch(values)?;
        }
        group.timestamp = group.timestamp.max(at.time);
        if track {
            self.dirty.mark(group, slot, self.key_buffer.len());
        }
        if self.plan.emit_final || self.plan.emission.coalesces() {
            return Ok(());
        }
        let values = evaluate(&mut group.accumulators)?;
        let timestamp = group.timestamp;
        // Only HAVING can hide a group: without it every change is shown, and no key needs
        // keeping for the bookkeeping.
        let key = if self.plan.having.is_some() {
            Some(self.key_buffer.clone().into_boxed_slice())
        } else {
            group.shown = true;
            None
        };
        pending.push(at, values, false, timestamp, window, key);
        Ok(())
    }

    /// Adds a row to the session it extends, merging the sessions it bridges; each merged
    /// away session gets a tombstone.
    fn update_session(
        &mut self,
        at: &Row<'_>,
        gap: i64,
        grace: i64,
        args: &[Vec<ArrayRef>],
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let time = at.time;
        // Closed sessions (ended before the close time) take no more records.
        let close = self.stream_time.saturating_sub(grace).saturating_sub(gap);
        let existing = self.sessions.get(at.group).cloned().unwrap_or_default();
        let (touching, others): (Vec<_>, Vec<_>) = existing
            .into_iter()
            .partition(|(start, end)| *end >= close && *start - gap <= time && time <= *end + gap);
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
        // A session closes once stream time is past its end by the gap and the grace period.
        if end < close {
            self.late_records += 1;
            return Ok(());
        }
        let window = (start, end);
        let mut merged = new_group(&self.plan, time)?;
        let emit_final = self.plan.emit_final;
        for old_window in &touching {
            let old_key = state_key(at.group, Some(*old_window));
            if emit_final {
                self.pending_windows
                    .remove(&(old_window.1, old_key.clone()));
            }
            let Some(mut old) = self.groups.remove(&old_key) else {
                continue;
            };
            if self.changelog.is_some() {
                self.removed.push(old_key.clone());
            }
            if old.shown && !emit_final {
                let values = evaluate(&mut old.accumulators)?;
                pending.push(at, values, true, old.timestamp, Some(*old_window), None);
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
        let key = state_key(at.group, Some(window));
        if emit_final {
            self.pending_windows.insert((window.1, key.clone()));
        } else if !self.plan.emission.coalesces() {
            let values = evaluate(&mut merged.accumulators)?;
            pending.push(
                at,
                values,
                false,
                merged.timestamp,
                Some(window),
                Some(key.clone()),
            );
        }
        let track = self.tracks_changes();
        let slot = self.groups.insert(&key, merged);
        self.window_ends.insert((window.1, slot));
        if track && let Some(merged) = self.groups.value_at(slot) {
            self.dirty.mark(merged, slot, key.len());
        }
        let mut sessions = others;
        sessions.push(window);
        self.sessions.insert(at.group.into(), sessions);
        Ok(())
    }

    /// Builds the aggregated rows of the changes, then runs `HAVING` and the projection.
    fn finish(
        &mut self,
        pending: Pending,
        groups: &[ArrayRef],
        group_rows: Option<&arrow::row::Rows>,
    ) -> Result<Changes, PlanError> {
        let plan = &self.plan;
        let count = pending.rows.len();
        let batch_rows: Option<Vec<u32>> = pending
            .rows
            .iter()
            .map(|g| match g {
                GroupRow::Batch(row) => Some(*row),
                GroupRow::Stored(_) => None,
            })
            .collect();
        let mut columns: Vec<ArrayRef> = match batch_rows {
            _ if plan.group_by.is_empty() => Vec::new(),
            Some(rows) if group_rows.is_some() => {
                let indices = arrow::array::UInt32Array::from(rows);
                groups
                    .iter()
                    .map(|g| arrow::compute::take(g, &indices, None))
                    .collect::<Result<_, _>>()?
            }
            // Some groups are only known by their bytes: all are converted back from bytes.
            _ => {
                let parser = self.converter.parser();
                let rows = pending.rows.iter().map(|g| match (g, group_rows) {
                    (GroupRow::Batch(row), Some(rows)) => rows.row(*row as usize),
                    (GroupRow::Stored(bytes), _) => parser.parse(bytes),
                    (GroupRow::Batch(_), None) => parser.parse(&[]),
                });
                self.converter.convert_rows(rows)?
            }
        };
        if plan.windowing.is_some() {
            columns.push(Arc::new(Int64Array::from_iter(
                pending.facts.windows.iter().map(|w| w.map(|w| w.0)),
            )));
            columns.push(Arc::new(Int64Array::from_iter(
                pending.facts.windows.iter().map(|w| w.map(|w| w.1)),
            )));
        }
        let fields = plan.aggregated_schema.fields();
        for (values, field) in pending.values.into_iter().zip(&fields[columns.len()..]) {
            let array = if values.is_empty() {
                arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values)?
            };
            columns.push(as_planned(array, field)?);
        }
        let batch = RecordBatch::try_new_with_options(
            plan.aggregated_schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(count)),
        )?;
        self.conclude(Aggregated {
            batch,
            facts: pending.facts,
            errors: pending.errors,
        })
    }

    /// Runs `HAVING` and the projection over aggregated rows: a group `HAVING` filters out
    /// gets a tombstone if it was shown, and no row otherwise.
    fn conclude(&mut self, aggregated: Aggregated) -> Result<Changes, PlanError> {
        let Aggregated {
            batch: aggregated,
            facts:
                ChangeFacts {
                    tombstones: forced_tombstones,
                    timestamps,
                    windows,
                    input_rows,
                    groups,
                },
            mut errors,
        } = aggregated;
        let count = aggregated.num_rows();
        crate::functions::udf::take_row_failures();
        let (passes, output) = match self.output_of(&aggregated) {
            Ok(evaluated) => evaluated,
            // Something failed on some row: each row is evaluated alone.
            Err(_) => {
                crate::functions::udf::take_row_failures();
                self.output_row_by_row(&aggregated, &input_rows, &mut errors)?
            }
        };
        errors.extend(
            crate::functions::udf::take_row_failures()
                .into_iter()
                .filter_map(|(row, message)| Some((*input_rows.get(row)?, message))),
        );
        // A group filtered out by HAVING: a tombstone if it was shown, nothing otherwise.
        let mut keep = Vec::with_capacity(count);
        let mut tombstones = Vec::with_capacity(count);
        for i in 0..count {
            let holds = passes
                .as_ref()
                .is_none_or(|m: &BooleanArray| m.is_valid(i) && m.value(i));
            let forced = forced_tombstones[i];
            let group = groups[i].as_ref().and_then(|k| self.groups.get_mut(k));
            let (kept, tombstone) = match (forced, holds, group) {
                (true, _, _) => (true, true),
                (false, true, group) => {
                    if let Some(group) = group {
                        group.shown = true;
                    }
                    (true, false)
                }
                (false, false, Some(group)) if group.shown => {
                    group.shown = false;
                    (true, true)
                }
                (false, false, _) => (false, false),
            };
            keep.push(kept);
            tombstones.push(tombstone);
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
            timestamps: Int64Array::from(pick(timestamps, &keep)),
            windows: pick(windows, &keep),
            input_rows: pick(input_rows, &keep),
            headers: Vec::new(),
            errors,
        })
    }

    /// `HAVING` (whether it holds on each row) and the projection over aggregated rows.
    fn output_of(
        &self,
        aggregated: &RecordBatch,
    ) -> Result<(Option<BooleanArray>, RecordBatch), PlanError> {
        let plan = &self.plan;
        let count = aggregated.num_rows();
        let passes = match &plan.having {
            Some(predicate) => {
                let mask = predicate.evaluate(aggregated)?.into_array(count)?;
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
            .map(|c| c.expr.evaluate(aggregated)?.into_array(count))
            .collect::<Result<Vec<_>, _>>()?;
        let output = RecordBatch::try_new_with_options(
            plan.output_schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(count)),
        )?;
        Ok((passes, output))
    }

    /// [`Self::output_of`] one row at a time, as ksqlDB treats a row something failed on:
    /// a `HAVING` that fails does not hold, a column that fails is NULL; each failure is
    /// reported against the input row that caused the change.
    fn output_row_by_row(
        &self,
        aggregated: &RecordBatch,
        input_rows: &[usize],
        errors: &mut Vec<RowError>,
    ) -> Result<(Option<BooleanArray>, RecordBatch), PlanError> {
        let plan = &self.plan;
        let mut passes = Vec::with_capacity(aggregated.num_rows());
        let mut outputs = Vec::with_capacity(aggregated.num_rows());
        for (row, &cause) in input_rows.iter().enumerate().take(aggregated.num_rows()) {
            let mut report = |message: String| errors.push((cause, message));
            let slice = aggregated.slice(row, 1);
            if let Some(having) = &plan.having {
                passes.push(crate::plan::holds_on_row(having, &slice, &mut report));
            }
            let output = crate::plan::project_row(
                &plan.projection,
                &plan.output_schema,
                &slice,
                &mut report,
            )
            .ok_or_else(|| PlanError::Plan("internal: an aggregated row does not fit".into()))?;
            outputs.push(output);
        }
        let output = match outputs.is_empty() {
            true => RecordBatch::new_empty(plan.output_schema.clone()),
            false => arrow::compute::concat_batches(&plan.output_schema, &outputs)?,
        };
        let passes = plan.having.is_some().then(|| BooleanArray::from(passes));
        Ok((passes, output))
    }

    /// `EMIT FINAL` over time windows (see [`final_windows`]): gathers each row into its
    /// windows (a row for a window closed by stream time is late and dropped), closes the
    /// windows stream time passes as it moves row by row, and folds what is left of the
    /// batch at its end.
    fn fold_final(
        &mut self,
        input_rows: &[usize],
        groups: &[ArrayRef],
        group_rows: &arrow::row::Rows,
        arguments: &[Vec<ArrayRef>],
        times: &Int64Array,
        errors: Vec<RowError>,
    ) -> Result<Changes, PlanError> {
        let internal = || PlanError::Plan("internal: EMIT FINAL without a time window".into());
        let windowing = self.plan.windowing.ok_or_else(internal)?;
        let size = match windowing.kind {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => size,
            WindowKind::Session { .. } => return Err(internal()),
        };
        let retention = (size + windowing.grace).max(windowing.retention.unwrap_or(0));
        let converter = (!groups.is_empty()).then_some(&self.converter);
        let windows = self.final_windows.as_mut().ok_or_else(internal)?;
        windows.discard_gathered();
        let mut closed = Vec::new();
        for (row, &cause) in input_rows.iter().enumerate() {
            // A row whose group is NULL belongs to no group: ksqlDB drops it.
            if groups.iter().any(|g| g.is_null(row)) {
                continue;
            }
            let time = times.value(row);
            self.stream_time = self.stream_time.max(time);
            let group = if groups.is_empty() {
                &[][..]
            } else {
                group_rows.row(row).data()
            };
            let index = u32::try_from(row)
                .map_err(|_| PlanError::Plan("internal: a batch of 4 billion rows".into()))?;
            let all = windows_of(windowing.kind, time);
            // A window closes `grace` after its end (by stream time): a record for a closed
            // window is late.
            let open = all
                .iter()
                .filter(|(_, end)| end + windowing.grace > self.stream_time);
            let late = all.len() - open.clone().count();
            self.late_records += late as u64;
            windows.gather(open.map(|(start, _)| *start), group, time, index)?;
            let close = self.stream_time.saturating_sub(windowing.grace);
            let last_start = close.saturating_sub(size);
            if self.last_close.is_some_and(|last| close <= last) || last_start < 0 {
                continue;
            }
            self.last_close = Some(close);
            let retained_from = self.stream_time.saturating_sub(retention);
            for window in windows.close_through(last_start, retained_from, arguments, converter)? {
                closed.push((cause, window));
            }
        }
        windows.fold_gathered(arguments)?;
        let mut rows = self.closed_rows(closed, size)?;
        rows.errors = errors;
        self.conclude(rows)
    }

    /// The aggregated rows of closed windows (each with the index of the row that closed
    /// it), in the order they closed.
    fn closed_rows(
        &self,
        closed: Vec<(usize, ClosedWindow)>,
        size: i64,
    ) -> Result<Aggregated, PlanError> {
        let schema = &self.plan.aggregated_schema;
        let fields = schema.fields();
        let mut batches = Vec::with_capacity(closed.len());
        let mut rows = Aggregated {
            batch: RecordBatch::new_empty(schema.clone()),
            facts: ChangeFacts::default(),
            errors: Vec::new(),
        };
        for (cause, window) in closed {
            let count = window.timestamps.len();
            let bounds = (window.start, window.start.saturating_add(size));
            let mut columns = window.groups;
            columns.push(Arc::new(Int64Array::from_value(bounds.0, count)));
            columns.push(Arc::new(Int64Array::from_value(bounds.1, count)));
            for (values, field) in window.values.into_iter().zip(&fields[columns.len()..]) {
                columns.push(as_planned(values, field)?);
            }
            batches.push(RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(count)),
            )?);
            for timestamp in window.timestamps {
                rows.facts.push(false, timestamp, Some(bounds), cause, None);
            }
        }
        if !batches.is_empty() {
            rows.batch = arrow::compute::concat_batches(schema, &batches)?;
        }
        Ok(rows)
    }

    /// How many groups the state holds.
    fn held_groups(&self) -> usize {
        match &self.final_windows {
            Some(windows) => windows.len(),
            None => self.groups.len(),
        }
    }

    /// `EMIT FINAL`: once stream time has moved the close time (stream time minus the grace
    /// period) on, emits each window that closed and is still retained, then drops it;
    /// windows no longer retained are dropped without a row.
    fn emit_closed_windows(
        &mut self,
        cause: usize,
        pending: &mut Pending,
    ) -> Result<(), PlanError> {
        let Some(windowing) = self.plan.windowing else {
            return Ok(());
        };
        let close = match windowing.kind {
            WindowKind::Session { gap } => self.stream_time.saturating_sub(gap),
            _ => self.stream_time,
        }
        .saturating_sub(windowing.grace);
        if self.last_close.is_some_and(|last| close <= last) {
            return Ok(());
        }
        let closed: Vec<(i64, Box<[u8]>)> = match windowing.kind {
            // Sessions are indexed by their end: those that ended before the close time.
            WindowKind::Session { .. } => {
                self.last_close = Some(close);
                self.pending_windows
                    .iter()
                    .take_while(|(end, _)| *end < close)
                    .cloned()
                    .collect()
            }
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                let upper = close - size;
                if upper < 0 {
                    return Ok(());
                }
                self.last_close = Some(close);
                let retention = (size + windowing.grace).max(windowing.retention.unwrap_or(0));
                let retained_from = self.stream_time.saturating_sub(retention);
                // Every window left that ends by the close closes now (those of earlier
                // closes left then, and a record no longer opens a closed window); a slot
                // whose group is not of that window was freed and taken by another.
                let open = self.window_ends.split_off(&(close.saturating_add(1), 0));
                let ending = std::mem::replace(&mut self.window_ends, open);
                let mut closed = Vec::with_capacity(ending.len());
                for (end, slot) in ending {
                    let Some((key, _)) = self.groups.at_slot(slot) else {
                        continue;
                    };
                    let key: Box<[u8]> = match window_of_state_key(key, true) {
                        Some((_, e)) if e == end => key.into(),
                        _ => continue,
                    };
                    let start = end - size;
                    // A window no longer retained goes without a row.
                    if start < retained_from {
                        if self.groups.remove(&key).is_some() && self.changelog.is_some() {
                            self.removed.push(key);
                        }
                        continue;
                    }
                    closed.push((start, key));
                }
                // As they were kept: by window start, then key.
                closed.sort_unstable();
                closed
            }
        };
        for entry in closed {
            if matches!(windowing.kind, WindowKind::Session { .. }) {
                self.pending_windows.remove(&entry);
            }
            let Some(mut group) = self.groups.remove(&entry.1) else {
                continue;
            };
            if self.changelog.is_some() {
                self.removed.push(entry.1.clone());
            }
            let values = evaluate(&mut group.accumulators)?;
            let group_bytes = group_of_state_key(&entry.1, true);
            let window = window_of_state_key(&entry.1, true);
            if let (WindowKind::Session { .. }, Some(window)) = (windowing.kind, window)
                && let Some(sessions) = self.sessions.get_mut(group_bytes)
            {
                sessions.retain(|s| *s != window);
            }
            pending.push_change(
                (GroupRow::Stored(group_bytes.into()), cause),
                values,
                false,
                group.timestamp,
                window,
                None,
            );
        }
        Ok(())
    }

    /// Forgets windows that can no longer change: ended more than the grace period (or the
    /// retention, when longer) before stream time.
    fn evict_closed_windows(&mut self) {
        let Some(windowing) = self.plan.windowing else {
            return;
        };
        let gap = match windowing.kind {
            WindowKind::Session { gap } => gap,
            _ => 0,
        };
        let keep_for = (windowing.grace + gap).max(windowing.retention.unwrap_or(0));
        let horizon = self.stream_time.saturating_sub(keep_for);
        // Windows that end after the horizon stay.
        let kept = self.window_ends.split_off(&(horizon.saturating_add(1), 0));
        let closed = std::mem::replace(&mut self.window_ends, kept);
        for (end, slot) in closed {
            let key: Box<[u8]> = match self.groups.at_slot(slot) {
                Some((key, _)) if window_of_state_key(key, true).is_some_and(|w| w.1 == end) => {
                    key.into()
                }
                _ => continue,
            };
            if self.groups.remove(&key).is_none() {
                continue;
            }
            if let (WindowKind::Session { .. }, Some(window)) =
                (windowing.kind, window_of_state_key(&key, true))
            {
                let group_bytes = group_of_state_key(&key, true);
                if let Some(sessions) = self.sessions.get_mut(group_bytes) {
                    sessions.retain(|s| *s != window);
                    if sessions.is_empty() {
                        self.sessions.remove(group_bytes);
                    }
                }
            }
            if self.changelog.is_some() {
                self.removed.push(key);
            }
        }
    }

    /// Coalesced emission: the latest row of each group changed since the last flush (a
    /// tombstone where `HAVING` stopped holding), then forgets closed windows. (The task
    /// flushes in chunks: [`Aggregation::take_changed`], [`Aggregation::flush_groups`],
    /// [`Aggregation::end_flush`].)
    pub fn flush(&mut self) -> Result<Changes, PlanError> {
        let slots = self.take_changed();
        let changes = self.flush_groups(slots)?;
        self.end_flush();
        Ok(changes)
    }

    /// Coalesced emission: the slots of the groups changed since the last flush, in the
    /// order they first changed; the cache counts as empty from here.
    pub fn take_changed(&mut self) -> Vec<u32> {
        self.dirty.take()
    }

    /// Coalesced emission: the latest rows of some of the groups [`Aggregation::take_changed`]
    /// answered.
    pub fn flush_groups(&mut self, slots: Vec<u32>) -> Result<Changes, PlanError> {
        let mut pending = Pending::new(self.plan.aggregates.len());
        let having = self.plan.having.is_some();
        let windowed = self.plan.windowing.is_some();
        for slot in slots {
            // A slot freed and taken again since it was marked holds a group that is only
            // flushed if it was marked itself.
            let Some((key, group)) = self.groups.at_slot(slot) else {
                continue;
            };
            if !std::mem::take(&mut group.dirty) {
                continue;
            }
            if !self.plan.emit_final {
                push_group_row(&mut pending, key, group, having, windowed)?;
            }
            if self.changelog.is_some() {
                self.unlogged.push(slot);
            }
        }
        self.finish(pending, &[], None)
    }

    /// Coalesced emission: ends a flush by forgetting closed windows.
    pub fn end_flush(&mut self) {
        self.evict_closed_windows();
    }

    /// Coalesced emission: about how many bytes the changed groups hold.
    pub fn cached_bytes(&self) -> usize {
        self.dirty.bytes
    }

    /// Whether groups are marked when they change: for a changelog, or for coalesced
    /// emission of their rows (`EMIT FINAL` emits closed windows instead).
    fn tracks_changes(&self) -> bool {
        self.changelog.is_some() || (self.plan.emission.coalesces() && !self.plan.emit_final)
    }
}

/// A batch's `WHERE`, groups and aggregate arguments, evaluated before it is folded.
struct Prepared {
    /// `ROWTIME` of every input row (before the `WHERE`).
    original_times: Int64Array,
    /// For each row that passed the `WHERE`, its index in the input batch.
    input_rows: Vec<usize>,
    /// The rest count rows that passed the `WHERE`.
    groups: Vec<ArrayRef>,
    arguments: Vec<Vec<ArrayRef>>,
    times: Int64Array,
    group_rows: arrow::row::Rows,
    /// Input rows functions failed on (they gave NULL there).
    errors: Vec<RowError>,
}

/// Aggregated rows (the group columns, window bounds and aggregate values of the plan's
/// aggregated schema) and what each is.
struct Aggregated {
    batch: RecordBatch,
    facts: ChangeFacts,
    errors: Vec<RowError>,
}

impl ChangeFacts {
    fn push(
        &mut self,
        tombstone: bool,
        timestamp: i64,
        window: Option<(i64, i64)>,
        input_row: usize,
        group: Option<Box<[u8]>>,
    ) {
        self.tombstones.push(tombstone);
        self.timestamps.push(timestamp);
        self.windows.push(window);
        self.input_rows.push(input_row);
        self.groups.push(group);
    }
}

/// Accumulators may answer a type related to the plan's (a dictionary, a view): cast to
/// the plan's.
fn as_planned(array: ArrayRef, field: &arrow::datatypes::FieldRef) -> Result<ArrayRef, PlanError> {
    if array.data_type() == field.data_type() {
        return Ok(array);
    }
    Ok(arrow::compute::cast(&array, field.data_type())?)
}

/// The input row being folded: its index in the batch, its group's bytes, its time, and
/// the index of the record that carried it.
struct Row<'a> {
    index: usize,
    group: &'a [u8],
    time: i64,
    cause: usize,
}

impl Pending {
    fn new(aggregates: usize) -> Pending {
        Pending {
            rows: Vec::new(),
            values: vec![Vec::new(); aggregates],
            facts: ChangeFacts::default(),
            errors: Vec::new(),
        }
    }

    fn push(
        &mut self,
        at: &Row<'_>,
        values: Vec<ScalarValue>,
        tombstone: bool,
        timestamp: i64,
        window: Option<(i64, i64)>,
        group: Option<Box<[u8]>>,
    ) {
        let row = GroupRow::Batch(u32::try_from(at.index).unwrap_or(u32::MAX));
        self.push_change((row, at.cause), values, tombstone, timestamp, window, group);
    }

    /// Records a change: where its group values come from and the input row that caused
    /// it, its aggregate values, and (for `HAVING` bookkeeping) its group's state key.
    fn push_change(
        &mut self,
        (row, cause): (GroupRow, usize),
        values: Vec<ScalarValue>,
        tombstone: bool,
        timestamp: i64,
        window: Option<(i64, i64)>,
        group: Option<Box<[u8]>>,
    ) {
        self.rows.push(row);
        for (column, value) in self.values.iter_mut().zip(values) {
            column.push(value);
        }
        self.facts.push(tombstone, timestamp, window, cause, group);
    }
}

/// Records a stored group's current row as a change; with `HAVING`, with the group's state
/// key for the bookkeeping (without, the row is shown).
fn push_group_row(
    pending: &mut Pending,
    key: &[u8],
    group: &mut Group,
    having: bool,
    windowed: bool,
) -> Result<(), PlanError> {
    let values = evaluate(&mut group.accumulators)?;
    let group_bytes = group_of_state_key(key, windowed);
    if !having {
        group.shown = true;
    }
    pending.push_change(
        (GroupRow::Stored(group_bytes.into()), 0),
        values,
        false,
        group.timestamp,
        window_of_state_key(key, windowed),
        having.then(|| key.into()),
    );
    Ok(())
}

/// The slots of the groups marked changed, in the order they were first marked, and about
/// how many bytes they hold (what the record cache counts).
#[derive(Debug, Default)]
struct DirtyGroups {
    slots: Vec<u32>,
    bytes: usize,
}

impl DirtyGroups {
    /// Marks a group changed (once until the slots are taken).
    fn mark(&mut self, group: &mut Group, slot: u32, key_length: usize) {
        if !std::mem::replace(&mut group.dirty, true) {
            self.slots.push(slot);
            // The key, its row and the cache's bookkeeping, as Kafka Streams' cache counts
            // them.
            self.bytes += key_length + 64;
        }
    }

    fn take(&mut self) -> Vec<u32> {
        self.bytes = 0;
        std::mem::take(&mut self.slots)
    }
}

/// A group with fresh accumulators.
fn new_group(plan: &AggregatePlan, time: i64) -> Result<Group, PlanError> {
    Ok(Group {
        accumulators: plan
            .aggregates
            .iter()
            .map(|a| {
                if plan.over_table {
                    a.create_sliding_accumulator()
                } else {
                    a.create_accumulator()
                }
            })
            .collect::<Result<_, _>>()?,
        timestamp: time,
        shown: false,
        dirty: false,
    })
}

fn evaluate(accumulators: &mut [Box<dyn Accumulator>]) -> Result<Vec<ScalarValue>, PlanError> {
    Ok(accumulators
        .iter_mut()
        .map(|a| a.evaluate())
        .collect::<Result<_, _>>()?)
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
pub fn windows_of(kind: WindowKind, time: i64) -> smallvec::SmallVec<[(i64, i64); 8]> {
    match kind {
        WindowKind::Tumbling { size } if size > 0 => {
            let start = time - time.rem_euclid(size);
            smallvec::smallvec![(start, start + size)]
        }
        WindowKind::Hopping { size, advance } if size > 0 && advance > 0 => {
            let last = time - time.rem_euclid(advance);
            let mut windows = smallvec::SmallVec::new();
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
        _ => smallvec::SmallVec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::aggregate::Emission;
    use crate::runtime::state::StateStore;

    /// An aggregation of `query` over a stream `CLICKS (USER STRING, ROWTIME BIGINT)`.
    fn aggregation(query: &str, emit_final: bool) -> Aggregation {
        aggregation_with(query, |plan| plan.emit_final = emit_final)
    }

    /// An aggregation of `query` with coalesced emission.
    fn coalesced(query: &str) -> Aggregation {
        aggregation_with(query, |plan| {
            plan.emission = Emission::Coalesced {
                cache_bytes: Emission::DEFAULT_CACHE_BYTES,
                commit_interval: Emission::DEFAULT_COMMIT_INTERVAL,
            }
        })
    }

    fn aggregation_with(query: &str, adjust: impl FnOnce(&mut AggregatePlan)) -> Aggregation {
        use arrow::datatypes::{DataType, Field, Schema};
        let planner = crate::plan::Planner::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("USER", DataType::Utf8, true),
            Field::new("ROWTIME", DataType::Int64, true),
        ]));
        planner
            .register_source("CLICKS", schema)
            .expect("registers");
        let riffle_grammar::ast::Statement::Query(query) =
            riffle_grammar::parse_statement(query).expect("parses")
        else {
            panic!("a query");
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let mut plan = runtime
            .block_on(planner.plan_aggregate(&query, &["USER".to_string()]))
            .expect("plans");
        adjust(&mut plan);
        Aggregation::new(Arc::new(plan)).expect("starts")
    }

    fn clicks(users: &[&str], times: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "USER",
                Arc::new(arrow::array::StringArray::from(users.to_vec())) as ArrayRef,
            ),
            (
                "ROWTIME",
                Arc::new(Int64Array::from(times.to_vec())) as ArrayRef,
            ),
        ])
        .expect("a batch")
    }

    #[test]
    fn emit_final_emits_each_window_once_when_it_closes_and_forgets_it() {
        let mut counts = aggregation(
            "SELECT USER, COUNT(*) AS N FROM CLICKS WINDOW TUMBLING (SIZE 10 MILLISECONDS, \
             GRACE PERIOD 0 MILLISECONDS) GROUP BY USER EMIT FINAL;",
            true,
        );
        let changes = counts
            .process(&clicks(&["a", "b", "a"], &[1, 2, 3]))
            .expect("folds");
        assert_eq!(
            changes.output.num_rows(),
            0,
            "nothing before the window closes"
        );
        let changes = counts.process(&clicks(&["a"], &[10])).expect("folds");
        assert_eq!(changes.windows, [Some((0, 10)), Some((0, 10))]);
        let n = changes
            .output
            .column_by_name("N")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
            .expect("counts");
        assert_eq!(n.values().to_vec(), [2, 1], "a then b, each once");
        // A thousand windows later, only the open window is kept.
        let users: Vec<&str> = vec!["a"; 1000];
        let times: Vec<i64> = (0..1000).map(|i| 20 + i * 10).collect();
        let changes = counts.process(&clicks(&users, &times)).expect("folds");
        assert_eq!(changes.output.num_rows(), 1000);
        assert_eq!(
            counts.held_groups(),
            1,
            "emitted windows are dropped: only the open window's group waits"
        );
    }

    fn counts(changes: &Changes) -> Vec<i64> {
        changes
            .output
            .column_by_name("N")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
            .expect("counts")
            .values()
            .to_vec()
    }

    /// The column `X` of each change (NULL as `None`).
    fn column_x(changes: &Changes) -> Vec<Option<i64>> {
        changes
            .output
            .column_by_name("X")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
            .expect("an X column")
            .iter()
            .collect()
    }

    #[test]
    fn a_row_whose_output_fails_is_counted_once_and_shows_null_where_it_failed() {
        // 10 / (COUNT(*) - 2) divides by zero on the second row of a group.
        let query = "SELECT USER, COUNT(*) AS N, 10 / (COUNT(*) - 2) AS X FROM CLICKS \
                     GROUP BY USER;";
        let mut per_user = aggregation(query, false);
        let changes = per_user
            .process(&clicks(&["a", "a", "a"], &[1, 2, 3]))
            .expect("a failing output column does not fail the batch");
        assert_eq!(counts(&changes), [1, 2, 3], "each row counted once");
        assert_eq!(column_x(&changes), [Some(-10), None, Some(10)]);
        assert_eq!(changes.errors.len(), 1, "{:?}", changes.errors);
        assert_eq!(changes.errors[0].0, 1, "the failure is the second row's");
        let changes = per_user.process(&clicks(&["a"], &[4])).expect("folds");
        assert_eq!(counts(&changes), [4], "no row was folded twice");
        assert!(changes.errors.is_empty());

        let query = "SELECT USER, COUNT(*) AS N, 10 / (COUNT(*) - 2) AS X FROM CLICKS \
                     WINDOW TUMBLING (SIZE 10 MILLISECONDS, GRACE PERIOD 0 MILLISECONDS) \
                     GROUP BY USER EMIT FINAL;";
        let mut final_counts = aggregation(query, true);
        let changes = final_counts
            .process(&clicks(
                &["a", "b", "b", "c", "c", "c", "d"],
                &[1, 2, 3, 4, 5, 6, 10],
            ))
            .expect("a failing output column does not fail the batch");
        assert_eq!(
            counts(&changes),
            [1, 2, 3],
            "a, b and c's window, each once"
        );
        assert_eq!(column_x(&changes), [Some(-10), None, Some(10)]);
        assert_eq!(changes.errors.len(), 1, "{:?}", changes.errors);
        assert_eq!(
            changes.errors[0].0, 6,
            "the row that closed the window caused it"
        );
        let changes = final_counts.process(&clicks(&["d"], &[20])).expect("folds");
        assert_eq!(counts(&changes), [1], "d's window holds its one row");
    }

    #[test]
    fn coalesced_emission_emits_each_changed_group_once_per_flush() {
        let mut per_user = coalesced("SELECT USER, COUNT(*) AS N FROM CLICKS GROUP BY USER;");
        let changes = per_user
            .process(&clicks(&["a", "b", "a"], &[1, 2, 3]))
            .expect("folds");
        assert_eq!(changes.output.num_rows(), 0, "nothing before a flush");
        let changes = per_user.process(&clicks(&["a"], &[4])).expect("folds");
        assert_eq!(changes.output.num_rows(), 0);
        assert!(per_user.cached_bytes() > 0);
        let flushed = per_user.flush().expect("flushes");
        assert_eq!(
            counts(&flushed),
            [3, 1],
            "a then b, each with its latest count"
        );
        assert_eq!(flushed.timestamps.values().to_vec(), [4, 2]);
        assert_eq!(per_user.cached_bytes(), 0);
        assert_eq!(per_user.flush().expect("flushes").output.num_rows(), 0);
        per_user.process(&clicks(&["b"], &[5])).expect("folds");
        assert_eq!(counts(&per_user.flush().expect("flushes")), [2]);
    }

    #[test]
    fn coalesced_emission_sends_a_tombstone_only_for_a_group_it_showed() {
        let mut pairs =
            coalesced("SELECT USER, COUNT(*) AS N FROM CLICKS GROUP BY USER HAVING COUNT(*) = 2;");
        // One and three within a flush: never shown, so no tombstone either.
        pairs
            .process(&clicks(&["a", "b", "b", "b"], &[1, 2, 3, 4]))
            .expect("folds");
        let flushed = pairs.flush().expect("flushes");
        assert_eq!(flushed.output.num_rows(), 0);
        // Two for a, shown; then a third: a tombstone.
        pairs.process(&clicks(&["a"], &[5])).expect("folds");
        let flushed = pairs.flush().expect("flushes");
        assert_eq!(
            (counts(&flushed), flushed.tombstones),
            (vec![2], vec![false])
        );
        pairs.process(&clicks(&["a"], &[6])).expect("folds");
        assert_eq!(pairs.flush().expect("flushes").tombstones, [true]);
    }

    #[test]
    fn coalesced_sessions_tombstone_only_the_sessions_already_emitted() {
        let mut sessions = coalesced(
            "SELECT USER, COUNT(*) AS N FROM CLICKS WINDOW SESSION (20 MILLISECONDS) \
             GROUP BY USER;",
        );
        sessions
            .process(&clicks(&["a", "a"], &[0, 30]))
            .expect("folds");
        let flushed = sessions.flush().expect("flushes");
        assert_eq!(flushed.windows, [Some((0, 0)), Some((30, 30))]);
        // A record between them merges both sessions: their tombstones come at once, the
        // merged session's row with the next flush.
        let changes = sessions.process(&clicks(&["a"], &[15])).expect("folds");
        assert_eq!(changes.tombstones, [true, true]);
        assert_eq!(changes.windows, [Some((0, 0)), Some((30, 30))]);
        let flushed = sessions.flush().expect("flushes");
        assert_eq!(flushed.windows, [Some((0, 30))]);
        assert_eq!(counts(&flushed), [3]);
    }

    /// The latest changelog record of each key, as a compacted changelog reads back.
    fn compacted(records: &[crate::log::ProducerRecord]) -> Vec<(bytes::Bytes, bytes::Bytes)> {
        let mut latest: Vec<(bytes::Bytes, Option<bytes::Bytes>)> = Vec::new();
        for record in records {
            let key = record.key.clone().expect("changelog records have keys");
            match latest.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = record.value.clone(),
                None => latest.push((key, record.value.clone())),
            }
        }
        latest
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect()
    }

    /// What a batch did, comparably.
    fn observed(changes: &Changes) -> String {
        format!(
            "{} {:?} {:?} {:?}",
            arrow::util::pretty::pretty_format_batches(std::slice::from_ref(&changes.output))
                .expect("formats"),
            changes.tombstones,
            changes.windows,
            changes.timestamps.values()
        )
    }

    /// Runs `query` over two batches, once straight through and once with the state
    /// written to a changelog after the first and restored into a new aggregation; answers
    /// both outputs of the second batch.
    fn straight_and_restored(query: &str, adjust: fn(&mut AggregatePlan)) -> (String, String) {
        let first = clicks(&["a", "b", "a"], &[1, 5, 12]);
        let then = clicks(&["c", "b"], &[14, 30]);
        let second = clicks(&["a", "b", "c", "a"], &[31, 33, 18, 40]);
        let mut straight = aggregation_with(query, adjust);
        straight.process(&first).expect("folds");
        straight.process(&then).expect("folds");
        let expected = straight.process(&second).expect("folds");
        // Two writes: the second's records replace the first's where keys meet.
        let mut before = aggregation_with(query, adjust);
        assert!(before.with_changelog().expect("has a codec"));
        before.process(&first).expect("folds");
        let mut records = before.changelog_records().expect("writes");
        before.process(&then).expect("folds");
        records.extend(before.changelog_records().expect("writes"));
        let mut after = aggregation_with(query, adjust);
        assert!(after.with_changelog().expect("has a codec"));
        assert!(after.restore(&compacted(&records)).expect("restores"));
        let restored = after.process(&second).expect("folds");
        (observed(&expected), observed(&restored))
    }

    #[test]
    fn a_restored_aggregation_goes_on_as_if_it_had_never_stopped() {
        let aggregates = "COUNT(*) AS N, SUM(ROWTIME) AS S, AVG(ROWTIME) AS A, \
            MIN(ROWTIME) AS LO, MAX(USER) AS HI, COLLECT_LIST(ROWTIME) AS L, \
            COLLECT_SET(USER) AS CS, TOPK(ROWTIME, 2) AS T, HISTOGRAM(USER) AS H, \
            EARLIEST_BY_OFFSET(ROWTIME) AS E, LATEST_BY_OFFSET(ROWTIME) AS LT, \
            STDDEV_SAMP(ROWTIME) AS SD, COUNT_DISTINCT(ROWTIME) AS CD";
        for window in [
            "",
            "WINDOW TUMBLING (SIZE 20 MILLISECONDS, GRACE PERIOD 10 MILLISECONDS)",
            "WINDOW HOPPING (SIZE 20 MILLISECONDS, ADVANCE BY 10 MILLISECONDS)",
            "WINDOW SESSION (10 MILLISECONDS)",
        ] {
            let query = format!(
                "SELECT USER, {aggregates} FROM CLICKS {window} GROUP BY USER \
                 HAVING COUNT(*) < 3;"
            );
            let (straight, restored) = straight_and_restored(&query, |_| {});
            assert_eq!(straight, restored, "{window}");
        }
    }

    #[test]
    fn a_restored_emit_final_session_aggregation_emits_the_sessions_it_held() {
        let query = "SELECT USER, COUNT(*) AS N FROM CLICKS WINDOW SESSION (5 MILLISECONDS, \
            GRACE PERIOD 0 MILLISECONDS) GROUP BY USER EMIT FINAL;";
        let (straight, restored) = straight_and_restored(query, |plan| plan.emit_final = true);
        // b's session (30, 33) began before the restart.
        assert!(straight.contains("| b    | 2 |"), "{straight}");
        assert_eq!(straight, restored);
    }

    #[test]
    fn emit_final_time_windows_folded_by_batch_emit_what_folding_by_group_does() {
        let aggregates = "COUNT(*) AS N, SUM(ROWTIME) AS S, AVG(ROWTIME) AS A, \
            MIN(ROWTIME) AS LO, MAX(USER) AS HI, COLLECT_LIST(ROWTIME) AS L, \
            TOPK(ROWTIME, 2) AS T, LATEST_BY_OFFSET(ROWTIME) AS LT";
        // Out of order, late records, a jump past the retention, and a NULL group.
        let users = ["a", "b", "a", "c", "b", "a", "c", "a", "b", "c", "a", "b"];
        let times = [1, 5, 12, 14, 3, 30, 18, 33, 31, 200, 190, 205];
        for (window, having) in [
            (
                "TUMBLING (SIZE 10 MILLISECONDS, GRACE PERIOD 5 MILLISECONDS)",
                "",
            ),
            (
                "HOPPING (SIZE 20 MILLISECONDS, ADVANCE BY 5 MILLISECONDS, \
                 GRACE PERIOD 3 MILLISECONDS)",
                "HAVING COUNT(*) > 1",
            ),
            (
                "HOPPING (SIZE 20 MILLISECONDS, ADVANCE BY 10 MILLISECONDS, \
                 RETENTION 100 MILLISECONDS, GRACE PERIOD 0 MILLISECONDS)",
                "",
            ),
        ] {
            let query = format!(
                "SELECT USER, {aggregates} FROM CLICKS WINDOW {window} GROUP BY USER \
                 {having} EMIT FINAL;"
            );
            let mut by_batch = aggregation(&query, true);
            assert!(by_batch.final_windows.is_some());
            let mut by_group = aggregation(&query, true);
            by_group.final_windows = None;
            let mut outputs = (Vec::new(), Vec::new());
            let mut emitted = 0;
            // Batches of one to four rows, so windows close inside and between batches.
            let mut from = 0;
            for length in [1, 4, 2, 3, 2] {
                let rows = from..(from + length).min(users.len());
                let mut batch_users: Vec<Option<&str>> =
                    users[rows.clone()].iter().copied().map(Some).collect();
                if from == 1 {
                    batch_users[1] = None;
                }
                let batch = RecordBatch::try_from_iter([
                    (
                        "USER",
                        Arc::new(arrow::array::StringArray::from(batch_users)) as ArrayRef,
                    ),
                    (
                        "ROWTIME",
                        Arc::new(Int64Array::from(times[rows].to_vec())) as ArrayRef,
                    ),
                ])
                .expect("a batch");
                let batch_changes = by_batch.process(&batch).expect("folds");
                let group_changes = by_group.process(&batch).expect("folds");
                assert_eq!(batch_changes.input_rows, group_changes.input_rows);
                emitted += batch_changes.output.num_rows();
                outputs.0.push(observed(&batch_changes));
                outputs.1.push(observed(&group_changes));
                from += length;
            }
            assert_eq!(outputs.0, outputs.1, "{window}");
            assert_eq!(by_batch.late_records, by_group.late_records, "{window}");
            assert!(emitted > 0, "windows closed: {window}");
        }
    }

    #[test]
    fn a_restored_table_aggregation_takes_back_rows_it_read_before() {
        let query = "SELECT USER, COUNT(*) AS N, COLLECT_LIST(ROWTIME) AS L FROM CLICKS \
            GROUP BY USER;";
        let over_table = |plan: &mut AggregatePlan| plan.over_table = true;
        let mut before = aggregation_with(query, over_table);
        assert!(before.with_changelog().expect("has a codec"));
        let rows = clicks(&["a", "a", "b"], &[1, 2, 3]);
        before
            .process_table(&rows, &[b"k1", b"k2", b"k3"])
            .expect("folds");
        let records = before.changelog_records().expect("writes");
        let mut after = aggregation_with(query, over_table);
        assert!(after.with_changelog().expect("has a codec"));
        assert!(after.restore(&compacted(&records)).expect("restores"));
        // k1 moves from a to b; k2 is deleted.
        let moved = clicks(&["b"], &[4]);
        let changes = after.process_table(&moved, &[b"k1"]).expect("folds");
        let deleted = after.delete(&[(b"k2", 5)]).expect("deletes");
        let pretty = |c: &Changes| {
            arrow::util::pretty::pretty_format_batches(std::slice::from_ref(&c.output))
                .expect("formats")
                .to_string()
        };
        let (changes, deleted) = (pretty(&changes), pretty(&deleted));
        assert!(changes.contains("| a    | 1 | [2]    |"), "{changes}");
        assert!(changes.contains("| b    | 2 | [3, 4] |"), "{changes}");
        assert!(deleted.contains("| a    | 0 | [] |"), "{deleted}");
    }

    #[test]
    fn a_changelog_from_another_plan_is_not_read() {
        let mut counts = aggregation(
            "SELECT USER, COUNT(*) AS N FROM CLICKS GROUP BY USER;",
            false,
        );
        assert!(counts.with_changelog().expect("has a codec"));
        counts.process(&clicks(&["a"], &[1])).expect("folds");
        let records = counts.changelog_records().expect("writes");
        let mut sums = aggregation(
            "SELECT USER, SUM(ROWTIME) AS N FROM CLICKS GROUP BY USER;",
            false,
        );
        assert!(sums.with_changelog().expect("has a codec"));
        assert!(!sums.restore(&compacted(&records)).expect("reads"));
        assert!(sums.groups.is_empty());
    }

    #[test]
    fn windows_are_aligned_to_the_epoch_and_end_exclusive() {
        assert_eq!(
            windows_of(WindowKind::Tumbling { size: 30_000 }, 89_999).as_slice(),
            [(60_000, 90_000)]
        );
        assert_eq!(
            windows_of(WindowKind::Tumbling { size: 30_000 }, 90_000).as_slice(),
            [(90_000, 120_000)]
        );
        assert_eq!(
            windows_of(
                WindowKind::Hopping {
                    size: 30_000,
                    advance: 10_000
                },
                25_000
            )
            .as_slice(),
            [(0, 30_000), (10_000, 40_000), (20_000, 50_000)]
        );
        assert_eq!(
            windows_of(
                WindowKind::Hopping {
                    size: 30_000,
                    advance: 10_000
                },
                5_000
            )
            .as_slice(),
            [(0, 30_000)]
        );
    }
}
