//! The order a join reads its inputs in. Rows decoded from each partition wait in a buffer;
//! the join takes next the rows with the earliest time, never further past the next row of
//! another stream input than the join's grace period, so that rows of different inputs meet
//! in event-time order (as Kafka Streams picks the partition whose next record is
//! earliest). Within the grace period order does not change what a windowed join answers
//! (its state keeps rows that long), and allowing it keeps batches large. An input with
//! nothing buffered that the join waits for (`max.task.idle.ms`) holds the others back at
//! its latest time plus the grace period.
//!
//! Only a join with a stream–stream step is ordered so, and only by its stream inputs:
//! the rows of other inputs are taken a whole fetch at a time, earliest first (a stream row
//! joins the table's latest row read), as a join without a window has no grace to batch
//! within. Partitions of one input are not ordered against each other: their rows never
//! meet in a join, and taking them in whole fetches keeps batches large.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;

use crate::log::Record;
use crate::runtime::RecordError;

/// Rows decoded from one run of a partition's records.
#[derive(Debug, Clone)]
pub(super) struct DecodedRun {
    /// In the input's schema.
    pub batch: RecordBatch,
    /// A table's run: whether its rows delete their key (records without a value).
    pub deletes: Option<bool>,
    /// The records the rows came from, when any of them has headers (outputs carry them).
    pub records: Option<Arc<[Record]>>,
}

impl DecodedRun {
    /// Each row's time.
    pub fn times(&self, columns: Columns) -> Option<&Int64Array> {
        self.batch
            .column(columns.time)
            .as_primitive_opt::<Int64Type>()
    }

    /// Each row's record offset.
    pub fn offsets(&self, columns: Columns) -> Option<&Int64Array> {
        self.batch
            .column(columns.offset)
            .as_primitive_opt::<Int64Type>()
    }
}

/// One partition of an input: where to fetch next, and what was decoded but not joined.
#[derive(Debug)]
pub(super) struct PartitionBuffer {
    pub partition: i32,
    /// The next offset to fetch.
    pub fetch_at: i64,
    /// Fetch nothing at or past this offset (rebuilding up to the committed positions).
    pub until: Option<i64>,
    pub runs: VecDeque<DecodedRun>,
    /// The record the query stops at (`ksql.timestamp.throw.on.invalid`), once the rows
    /// before it are joined.
    pub fatal: Option<RecordError>,
}

impl PartitionBuffer {
    pub fn new(partition: i32, fetch_at: i64, until: Option<i64>) -> PartitionBuffer {
        PartitionBuffer {
            partition,
            fetch_at,
            until,
            runs: VecDeque::new(),
            fatal: None,
        }
    }

    /// Whether a fetch may find more rows for this buffer.
    pub fn wants_fetch(&self) -> bool {
        self.runs.is_empty() && self.fatal.is_none() && self.until.is_none_or(|u| self.fetch_at < u)
    }
}

/// Where an input's batches hold the row time and the record offset.
#[derive(Debug, Clone, Copy)]
pub(super) struct Columns {
    pub time: usize,
    pub offset: usize,
}

/// What the join does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Take rows of this input's partition (by position), up to this time.
    Take {
        input: usize,
        slot: usize,
        until: i64,
    },
    /// Rows are buffered, but each is later than an input the join waits for.
    Wait,
    /// Nothing is buffered.
    Empty,
}

/// The time of a partition's next row.
fn head_time(buffer: &PartitionBuffer, columns: Columns) -> Option<i64> {
    Some(buffer.runs.front()?.times(columns)?.value(0))
}

/// How a join orders its inputs (see the module header).
#[derive(Debug, Clone)]
pub(super) struct Ordering {
    /// Per input: whether its rows are ordered against the other ordered inputs'.
    pub ordered: Vec<bool>,
    /// How far (ms) an ordered input's rows may run ahead of the others'.
    pub slack: i64,
}

/// Chooses the next rows: the partition whose next row is earliest, up to the earliest next
/// row of the other ordered inputs (or the latest time of an input the join waits for,
/// `awaited[input]`) plus the slack.
pub(super) fn next(
    inputs: &[Vec<PartitionBuffer>],
    columns: &[Columns],
    ordering: &Ordering,
    awaited: &[Option<i64>],
) -> Next {
    // Per input: its earliest next row.
    let fronts: Vec<Option<(i64, usize)>> = inputs
        .iter()
        .zip(columns)
        .map(|(buffers, &columns)| {
            buffers
                .iter()
                .enumerate()
                .filter_map(|(slot, b)| head_time(b, columns).map(|t| (t, slot)))
                .min()
        })
        .collect();
    let Some((input, (time, slot))) = fronts
        .iter()
        .enumerate()
        .filter_map(|(input, front)| front.map(|f| (input, f)))
        .min_by_key(|(input, (time, _))| (*time, *input))
    else {
        return Next::Empty;
    };
    if !ordering.ordered[input] {
        return Next::Take {
            input,
            slot,
            until: i64::MAX,
        };
    }
    let until = fronts
        .iter()
        .zip(awaited)
        .enumerate()
        .filter(|(other, _)| *other != input && ordering.ordered[*other])
        .filter_map(|(_, (front, awaited))| match (front, awaited) {
            (Some((time, _)), _) => Some(*time),
            (None, awaited) => *awaited,
        })
        .min()
        .map_or(i64::MAX, |bound| bound.saturating_add(ordering.slack));
    if time > until {
        return Next::Wait;
    }
    Next::Take { input, slot, until }
}

/// Takes the leading rows of a buffer's first run whose times are at most `until` (the
/// first row always: the caller chose it as the earliest).
pub(super) fn take(
    buffer: &mut PartitionBuffer,
    columns: Columns,
    until: i64,
) -> Option<DecodedRun> {
    let run = buffer.runs.front_mut()?;
    let rows = run.batch.num_rows();
    let count = run.times(columns).map_or(rows, |times| {
        1 + times
            .iter()
            .skip(1)
            .take_while(|t| t.is_some_and(|t| t <= until))
            .count()
    });
    if count >= rows {
        return buffer.runs.pop_front();
    }
    let taken = DecodedRun {
        batch: run.batch.slice(0, count),
        deletes: run.deletes,
        records: run.records.clone(),
    };
    run.batch = run.batch.slice(count, rows - count);
    Some(taken)
}

/// The offset a partition resumes at: its first row not joined yet, or the next to fetch.
pub(super) fn resume_at(buffer: &PartitionBuffer, columns: Columns) -> i64 {
    buffer
        .runs
        .front()
        .and_then(|run| {
            let offsets = run.offsets(columns)?;
            offsets.is_valid(0).then(|| offsets.value(0))
        })
        .or_else(|| buffer.fatal.as_ref().map(|e| e.offset))
        .unwrap_or(buffer.fetch_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    const COLUMNS: Columns = Columns { time: 0, offset: 1 };

    /// Two ordered inputs, exactly (no slack).
    fn exact() -> Ordering {
        Ordering {
            ordered: vec![true, true],
            slack: 0,
        }
    }

    /// A partition buffer holding rows at these times (offsets 0, 1, …).
    fn buffer(times: &[i64]) -> PartitionBuffer {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ROWTIME", DataType::Int64, false),
            Field::new("ROWOFFSET", DataType::Int64, false),
        ]));
        let mut buffer = PartitionBuffer::new(0, times.len() as i64, None);
        if !times.is_empty() {
            let batch = RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from(times.to_vec())),
                    Arc::new(Int64Array::from_iter_values(0..times.len() as i64)),
                ],
            )
            .expect("a valid batch");
            buffer.runs.push_back(DecodedRun {
                batch,
                deletes: None,
                records: None,
            });
        }
        buffer
    }

    #[test]
    fn the_earliest_rows_go_first_and_stop_at_the_other_inputs_next_row() {
        let mut inputs = vec![vec![buffer(&[10, 30])], vec![buffer(&[1, 5, 12, 20])]];
        let columns = [COLUMNS; 2];
        let choice = next(&inputs, &columns, &exact(), &[None, None]);
        assert_eq!(
            choice,
            Next::Take {
                input: 1,
                slot: 0,
                until: 10
            }
        );
        let taken = take(&mut inputs[1][0], COLUMNS, 10).expect("rows");
        assert_eq!(taken.batch.num_rows(), 2, "rows at 1 and 5, not 12");
        assert_eq!(resume_at(&inputs[1][0], COLUMNS), 2);
        // Now the row at 10 is earliest; it goes alone (30 is after the other's 12).
        assert_eq!(
            next(&inputs, &columns, &exact(), &[None, None]),
            Next::Take {
                input: 0,
                slot: 0,
                until: 12
            }
        );
        assert_eq!(
            take(&mut inputs[0][0], COLUMNS, 12).map(|r| r.batch.num_rows()),
            Some(1)
        );
    }

    #[test]
    fn an_awaited_empty_input_holds_the_others_at_its_latest_time() {
        let inputs = vec![vec![buffer(&[])], vec![buffer(&[5, 8])]];
        let columns = [COLUMNS; 2];
        assert_eq!(
            next(&inputs, &columns, &exact(), &[Some(4), None]),
            Next::Wait
        );
        assert_eq!(
            next(&inputs, &columns, &exact(), &[Some(6), None]),
            Next::Take {
                input: 1,
                slot: 0,
                until: 6
            }
        );
        // Not awaited (idle time over, or none configured): nothing holds the rows back.
        assert_eq!(
            next(&inputs, &columns, &exact(), &[None, None]),
            Next::Take {
                input: 1,
                slot: 0,
                until: i64::MAX
            }
        );
        let one = Ordering {
            ordered: vec![true],
            slack: 0,
        };
        assert_eq!(
            next(&[vec![buffer(&[])]], &columns[..1], &one, &[None]),
            Next::Empty
        );
    }

    #[test]
    fn rows_run_ahead_by_the_slack_and_unordered_inputs_go_whole() {
        let inputs = vec![vec![buffer(&[1, 5, 12])], vec![buffer(&[2, 3])]];
        let columns = [COLUMNS; 2];
        let slack = Ordering {
            ordered: vec![true, true],
            slack: 10,
        };
        assert_eq!(
            next(&inputs, &columns, &slack, &[None, None]),
            Next::Take {
                input: 0,
                slot: 0,
                until: 12
            }
        );
        // A table input (not ordered) is taken whole, and holds nothing back.
        let table = Ordering {
            ordered: vec![true, false],
            slack: 0,
        };
        assert_eq!(
            next(&inputs, &columns, &table, &[None, None]),
            Next::Take {
                input: 0,
                slot: 0,
                until: i64::MAX
            }
        );
        let later_stream = vec![vec![buffer(&[5, 12])], vec![buffer(&[2, 3])]];
        assert_eq!(
            next(&later_stream, &columns, &table, &[None, None]),
            Next::Take {
                input: 1,
                slot: 0,
                until: i64::MAX
            }
        );
    }
}
