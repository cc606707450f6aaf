//! A join step's state as Arrow batches and back, for the join's changelog (written and
//! read in `query/join.rs`): each side's live rows as one batch, and the state's entries
//! (kept rows by key and time, unmatched rows waiting for their window, table rows by key,
//! foreign-key references, stream times) as rows of [`entry_schema`] pointing into them.
//! Entry points: [`JoinStep::snapshot`], [`JoinStep::restore`], [`encode_batch`],
//! [`decode_batch`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BinaryBuilder, Int64Builder, RecordBatch, UInt8Builder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt8Type, UInt32Type};
use arrow::error::ArrowError;

use super::stored::RowRef;
use super::{JoinStep, Kept, Side, State};

/// What an entry of a snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A stream–stream side's row, by key, in time order.
    Kept = 0,
    /// An outer side's unmatched row waiting for its window to close.
    Pending = 1,
    /// A time: `slot` says which (see [`Clock`]).
    Clock = 2,
    /// A table side's row of a key.
    TableRow = 3,
    /// A foreign-key join's left row by its own key: its foreign key, and its slot (which
    /// [`EntryKind::Refers`] entries name).
    ForeignLeft = 4,
    /// A left row (by slot) referring to a foreign key, in the order the rows came.
    Refers = 5,
    /// A key a table result holds (the join task's own state).
    Present = 6,
    /// The latest row time joined from an input (`slot`: the input).
    InputTime = 7,
}

impl EntryKind {
    fn from_u8(value: u8) -> Option<EntryKind> {
        use EntryKind::*;
        [
            Kept,
            Pending,
            Clock,
            TableRow,
            ForeignLeft,
            Refers,
            Present,
            InputTime,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == value)
    }
}

/// The times of a stream–stream step.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
enum Clock {
    LeftStreamTime = 0,
    LeftSweptAt = 1,
    RightStreamTime = 2,
    RightSweptAt = 3,
    StreamTime = 4,
}

/// The columns of a snapshot's entries.
pub fn entry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("side", DataType::UInt8, false),
        Field::new("key", DataType::Binary, false),
        Field::new("row", DataType::UInt32, false),
        Field::new("time", DataType::Int64, false),
        Field::new("slot", DataType::UInt32, false),
        Field::new("foreign", DataType::Binary, true),
    ]))
}

/// Builds the entries of a snapshot.
#[derive(Debug, Default)]
pub struct Entries {
    kind: UInt8Builder,
    side: UInt8Builder,
    key: BinaryBuilder,
    row: UInt32Builder,
    time: Int64Builder,
    slot: UInt32Builder,
    foreign: BinaryBuilder,
}

/// One entry read back.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub kind: EntryKind,
    pub side: Side,
    pub key: &'a [u8],
    pub row: u32,
    pub time: i64,
    pub slot: u32,
    pub foreign: Option<&'a [u8]>,
}

impl Entries {
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        kind: EntryKind,
        side: Side,
        key: &[u8],
        row: u32,
        time: i64,
        slot: u32,
        foreign: Option<&[u8]>,
    ) {
        self.kind.append_value(kind as u8);
        self.side.append_value(side as u8);
        self.key.append_value(key);
        self.row.append_value(row);
        self.time.append_value(time);
        self.slot.append_value(slot);
        self.foreign.append_option(foreign);
    }

    /// A time, or a key without a row.
    pub fn push_plain(&mut self, kind: EntryKind, key: &[u8], slot: u32, time: i64) {
        self.push(kind, Side::Left, key, 0, time, slot, None);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(
            entry_schema(),
            vec![
                Arc::new(self.kind.finish()),
                Arc::new(self.side.finish()),
                Arc::new(self.key.finish()),
                Arc::new(self.row.finish()),
                Arc::new(self.time.finish()),
                Arc::new(self.slot.finish()),
                Arc::new(self.foreign.finish()),
            ],
        )
    }
}

/// The entries of a batch of [`entry_schema`], in order.
pub fn entries(batch: &RecordBatch) -> Result<Vec<Entry<'_>>, ArrowError> {
    let wrong = || ArrowError::SchemaError("a join snapshot's entries are not readable".into());
    if batch.schema().fields() != entry_schema().fields() {
        return Err(wrong());
    }
    let kind = batch.column(0).as_primitive::<UInt8Type>();
    let side = batch.column(1).as_primitive::<UInt8Type>();
    let key = batch.column(2).as_binary::<i32>();
    let row = batch.column(3).as_primitive::<UInt32Type>();
    let time = batch.column(4).as_primitive::<Int64Type>();
    let slot = batch.column(5).as_primitive::<UInt32Type>();
    let foreign = batch.column(6).as_binary::<i32>();
    (0..batch.num_rows())
        .map(|i| {
            Ok(Entry {
                kind: EntryKind::from_u8(kind.value(i)).ok_or_else(wrong)?,
                side: if side.value(i) == Side::Left as u8 {
                    Side::Left
                } else {
                    Side::Right
                },
                key: key.value(i),
                row: row.value(i),
                time: time.value(i),
                slot: slot.value(i),
                foreign: foreign.is_valid(i).then(|| foreign.value(i)),
            })
        })
        .collect()
}

/// A step's state: each side's live rows (none when a side keeps no row) and the entries
/// that point into them.
#[derive(Debug, Clone)]
pub struct StepSnapshot {
    pub left: Option<RecordBatch>,
    pub right: Option<RecordBatch>,
    pub entries: RecordBatch,
}

impl JoinStep {
    /// The step's state. Each side's live rows are first compacted into one batch (which
    /// the step goes on using), so that entries point at rows of that batch.
    pub fn snapshot(&mut self) -> Result<StepSnapshot, ArrowError> {
        self.compact(Side::Left)?;
        self.compact(Side::Right)?;
        let mut out = Entries::default();
        let kept = |out: &mut Entries, kind, side, key: &[u8], k: &Kept| {
            out.push(kind, side, key, k.row.row, k.time, 0, None);
        };
        match &self.state {
            State::Windowed {
                left,
                right,
                stream_time,
                pending,
            } => {
                for (side, rows) in [(Side::Left, left), (Side::Right, right)] {
                    for (key, held) in rows.by_key.iter() {
                        for k in held {
                            kept(&mut out, EntryKind::Kept, side, key, k);
                        }
                    }
                }
                for ((time, side, key), row) in pending {
                    out.push(EntryKind::Pending, *side, key, row.row, *time, 0, None);
                }
                let clocks = [
                    (Clock::LeftStreamTime, left.stream_time),
                    (Clock::LeftSweptAt, left.swept_at),
                    (Clock::RightStreamTime, right.stream_time),
                    (Clock::RightSweptAt, right.swept_at),
                    (Clock::StreamTime, *stream_time),
                ];
                for (clock, time) in clocks {
                    out.push_plain(EntryKind::Clock, &[], clock as u32, time);
                }
            }
            State::StreamTable { table } => {
                for (key, k) in table.iter() {
                    kept(&mut out, EntryKind::TableRow, Side::Right, key, k);
                }
            }
            State::TableTable { left, right } => {
                for (side, table) in [(Side::Left, left), (Side::Right, right)] {
                    for (key, k) in table.iter() {
                        kept(&mut out, EntryKind::TableRow, side, key, k);
                    }
                }
            }
            State::ForeignKey {
                left,
                by_foreign_key,
                right,
            } => {
                for slot in left.slots() {
                    let Some((key, (k, foreign))) = left.entry_at_slot(slot) else {
                        continue;
                    };
                    let foreign = foreign.as_deref();
                    let (row, time) = (k.row.row, k.time);
                    out.push(
                        EntryKind::ForeignLeft,
                        Side::Left,
                        key,
                        row,
                        time,
                        slot,
                        foreign,
                    );
                }
                for (foreign, slots) in by_foreign_key.iter() {
                    for slot in slots {
                        out.push_plain(EntryKind::Refers, foreign, *slot, 0);
                    }
                }
                for (key, k) in right.iter() {
                    kept(&mut out, EntryKind::TableRow, Side::Right, key, k);
                }
            }
        }
        Ok(StepSnapshot {
            left: self.left_rows.only_batch().cloned(),
            right: self.right_rows.only_batch().cloned(),
            entries: out.finish()?,
        })
    }

    /// Loads a snapshot into a step that has not joined anything yet.
    pub fn restore(&mut self, snapshot: StepSnapshot) -> Result<(), ArrowError> {
        let unreadable =
            |what: &str| ArrowError::InvalidArgumentError(format!("a join snapshot {what}"));
        for (side, rows) in [(Side::Left, &snapshot.left), (Side::Right, &snapshot.right)] {
            if let Some(rows) = rows
                && rows.schema().fields() != self.rows_mut(side).schema().fields()
            {
                return Err(unreadable("has rows of another schema"));
            }
        }
        let ids = (
            snapshot.left.map(|rows| self.left_rows.add(rows)),
            snapshot.right.map(|rows| self.right_rows.add(rows)),
        );
        let entries = entries(&snapshot.entries)?;
        // Foreign-key left rows get new slots: the references follow them.
        let mut slots: HashMap<u32, u32> = HashMap::new();
        for entry in entries {
            let id = match entry.side {
                Side::Left => ids.0,
                Side::Right => ids.1,
            };
            let row = id.map(|batch| RowRef {
                batch,
                row: entry.row,
            });
            let kept = row.map(|row| Kept {
                row,
                time: entry.time,
            });
            let needs_row = !matches!(entry.kind, EntryKind::Clock | EntryKind::Refers);
            if needs_row {
                match row {
                    Some(row) if self.rows_mut(entry.side).has_row(row) => {
                        self.rows_mut(entry.side).retain(row)
                    }
                    _ => return Err(unreadable("points at a row it does not hold")),
                }
            }
            match (&mut self.state, entry.kind, kept) {
                (State::Windowed { left, right, .. }, EntryKind::Kept, Some(kept)) => {
                    let side = match entry.side {
                        Side::Left => left,
                        Side::Right => right,
                    };
                    match side.by_key.get_mut(entry.key) {
                        Some(held) => held.push(kept),
                        None => {
                            side.by_key.insert(entry.key, vec![kept]);
                        }
                    }
                }
                (State::Windowed { pending, .. }, EntryKind::Pending, Some(kept)) => {
                    pending.insert((entry.time, entry.side, entry.key.into()), kept.row);
                }
                (
                    State::Windowed {
                        left,
                        right,
                        stream_time,
                        ..
                    },
                    EntryKind::Clock,
                    _,
                ) => match entry.slot {
                    c if c == Clock::LeftStreamTime as u32 => left.stream_time = entry.time,
                    c if c == Clock::LeftSweptAt as u32 => left.swept_at = entry.time,
                    c if c == Clock::RightStreamTime as u32 => right.stream_time = entry.time,
                    c if c == Clock::RightSweptAt as u32 => right.swept_at = entry.time,
                    _ => *stream_time = entry.time,
                },
                (State::StreamTable { table }, EntryKind::TableRow, Some(kept)) => {
                    table.insert(entry.key, kept);
                }
                (State::TableTable { left, right }, EntryKind::TableRow, Some(kept)) => {
                    let table = match entry.side {
                        Side::Left => left,
                        Side::Right => right,
                    };
                    table.insert(entry.key, kept);
                }
                (State::ForeignKey { left, .. }, EntryKind::ForeignLeft, Some(kept)) => {
                    let slot = left.insert(entry.key, (kept, entry.foreign.map(Into::into)));
                    slots.insert(entry.slot, slot);
                }
                (State::ForeignKey { by_foreign_key, .. }, EntryKind::Refers, _) => {
                    let slot = *slots
                        .get(&entry.slot)
                        .ok_or_else(|| unreadable("refers to a row it does not hold"))?;
                    match by_foreign_key.get_mut(entry.key) {
                        Some(referring) => referring.push(slot),
                        None => {
                            by_foreign_key.insert(entry.key, vec![slot]);
                        }
                    }
                }
                (State::ForeignKey { right, .. }, EntryKind::TableRow, Some(kept)) => {
                    right.insert(entry.key, kept);
                }
                _ => return Err(unreadable("does not fit the join")),
            }
        }
        Ok(())
    }
}

/// A batch as the bytes of an Arrow IPC stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut bytes = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// The batches of an Arrow IPC stream, as one batch.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    arrow::compute::concat_batches(&schema, &batches)
}
