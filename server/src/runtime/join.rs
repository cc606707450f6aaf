//! Streaming joins, as ksqlDB (Kafka Streams) runs them: one [`JoinStep`] pairs the rows
//! of two inputs by key; an n-way join chains steps, each one's output the next one's left
//! input.
//!
//! ```text
//!  stream–stream   each side keeps its rows for `before + after + grace`; a row joins the
//!                  other side's rows of its key within [t - before, t + after]
//!  stream–table    a stream row joins the table's row of its key at that moment; table
//!                  rows only update the table
//!  table–table     either side's change joins the other side's current row; a change
//!                  that leaves no joined row deletes it
//! ```
//!
//! Rows stay in the decoded batches they came in (`join/stored.rs`); a step's output is
//! gathered from them with `interleave`: the carried columns of both sides, then `ROWTIME`
//! and the join key. Entry point: [`JoinStep::push`].

pub mod snapshot;
pub mod stored;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use riffle_grammar::ast::JoinKind;

use crate::runtime::arena_map::ArenaMap;
use stored::{RowRef, StoredRows};

/// Which input of a step a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Right,
    Left,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// Where a step finds things in one input's batches.
#[derive(Debug, Clone)]
pub struct SideLayout {
    /// The columns copied to the output, in order.
    pub carried: Vec<usize>,
    /// The row time (`ROWTIME`, BIGINT).
    pub time: usize,
    /// The join key.
    pub key: usize,
}

/// How the two inputs are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMode {
    /// Stream–stream: rows join when the right row's time is within `before` ms before and
    /// `after` ms after the left row's. Each side keeps rows for `before + after + grace`.
    /// `eager`: an outer side's unmatched row is emitted at once (ksqlDB's behaviour
    /// without `GRACE PERIOD`); otherwise once its window has closed, unless a match came.
    Windowed {
        before: i64,
        after: i64,
        grace: i64,
        eager: bool,
    },
    /// The left input is a stream, the right a table.
    StreamTable,
    /// Both inputs are tables (changes by primary key).
    TableTable,
    /// Both inputs are tables; the left's key expression is a foreign key: each left row
    /// joins the right row of its foreign key, and keeps its own key in the result.
    ForeignKey,
}

/// What an output row does to a table result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowChange {
    Upsert,
    /// Deletes its key, where the result holds it.
    Delete,
    /// Deletes its key and is said even when the result does not hold it (ksqlDB's
    /// foreign-key joins forward every tombstone).
    DeleteAlways,
}

/// What a step produced from one input batch.
#[derive(Debug)]
pub struct JoinOutput {
    /// Rows of [`JoinStep::output_schema`].
    pub batch: RecordBatch,
    /// What each row does (table results); all upserts for streams.
    pub changes: Vec<RowChange>,
    /// The row of the pushed batch whose arrival produced each row.
    pub triggers: Vec<u32>,
    /// The headers of the record that produced each row, which its output record carries
    /// (as Kafka Streams forwards them); empty when no input record had any.
    pub headers: Vec<Vec<crate::log::Header>>,
}

impl JoinOutput {
    /// Which rows delete their key: how the next step sees a table input.
    pub fn deletes(&self) -> Vec<bool> {
        self.changes
            .iter()
            .map(|c| *c != RowChange::Upsert)
            .collect()
    }
}

/// A row the state keeps, with its time.
#[derive(Debug, Clone, Copy)]
struct Kept {
    row: RowRef,
    time: i64,
}

/// One input row reaching a step (its key is passed beside it).
#[derive(Debug, Clone, Copy)]
struct Arrival {
    side: Side,
    at: RowRef,
    time: i64,
    /// A table input's tombstone.
    delete: bool,
}

/// What input rows produce: output rows, and rows the state let go of.
#[derive(Debug, Default)]
struct Effects {
    pairs: Vec<Pair>,
    /// For each pair, the row of the pushed batch being processed when it was made.
    triggers: Vec<u32>,
    released: Vec<(Side, RowRef)>,
}

/// One joined output row, by reference to its inputs' rows.
#[derive(Debug, Clone, Copy)]
struct Pair {
    left: Option<RowRef>,
    right: Option<RowRef>,
    time: i64,
    /// The row whose join key the output row carries.
    key: (Side, RowRef),
    change: RowChange,
}

/// One side of a stream–stream join: its rows by key, in time order.
#[derive(Debug, Default)]
struct WindowSide {
    by_key: ArenaMap<Vec<Kept>>,
    /// The largest time this side has seen.
    stream_time: i64,
    /// Stream time at the last sweep of expired rows.
    swept_at: i64,
}

#[derive(Debug)]
enum State {
    Windowed {
        left: WindowSide,
        right: WindowSide,
        /// The largest time either side has seen.
        stream_time: i64,
        /// Unmatched rows of outer sides waiting for their window to close, by time, side
        /// and key (one per key and time, as Kafka Streams keeps them).
        pending: BTreeMap<(i64, Side, Box<[u8]>), RowRef>,
    },
    StreamTable {
        table: ArenaMap<Kept>,
    },
    TableTable {
        left: ArenaMap<Kept>,
        right: ArenaMap<Kept>,
    },
    ForeignKey {
        /// Left rows by their own key, with their foreign key.
        left: ArenaMap<(Kept, Option<Box<[u8]>>)>,
        /// Slots of `left` by foreign key, in the order the rows came.
        by_foreign_key: ArenaMap<Vec<u32>>,
        right: ArenaMap<Kept>,
    },
}

/// A binary join (see the module header).
#[derive(Debug)]
pub struct JoinStep {
    kind: JoinKind,
    mode: StepMode,
    left: SideLayout,
    right: SideLayout,
    left_rows: StoredRows,
    right_rows: StoredRows,
    keys: RowConverter,
    output_schema: SchemaRef,
    state: State,
    /// The left input's own key columns (foreign-key joins).
    left_primary_key: Vec<usize>,
}

/// The name of a step's output time column.
pub const ROWTIME: &str = "ROWTIME";

impl JoinStep {
    /// A step over inputs of these schemas; the output has the carried columns of both,
    /// then `ROWTIME`, then the join key named `key_name`.
    pub fn new(
        kind: JoinKind,
        mode: StepMode,
        (left_schema, left): (SchemaRef, SideLayout),
        (right_schema, right): (SchemaRef, SideLayout),
        key_name: &str,
    ) -> Result<Self, ArrowError> {
        let key_type = left_schema.field(left.key).data_type().clone();
        let right_key_type = right_schema.field(right.key).data_type();
        if &key_type != right_key_type {
            return Err(ArrowError::InvalidArgumentError(format!(
                "internal: join keys of different types ({key_type} and {right_key_type})"
            )));
        }
        let mut fields: Vec<Field> = left
            .carried
            .iter()
            .map(|&c| left_schema.field(c).clone())
            .chain(right.carried.iter().map(|&c| right_schema.field(c).clone()))
            .map(|f| f.with_nullable(true))
            .collect();
        fields.push(Field::new(ROWTIME, DataType::Int64, true));
        fields.push(Field::new(key_name, key_type.clone(), true));
        let state = match mode {
            StepMode::Windowed { .. } => State::Windowed {
                left: WindowSide::default(),
                right: WindowSide::default(),
                stream_time: i64::MIN,
                pending: BTreeMap::new(),
            },
            StepMode::StreamTable => State::StreamTable {
                table: ArenaMap::default(),
            },
            StepMode::TableTable => State::TableTable {
                left: ArenaMap::default(),
                right: ArenaMap::default(),
            },
            StepMode::ForeignKey => State::ForeignKey {
                left: ArenaMap::default(),
                by_foreign_key: ArenaMap::default(),
                right: ArenaMap::default(),
            },
        };
        Ok(Self {
            kind,
            mode,
            keys: RowConverter::new(vec![SortField::new(key_type)])?,
            left_rows: StoredRows::new(left_schema)?,
            right_rows: StoredRows::new(right_schema)?,
            left,
            right,
            output_schema: Arc::new(Schema::new(fields)),
            state,
            left_primary_key: Vec::new(),
        })
    }

    /// Sets the left input's own key columns, which key a foreign-key join's left rows.
    pub fn with_left_primary_key(mut self, columns: Vec<usize>) -> Self {
        self.left_primary_key = columns;
        self
    }

    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Rows the state keeps, both sides.
    pub fn kept_rows(&self) -> usize {
        self.left_rows.live_rows() + self.right_rows.live_rows()
    }

    fn layout(&self, side: Side) -> &SideLayout {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// Whether a side's unmatched rows are emitted (with NULLs for the other side).
    fn is_outer(&self, side: Side) -> bool {
        matches!(
            (self.kind, side),
            (JoinKind::Full, _) | (JoinKind::Left, Side::Left) | (JoinKind::Right, Side::Right)
        )
    }

    /// Joins a batch of one input (`deletes`: which rows are tombstones of a table input)
    /// and returns the joined rows it produced, in order.
    pub fn push(
        &mut self,
        side: Side,
        batch: RecordBatch,
        deletes: Option<&[bool]>,
    ) -> Result<JoinOutput, ArrowError> {
        let layout = self.layout(side).clone();
        let keys_array = batch.column(layout.key).clone();
        let times = arrow::compute::cast(batch.column(layout.time), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>().clone();
        let keys = self
            .keys
            .convert_columns(std::slice::from_ref(&keys_array))?;
        let own_keys = match (&self.mode, side) {
            (StepMode::ForeignKey, Side::Left) => Some(self.own_keys(&batch)?),
            _ => None,
        };
        let rows = batch.num_rows();
        let id = self.rows_mut(side).add(batch);
        let mut effects = Effects::default();
        for row in 0..rows {
            // Rows without a join key join nothing, as in ksqlDB; a foreign-key join's left
            // rows are keyed by their own key (a NULL foreign key joins nothing).
            let foreign_left = own_keys.is_some();
            if times.is_null(row) || (keys_array.is_null(row) && !foreign_left) {
                continue;
            }
            let at = RowRef {
                batch: id,
                row: row as u32,
            };
            let key = keys.row(row);
            let time = times.value(row);
            let delete = deletes.is_some_and(|d| d.get(row).copied().unwrap_or(false));
            let arrival = Arrival {
                side,
                at,
                time,
                delete,
            };
            match self.mode {
                StepMode::Windowed { .. } => self.windowed(arrival, key.as_ref(), &mut effects),
                StepMode::StreamTable => self.stream_table(arrival, key.as_ref(), &mut effects),
                StepMode::TableTable => self.table_table(arrival, key.as_ref(), &mut effects),
                StepMode::ForeignKey => {
                    // A left row's key in the state is its own primary key (its key
                    // columns, see `own_keys`); a NULL foreign key joins nothing.
                    let own = own_keys.as_ref().map(|k| k.row(row));
                    let foreign = (!keys_array.is_null(row)).then(|| key.as_ref());
                    self.foreign_key(
                        arrival,
                        (own.as_ref().map(|k| k.as_ref()), foreign),
                        &mut effects,
                    )
                }
            }
            effects.triggers.resize(effects.pairs.len(), row as u32);
        }
        // Rows the state let go of are released once the output is gathered (it may
        // still point at them).
        let mut output = self.gather(&effects.pairs)?;
        output.triggers = effects.triggers;
        for (side, row) in effects.released {
            self.rows_mut(side).release(row);
        }
        self.rows_mut(side).drop_if_unused(id);
        self.maintain()?;
        Ok(output)
    }

    fn rows_mut(&mut self, side: Side) -> &mut StoredRows {
        match side {
            Side::Left => &mut self.left_rows,
            Side::Right => &mut self.right_rows,
        }
    }

    /// A stream–stream row: kept on its side, joined with the other side's rows in its
    /// window, emitted alone when unmatched on an outer side (at once, or once its window
    /// closes); rows of other keys whose window closed are emitted first.
    fn windowed(&mut self, row: Arrival, key: &[u8], out: &mut Effects) {
        let Arrival { side, at, time, .. } = row;
        let (pairs, released) = (&mut out.pairs, &mut out.released);
        let StepMode::Windowed {
            before,
            after,
            grace,
            eager,
        } = self.mode
        else {
            return;
        };
        let retention = before + after + grace;
        let this_outer = self.is_outer(side);
        let other_outer = self.is_outer(side.other());
        let State::Windowed {
            left,
            right,
            stream_time,
            pending,
        } = &mut self.state
        else {
            return;
        };
        let (own, other, own_rows) = match side {
            Side::Left => (left, right, &mut self.left_rows),
            Side::Right => (right, left, &mut self.right_rows),
        };
        own.stream_time = own.stream_time.max(time);
        if time > own.stream_time.saturating_sub(retention) {
            own_rows.retain(at);
            let kept = Kept { row: at, time };
            match own.by_key.get_mut(key) {
                Some(rows) => {
                    let position = rows.partition_point(|k| k.time <= time);
                    rows.insert(position, kept);
                }
                None => {
                    own.by_key.insert(key, vec![kept]);
                }
            }
        }
        *stream_time = (*stream_time).max(time);
        if !eager && time == *stream_time {
            emit_closed(
                pending,
                *stream_time,
                (before, after, grace),
                pairs,
                released,
            );
        }
        let (from, to) = match side {
            Side::Left => (time - before, time + after),
            Side::Right => (time - after, time + before),
        };
        let from = from.max(0).max(
            other
                .stream_time
                .saturating_sub(retention)
                .saturating_add(1),
        );
        let to = to.max(0);
        let mut matched = false;
        if let Some(rows) = other.by_key.get(key) {
            let start = rows.partition_point(|k| k.time < from);
            for kept in rows[start..].iter().take_while(|k| k.time <= to) {
                matched = true;
                let (l, r) = match side {
                    Side::Left => (at, kept.row),
                    Side::Right => (kept.row, at),
                };
                pairs.push(Pair {
                    left: Some(l),
                    right: Some(r),
                    time: time.max(kept.time),
                    key: (side, at),
                    change: RowChange::Upsert,
                });
                if !eager
                    && other_outer
                    && let Some(waiting) = pending.remove(&(kept.time, side.other(), key.into()))
                {
                    released.push((side.other(), waiting));
                }
            }
        }
        if matched || !this_outer {
            return;
        }
        if eager || to < *stream_time {
            pairs.push(alone(side, at, time));
        } else {
            own_rows.retain(at);
            if let Some(replaced) = pending.insert((time, side, key.into()), at) {
                released.push((side, replaced));
            }
        }
    }

    /// A stream–table row: a stream row joins the table's current row of its key; a table
    /// row replaces (or deletes) its key's row.
    fn stream_table(&mut self, row: Arrival, key: &[u8], out: &mut Effects) {
        let (side, at, time, delete) = (row.side, row.at, row.time, row.delete);
        let (pairs, released) = (&mut out.pairs, &mut out.released);
        let State::StreamTable { table } = &mut self.state else {
            return;
        };
        match side {
            Side::Left => match table.get(key) {
                Some(kept) => pairs.push(Pair {
                    left: Some(at),
                    right: Some(kept.row),
                    time,
                    key: (Side::Left, at),
                    change: RowChange::Upsert,
                }),
                None if self.kind == JoinKind::Left => pairs.push(alone(Side::Left, at, time)),
                None => {}
            },
            Side::Right => {
                let old = replace_row(table, &mut self.right_rows, key, (at, time), delete);
                released.extend(old.map(|old| (Side::Right, old.row)));
            }
        }
    }

    /// A table–table change: the key's joined row is recomputed from both sides' current
    /// rows; when the join type gives no row, the key's row is deleted.
    fn table_table(&mut self, row: Arrival, key: &[u8], out: &mut Effects) {
        let (side, at, time, delete) = (row.side, row.at, row.time, row.delete);
        let (pairs, released) = (&mut out.pairs, &mut out.released);
        let State::TableTable { left, right } = &mut self.state else {
            return;
        };
        let (own, other, own_rows) = match side {
            Side::Left => (left, right, &mut self.left_rows),
            Side::Right => (right, left, &mut self.right_rows),
        };
        let old = replace_row(own, own_rows, key, (at, time), delete);
        released.extend(old.map(|old| (side, old.row)));
        let other = other.get(key).copied();
        let own_row = (!delete).then_some(at);
        let (l, r) = match side {
            Side::Left => (own_row, other.map(|k| k.row)),
            Side::Right => (other.map(|k| k.row), own_row),
        };
        let joined = match self.kind {
            JoinKind::Inner => l.is_some() && r.is_some(),
            JoinKind::Left => l.is_some(),
            JoinKind::Right => r.is_some(),
            JoinKind::Full => l.is_some() || r.is_some(),
        };
        let time = other.map_or(time, |k| time.max(k.time));
        pairs.push(if joined {
            Pair {
                left: l,
                right: r,
                time,
                key: (side, at),
                change: RowChange::Upsert,
            }
        } else {
            Pair {
                left: None,
                right: None,
                time,
                key: (side, at),
                change: RowChange::Delete,
            }
        });
    }

    /// The left table's own keys of a batch (foreign-key joins): its primary key columns.
    fn own_keys(&self, batch: &RecordBatch) -> Result<arrow::row::Rows, ArrowError> {
        let columns: Vec<ArrayRef> = self
            .left_primary_key
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        let fields = columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        RowConverter::new(fields)?.convert_columns(&columns)
    }

    /// A foreign-key join change: a left row joins the right row of its foreign key; a
    /// right row's change reaches every left row that refers to it.
    fn foreign_key(
        &mut self,
        row: Arrival,
        (own, foreign): (Option<&[u8]>, Option<&[u8]>),
        out: &mut Effects,
    ) {
        let (side, at, time, delete) = (row.side, row.at, row.time, row.delete);
        let (pairs, released) = (&mut out.pairs, &mut out.released);
        let inner = self.kind == JoinKind::Inner;
        let State::ForeignKey {
            left,
            by_foreign_key,
            right,
        } = &mut self.state
        else {
            return;
        };
        match side {
            Side::Left => {
                let Some(own) = own else { return };
                if let Some((old, old_foreign)) = left.get(own).cloned() {
                    released.push((Side::Left, old.row));
                    if let (Some(old_foreign), Some(slot)) = (old_foreign, left.slot(own))
                        && let Some(referring) = by_foreign_key.get_mut(&old_foreign)
                    {
                        referring.retain(|s| *s != slot);
                        if referring.is_empty() {
                            by_foreign_key.remove(&old_foreign);
                        }
                    }
                }
                if delete {
                    left.remove(own);
                    pairs.push(Pair {
                        left: Some(at),
                        right: None,
                        time,
                        key: (Side::Left, at),
                        change: RowChange::DeleteAlways,
                    });
                    return;
                }
                self.left_rows.retain(at);
                let slot = left.insert(own, (Kept { row: at, time }, foreign.map(Into::into)));
                if let Some(foreign) = foreign {
                    match by_foreign_key.get_mut(foreign) {
                        Some(referring) => referring.push(slot),
                        None => {
                            by_foreign_key.insert(foreign, vec![slot]);
                        }
                    }
                }
                let matched = foreign.and_then(|f| right.get(f).copied());
                pairs.push(match matched {
                    Some(r) => Pair {
                        left: Some(at),
                        right: Some(r.row),
                        time: time.max(r.time),
                        key: (Side::Left, at),
                        change: RowChange::Upsert,
                    },
                    None if inner => Pair {
                        left: Some(at),
                        right: None,
                        time,
                        key: (Side::Left, at),
                        change: RowChange::Delete,
                    },
                    None => alone(Side::Left, at, time),
                });
            }
            Side::Right => {
                let Some(foreign) = foreign else { return };
                let old = replace_row(right, &mut self.right_rows, foreign, (at, time), delete);
                released.extend(old.map(|old| (Side::Right, old.row)));
                let slots = by_foreign_key.get(foreign).cloned().unwrap_or_default();
                for slot in slots {
                    let Some((_, (row, _))) = left.at_slot(slot) else {
                        continue;
                    };
                    let row = *row;
                    pairs.push(Pair {
                        left: Some(row.row),
                        right: (!delete).then_some(at),
                        time: time.max(row.time),
                        key: (Side::Right, at),
                        change: if delete && inner {
                            RowChange::DeleteAlways
                        } else {
                            RowChange::Upsert
                        },
                    });
                }
            }
        }
    }

    /// The output rows of `pairs`.
    fn gather(&self, pairs: &[Pair]) -> Result<JoinOutput, ArrowError> {
        let mut columns = self
            .left_rows
            .gather(pairs.iter().map(|p| p.left), &self.left.carried)?;
        columns.extend(
            self.right_rows
                .gather(pairs.iter().map(|p| p.right), &self.right.carried)?,
        );
        columns.push(Arc::new(Int64Array::from_iter_values(
            pairs.iter().map(|p| p.time),
        )));
        let key_of = |side: Side| {
            pairs
                .iter()
                .map(move |p| (p.key.0 == side).then_some(p.key.1))
        };
        let left_keys = self
            .left_rows
            .gather(key_of(Side::Left), &[self.left.key])?;
        let right_keys = self
            .right_rows
            .gather(key_of(Side::Right), &[self.right.key])?;
        let from_left = BooleanArray::from_iter(pairs.iter().map(|p| Some(p.key.0 == Side::Left)));
        let keys: ArrayRef =
            arrow::compute::kernels::zip::zip(&from_left, &left_keys[0], &right_keys[0])?;
        columns.push(keys);
        let batch = RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(pairs.len())),
        )?;
        Ok(JoinOutput {
            batch,
            changes: pairs.iter().map(|p| p.change).collect(),
            triggers: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// Drops expired stream–stream rows now and then, and compacts sides whose batches are
    /// mostly dead rows.
    fn maintain(&mut self) -> Result<(), ArrowError> {
        if let (
            StepMode::Windowed {
                before,
                after,
                grace,
                ..
            },
            State::Windowed { left, right, .. },
        ) = (self.mode, &mut self.state)
        {
            let retention = before + after + grace;
            sweep(left, &mut self.left_rows, retention);
            sweep(right, &mut self.right_rows, retention);
        }
        for side in [Side::Left, Side::Right] {
            if self.rows_mut(side).wants_compaction() {
                self.compact(side)?;
            }
        }
        Ok(())
    }

    /// Copies a side's live rows into one batch (see [`StoredRows::compact`]).
    fn compact(&mut self, side: Side) -> Result<(), ArrowError> {
        let (rows, refs): (&mut StoredRows, Vec<&mut RowRef>) = match (&mut self.state, side) {
            (State::Windowed { left, pending, .. }, Side::Left) => {
                (&mut self.left_rows, window_refs(left, pending, Side::Left))
            }
            (State::Windowed { right, pending, .. }, Side::Right) => (
                &mut self.right_rows,
                window_refs(right, pending, Side::Right),
            ),
            (State::StreamTable { .. }, Side::Left) => return Ok(()),
            (State::StreamTable { table }, Side::Right) => (
                &mut self.right_rows,
                table.iter_mut().map(|(_, k)| &mut k.row).collect(),
            ),
            (State::TableTable { left, .. }, Side::Left) => (
                &mut self.left_rows,
                left.iter_mut().map(|(_, k)| &mut k.row).collect(),
            ),
            (State::TableTable { right, .. }, Side::Right)
            | (State::ForeignKey { right, .. }, Side::Right) => (
                &mut self.right_rows,
                right.iter_mut().map(|(_, k)| &mut k.row).collect(),
            ),
            (State::ForeignKey { left, .. }, Side::Left) => (
                &mut self.left_rows,
                left.iter_mut().map(|(_, (k, _))| &mut k.row).collect(),
            ),
        };
        rows.compact(refs)
    }
}

/// Every row reference of a window side: its kept rows and its pending unmatched rows (a
/// row may be both; compaction then copies it twice, which is harmless).
fn window_refs<'a>(
    side: &'a mut WindowSide,
    pending: &'a mut BTreeMap<(i64, Side, Box<[u8]>), RowRef>,
    which: Side,
) -> Vec<&'a mut RowRef> {
    side.by_key
        .iter_mut()
        .flat_map(|(_, rows)| rows.iter_mut().map(|k| &mut k.row))
        .chain(
            pending
                .iter_mut()
                .filter(move |((_, s, _), _)| *s == which)
                .map(|(_, r)| r),
        )
        .collect()
}

/// Sets (or, for a tombstone, removes) a table key's row; answers the row it replaces,
/// which the caller releases.
fn replace_row(
    table: &mut ArenaMap<Kept>,
    rows: &mut StoredRows,
    key: &[u8],
    (at, time): (RowRef, i64),
    delete: bool,
) -> Option<Kept> {
    if delete {
        return table.remove(key);
    }
    rows.retain(at);
    let old = table.get(key).copied();
    table.insert(key, Kept { row: at, time });
    old
}

/// An output row with only one side.
fn alone(side: Side, at: RowRef, time: i64) -> Pair {
    let (left, right) = match side {
        Side::Left => (Some(at), None),
        Side::Right => (None, Some(at)),
    };
    Pair {
        left,
        right,
        time,
        key: (side, at),
        change: RowChange::Upsert,
    }
}

/// Emits the pending unmatched rows whose window (plus grace) closed before `stream_time`:
/// a left row's window ends `after` ms after it, a right row's `before` ms after it.
fn emit_closed(
    pending: &mut BTreeMap<(i64, Side, Box<[u8]>), RowRef>,
    stream_time: i64,
    (before, after, grace): (i64, i64, i64),
    pairs: &mut Vec<Pair>,
    released: &mut Vec<(Side, RowRef)>,
) {
    let mut closed = Vec::new();
    for ((time, side, key), row) in pending.iter() {
        let reach = match side {
            Side::Left => after,
            Side::Right => before,
        };
        if time + reach + grace >= stream_time {
            if time + before.max(after) + grace >= stream_time {
                break;
            }
            continue;
        }
        pairs.push(alone(*side, *row, *time));
        closed.push((*time, *side, key.clone()));
    }
    for entry in closed {
        if let Some(row) = pending.remove(&entry) {
            released.push((entry.1, row));
        }
    }
}

/// Lets go of a window side's rows older than its retention, once per half retention.
fn sweep(side: &mut WindowSide, rows: &mut StoredRows, retention: i64) {
    if side.stream_time.saturating_sub(side.swept_at) < (retention / 2).max(1) {
        return;
    }
    side.swept_at = side.stream_time;
    let oldest = side.stream_time.saturating_sub(retention);
    let mut emptied = Vec::new();
    for (key, kept) in side.by_key.iter_mut() {
        let expired = kept.partition_point(|k| k.time <= oldest);
        for k in kept.drain(..expired) {
            rows.release(k.row);
        }
        if kept.is_empty() {
            emptied.push(key.to_vec());
        }
    }
    for key in emptied {
        side.by_key.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};

    /// A side's batch: value, time, key.
    fn side(values: &[&str], times: &[i64], keys: &[i32]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("V", DataType::Utf8, true),
            Field::new("T", DataType::Int64, true),
            Field::new("K", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(values.to_vec())),
                Arc::new(Int64Array::from(times.to_vec())),
                Arc::new(Int32Array::from(keys.to_vec())),
            ],
        )
        .expect("test data is valid")
    }

    fn step(kind: JoinKind, mode: StepMode) -> JoinStep {
        let schema = side(&[], &[], &[]).schema();
        let layout = SideLayout {
            carried: vec![0],
            time: 1,
            key: 2,
        };
        JoinStep::new(
            kind,
            mode,
            (schema.clone(), layout.clone()),
            (schema, layout),
            "ROWKEY",
        )
        .expect("test data is valid")
    }

    /// Output rows as `left|right@time#key` (a delete as `-#key`).
    fn rows(output: &JoinOutput) -> Vec<String> {
        let b = &output.batch;
        let text = |c: usize, r: usize| {
            let column = b.column(c).as_string::<i32>();
            if column.is_null(r) {
                "-".to_string()
            } else {
                column.value(r).to_string()
            }
        };
        let times = b.column(2).as_primitive::<Int64Type>();
        let keys = b.column(3).as_primitive::<arrow::datatypes::Int32Type>();
        (0..b.num_rows())
            .map(|r| {
                if output.changes[r] != RowChange::Upsert {
                    format!("-#{}", keys.value(r))
                } else {
                    format!(
                        "{}|{}@{}#{}",
                        text(0, r),
                        text(1, r),
                        times.value(r),
                        keys.value(r)
                    )
                }
            })
            .collect()
    }

    fn windowed(before: i64, after: i64, grace: i64, eager: bool) -> StepMode {
        StepMode::Windowed {
            before,
            after,
            grace,
            eager,
        }
    }

    /// One input row of a scenario: side, value, time, key, whether it deletes its key.
    type Input = (Side, &'static str, i64, i32, bool);

    /// A scenario: its name, a new step, and its input rows.
    type Scenario = (&'static str, fn() -> JoinStep, Vec<Input>);

    /// Pushes rows one at a time; answers the output rows of each.
    fn run(join: &mut JoinStep, inputs: &[Input]) -> Vec<Vec<String>> {
        inputs
            .iter()
            .map(|&(s, v, t, k, delete)| {
                let deletes = [delete];
                let output = join
                    .push(s, side(&[v], &[t], &[k]), Some(&deletes))
                    .expect("test data is valid");
                rows(&output)
            })
            .collect()
    }

    #[test]
    fn a_step_restored_from_its_snapshot_goes_on_as_the_step_it_was_taken_from() {
        use snapshot::{decode_batch, encode_batch};
        let l = |v, t, k| (Side::Left, v, t, k, false);
        let r = |v, t, k| (Side::Right, v, t, k, false);
        let windowed_rows = vec![
            l("A", 0, 0),
            r("a", 60_000, 0),
            r("b", 330_000, 1),
            r("c", 90_000, 2),
            l("C", 90_000, 2),
            l("A2", 100_000, 0),
            r("d", 60_000, 3),
            l("D", 60_000, 3),
            r("a2", 130_000, 0),
            l("E", 400_000, 9),
            r("e", 410_000, 9),
            l("F", 600_000, 1),
        ];
        let table_rows = vec![
            r("us", 1, 1),
            l("ann", 2, 1),
            l("bob", 3, 2),
            r("eu", 4, 2),
            l("cid", 5, 2),
            (Side::Right, "", 6, 1, true),
            l("dan", 7, 1),
            r("asia", 8, 1),
            (Side::Left, "", 9, 2, true),
            l("eve", 10, 1),
        ];
        // Foreign keys: a left row is keyed by its value and refers to its K.
        let foreign_rows = vec![
            l("o1", 1, 7),
            r("r7", 2, 7),
            l("o2", 3, 7),
            l("o3", 4, 8),
            r("r8", 5, 8),
            l("o1", 6, 8),
            (Side::Right, "", 7, 7, true),
            r("r7b", 8, 7),
            (Side::Left, "o3", 9, 8, true),
            r("r8b", 10, 8),
        ];
        let scenarios: Vec<Scenario> = vec![
            (
                "full outer, windowed, grace",
                || step(JoinKind::Full, windowed(60_000, 60_000, 60_000, false)),
                windowed_rows.clone(),
            ),
            (
                "left, windowed, eager",
                || step(JoinKind::Left, windowed(10_000, 50_000, 30_000, true)),
                windowed_rows,
            ),
            (
                "stream-table left",
                || step(JoinKind::Left, StepMode::StreamTable),
                table_rows
                    .iter()
                    .filter(|row| row.0 == Side::Right || !row.4)
                    .copied()
                    .collect(),
            ),
            (
                "table-table full outer",
                || step(JoinKind::Full, StepMode::TableTable),
                table_rows,
            ),
            (
                "foreign key left",
                || step(JoinKind::Left, StepMode::ForeignKey).with_left_primary_key(vec![0]),
                foreign_rows,
            ),
        ];
        for (name, new, inputs) in scenarios {
            let straight = run(&mut new(), &inputs);
            for split in 0..=inputs.len() {
                let mut original = new();
                run(&mut original, &inputs[..split]);
                let taken = original.snapshot().expect("a snapshot");
                // Through the bytes the changelog holds.
                let through_bytes = |batch: &RecordBatch| {
                    decode_batch(&encode_batch(batch).expect("encodes")).expect("decodes")
                };
                let taken = snapshot::StepSnapshot {
                    left: taken.left.as_ref().map(through_bytes),
                    right: taken.right.as_ref().map(through_bytes),
                    entries: through_bytes(&taken.entries),
                };
                let mut restored = new();
                restored.restore(taken).expect("restores");
                assert_eq!(
                    restored.kept_rows(),
                    original.kept_rows(),
                    "{name}, split at {split}"
                );
                assert_eq!(
                    run(&mut restored, &inputs[split..]),
                    straight[split..],
                    "{name}: restored after {split} rows"
                );
                assert_eq!(
                    run(&mut original, &inputs[split..]),
                    straight[split..],
                    "{name}: the step a snapshot was taken of, after {split} rows"
                );
            }
        }
    }

    #[test]
    fn an_eager_left_join_emits_unmatched_rows_at_once_and_matches_within_the_window() {
        let mut join = step(JoinKind::Left, windowed(11_000, 11_000, 86_400_000, true));
        let mut out = Vec::new();
        let mut push = |side, values: &[&str], times: &[i64], keys: &[i32]| {
            let output = join
                .push(side, side_batch(values, times, keys), None)
                .expect("test data is valid");
            out.extend(rows(&output));
        };
        fn side_batch(v: &[&str], t: &[i64], k: &[i32]) -> RecordBatch {
            side(v, t, k)
        }
        push(Side::Left, &["zero"], &[0], &[0]);
        push(Side::Right, &["blah"], &[10_000], &[0]);
        push(Side::Left, &["foo"], &[13_000], &[0]);
        push(Side::Right, &["a"], &[15_000], &[0]);
        push(Side::Right, &["new"], &[16_000], &[100]);
        push(Side::Left, &["bar"], &[30_000], &[0]);
        assert_eq!(
            out,
            [
                "zero|-@0#0",
                "zero|blah@10000#0",
                "foo|blah@13000#0",
                "foo|a@15000#0",
                "bar|-@30000#0"
            ]
        );
    }

    #[test]
    fn with_a_grace_period_unmatched_rows_wait_for_their_window_to_close() {
        // ksqlDB's "left join with out of order and custom grace period" case.
        let mut join = step(JoinKind::Full, windowed(60_000, 60_000, 60_000, false));
        let mut out = Vec::new();
        let inputs: [(Side, &str, i64, i32); 7] = [
            (Side::Left, "A", 0, 0),
            (Side::Right, "a", 60_000, 0),
            (Side::Right, "b", 330_000, 1),
            (Side::Right, "c", 90_000, 2),
            (Side::Left, "C", 90_000, 2),
            (Side::Right, "d", 60_000, 3),
            (Side::Left, "D", 60_000, 3),
        ];
        for (s, v, t, k) in inputs {
            out.extend(rows(
                &join
                    .push(s, side(&[v], &[t], &[k]), None)
                    .expect("test data is valid"),
            ));
        }
        assert_eq!(
            out,
            [
                "A|a@60000#0",
                "-|c@90000#2",
                "C|-@90000#2",
                "-|d@60000#3",
                "D|-@60000#3"
            ]
        );
        // Stream time moves far enough: "b" is emitted alone.
        out = rows(
            &join
                .push(Side::Left, side(&["E"], &[600_000], &[9]), None)
                .expect("test data is valid"),
        );
        assert_eq!(out, ["-|b@330000#1"]);
    }

    #[test]
    fn a_stream_row_joins_the_table_row_of_its_moment() {
        let mut join = step(JoinKind::Left, StepMode::StreamTable);
        let mut out = Vec::new();
        out.extend(rows(
            &join
                .push(Side::Right, side(&["t0"], &[0], &[0]), None)
                .expect("test data is valid"),
        ));
        out.extend(rows(
            &join
                .push(Side::Left, side(&["s0", "s9"], &[5, 6], &[0, 9]), None)
                .expect("test data is valid"),
        ));
        out.extend(rows(
            &join
                .push(Side::Right, side(&["t0"], &[7], &[0]), Some(&[true]))
                .expect("test data is valid"),
        ));
        out.extend(rows(
            &join
                .push(Side::Left, side(&["s1"], &[8], &[0]), None)
                .expect("test data is valid"),
        ));
        assert_eq!(out, ["s0|t0@5#0", "s9|-@6#9", "s1|-@8#0"]);
    }

    #[test]
    fn table_changes_update_and_delete_joined_rows() {
        let mut join = step(JoinKind::Inner, StepMode::TableTable);
        let mut out = Vec::new();
        let mut push = |s, v: &str, t, k, delete: bool| {
            let output = join
                .push(s, side(&[v], &[t], &[k]), Some(&[delete]))
                .expect("test data is valid");
            out.extend(rows(&output));
        };
        push(Side::Left, "l", 0, 1, false);
        push(Side::Right, "r", 10, 1, false);
        push(Side::Left, "l2", 5, 1, false);
        push(Side::Right, "", 20, 1, true);
        assert_eq!(out, ["-#1", "l|r@10#1", "l2|r@10#1", "-#1"]);
        assert_eq!(join.kept_rows(), 1);
    }
}
