//! `EMIT FINAL` over tumbling and hopping windows, a batch at a time. Each open window keeps
//! its groups under dense indices (group bytes to index, in an [`ArenaMap`]) and one
//! DataFusion [`GroupsAccumulator`] per aggregate. A batch's rows are gathered per window
//! and folded with one `update_batch` per window and aggregate; when stream time closes a
//! window, its rows come out of `evaluate(EmitTo::All)` as arrays, ordered by group key, and
//! the window is dropped whole. No per-group accumulator, `ScalarValue` or removal.
//!
//! The rules are [`super::Aggregation`]'s: the caller decides which records are late and
//! when windows close; this module holds the open windows. There is no changelog: after a
//! restart the state is rebuilt from the source.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::row::RowConverter;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::ArenaMap;
use crate::plan::PlanError;

/// The open windows of an `EMIT FINAL` time-windowed aggregation, by window start.
pub(super) struct FinalWindows {
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    open: BTreeMap<i64, WindowGroups>,
    /// Every window's groups hash with this: a row's group is hashed once for all its
    /// windows.
    hasher: foldhash::fast::RandomState,
}

/// One open window's groups.
struct WindowGroups {
    /// Group bytes to the group's index (its slot: groups are never removed from a window).
    groups: ArenaMap<()>,
    /// Each group's latest record time: the time of its output record.
    timestamps: Vec<i64>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// The rows of the current batch in this window, and their groups, not folded yet.
    rows: Vec<u32>,
    indices: Vec<usize>,
}

/// A closed window's rows, ordered by group key.
pub(super) struct ClosedWindow {
    pub start: i64,
    /// The group columns (none without `GROUP BY`).
    pub groups: Vec<ArrayRef>,
    /// Each aggregate's values.
    pub values: Vec<ArrayRef>,
    pub timestamps: Vec<i64>,
}

impl FinalWindows {
    pub fn new(aggregates: Vec<Arc<AggregateFunctionExpr>>) -> FinalWindows {
        FinalWindows {
            aggregates,
            open: BTreeMap::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// How many groups the open windows hold.
    pub fn len(&self) -> usize {
        self.open.values().map(|w| w.timestamps.len()).sum()
    }

    /// Forgets the rows gathered from a batch that failed (their indices are of that batch).
    pub fn discard_gathered(&mut self) {
        for window in self.open.values_mut() {
            window.rows.clear();
            window.indices.clear();
        }
    }

    /// Gathers a batch row (`row`, of group `group` at `time`) into the windows starting at
    /// `starts`, opening those that are new.
    pub fn gather(
        &mut self,
        starts: impl Iterator<Item = i64>,
        group: &[u8],
        time: i64,
        row: u32,
    ) -> Result<(), PlanError> {
        let hash = self.hasher.hash_one(group);
        for start in starts {
            let window = match self.open.entry(start) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(WindowGroups::new(&self.aggregates, self.hasher.clone())?)
                }
            };
            let index = window.groups.slot_or_insert_hashed(hash, group, || ()) as usize;
            match window.timestamps.get_mut(index) {
                Some(latest) => *latest = (*latest).max(time),
                None => window.timestamps.push(time),
            }
            window.rows.push(row);
            window.indices.push(index);
        }
        Ok(())
    }

    /// Folds the rows gathered from the batch whose aggregate arguments are `arguments`.
    pub fn fold_gathered(&mut self, arguments: &[Vec<ArrayRef>]) -> Result<(), PlanError> {
        for window in self.open.values_mut() {
            window.fold(arguments)?;
        }
        Ok(())
    }

    /// Closes the windows that start at or before `last_start`: those starting at or after
    /// `retained_from` answer their rows (after folding what was gathered for them from the
    /// batch of `arguments`); earlier ones go without a row. `converter` turns group bytes
    /// back into columns (`None` without `GROUP BY`).
    pub fn close_through(
        &mut self,
        last_start: i64,
        retained_from: i64,
        arguments: &[Vec<ArrayRef>],
        converter: Option<&RowConverter>,
    ) -> Result<Vec<ClosedWindow>, PlanError> {
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() > last_start {
                break;
            }
            let start = *entry.key();
            let mut window = entry.remove();
            if start < retained_from {
                continue;
            }
            window.fold(arguments)?;
            closed.push(window.emit(start, converter)?);
        }
        Ok(closed)
    }
}

impl WindowGroups {
    fn new(
        aggregates: &[Arc<AggregateFunctionExpr>],
        hasher: foldhash::fast::RandomState,
    ) -> Result<WindowGroups, PlanError> {
        let accumulators = aggregates
            .iter()
            .map(
                |aggregate| -> Result<Box<dyn GroupsAccumulator>, PlanError> {
                    if aggregate.groups_accumulator_supported() {
                        return Ok(aggregate.create_groups_accumulator()?);
                    }
                    // Aggregates without a vectorized form keep one accumulator per group.
                    let aggregate = aggregate.clone();
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        aggregate.create_accumulator()
                    })))
                },
            )
            .collect::<Result<_, _>>()?;
        Ok(WindowGroups {
            groups: ArenaMap::with_hasher(hasher),
            timestamps: Vec::new(),
            accumulators,
            rows: Vec::new(),
            indices: Vec::new(),
        })
    }

    /// Folds the gathered rows: one `update_batch` per aggregate.
    fn fold(&mut self, arguments: &[Vec<ArrayRef>]) -> Result<(), PlanError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        // Rows are gathered in batch order, at most once each: as many as the batch has
        // means all of them, and they need no picking out.
        let whole_batch = arguments
            .iter()
            .flatten()
            .next()
            .is_some_and(|column| column.len() == self.rows.len());
        let picked = (!whole_batch).then(|| UInt32Array::from(std::mem::take(&mut self.rows)));
        let groups = self.timestamps.len();
        for (accumulator, columns) in self.accumulators.iter_mut().zip(arguments) {
            let values = match &picked {
                Some(rows) => columns
                    .iter()
                    .map(|column| arrow::compute::take(column, rows, None))
                    .collect::<Result<Vec<_>, _>>()?,
                None => columns.clone(),
            };
            accumulator.update_batch(&values, &self.indices, None, groups)?;
        }
        self.rows.clear();
        self.indices.clear();
        Ok(())
    }

    /// The window's rows, ordered by group key.
    fn emit(
        mut self,
        start: i64,
        converter: Option<&RowConverter>,
    ) -> Result<ClosedWindow, PlanError> {
        let mut order: Vec<u32> = (0..self.timestamps.len() as u32).collect();
        let key = |slot: u32| self.groups.key_at_slot(slot).unwrap_or_default();
        order.sort_unstable_by(|a, b| key(*a).cmp(key(*b)));
        let groups = match converter {
            None => Vec::new(),
            Some(converter) => {
                let parser = converter.parser();
                converter.convert_rows(order.iter().map(|&slot| parser.parse(key(slot))))?
            }
        };
        let timestamps = order
            .iter()
            .map(|&slot| self.timestamps[slot as usize])
            .collect();
        let order = UInt32Array::from(order);
        let values = self
            .accumulators
            .iter_mut()
            .map(|accumulator| {
                let values = accumulator.evaluate(EmitTo::All)?;
                Ok(arrow::compute::take(&values, &order, None)?)
            })
            .collect::<Result<_, PlanError>>()?;
        Ok(ClosedWindow {
            start,
            groups,
            values,
            timestamps,
        })
    }
}
