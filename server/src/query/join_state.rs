//! A persistent join's changelog: snapshots of its state (every step's rows and entries,
//! see `runtime/join/snapshot.rs`, and the keys a table result holds), written in the same
//! transaction as the output and the input positions they match. After a restart the
//! latest snapshot is loaded and only the records after its positions are read again,
//! instead of every record since the query first started.
//!
//! The topic is compacted, one partition. Key `h` holds the head (JSON: which snapshot,
//! how many parts, the positions); keys `p` + part number (big-endian u32) hold the parts:
//! the snapshot's id (u64, little-endian), the step (u32, little-endian; `u32::MAX` for the
//! task's own entries), which batch (`0` left rows, `1` right rows, `2` entries), then an
//! Arrow IPC stream of a chunk of that batch. A snapshot with fewer parts than the one
//! before deletes the parts it no longer has.
//!
//! Entry points: [`SnapshotWriter::records`], [`read_snapshot`].

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::log::{Log, ProducerRecord};
use crate::runtime::join::snapshot::{StepSnapshot, decode_batch, encode_batch};

/// The layout of the records; a changelog of another layout is not read.
const FORMAT: u32 = 1;
const HEAD: &[u8] = b"h";
const PART: u8 = b'p';
/// The task's own entries, in a part's step field.
const TASK: u32 = u32::MAX;
/// About how many bytes of Arrow data a part holds.
const PART_BYTES: usize = 1 << 20;

/// The topic of a persistent join's changelog.
pub fn join_changelog_topic(query_id: &str) -> String {
    format!("_confluent-ksql-default_query_{query_id}-Join-state-changelog")
}

/// A join's state at some input positions.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub steps: Vec<StepSnapshot>,
    /// The task's entries (see `runtime/join/snapshot.rs`): the keys its table result
    /// holds, each input's latest time.
    pub task: RecordBatch,
    /// Per input and partition, the next offset the state has not seen.
    pub positions: Vec<BTreeMap<i32, i64>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    format: u32,
    /// What the state is of (the steps): only read back by the same join.
    description: String,
    id: u64,
    parts: u32,
    positions: Vec<BTreeMap<i32, i64>>,
}

/// Writes snapshots as changelog records.
#[derive(Debug)]
pub struct SnapshotWriter {
    topic: String,
    description: String,
    /// The id and part count of the latest snapshot written.
    last: (u64, u32),
}

/// Which batch of a step a part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Component {
    LeftRows = 0,
    RightRows = 1,
    Entries = 2,
}

impl SnapshotWriter {
    /// A writer for the join described by `description`, after the snapshot `last` (its id
    /// and part count) that the changelog holds.
    pub fn new(topic: String, description: String, last: (u64, u32)) -> SnapshotWriter {
        SnapshotWriter {
            topic,
            description,
            last,
        }
    }

    /// The records of a snapshot: its parts, deletes for the previous snapshot's parts past
    /// them, and the head.
    pub fn records(&mut self, snapshot: &Snapshot) -> Result<Vec<ProducerRecord>, ArrowError> {
        let id = self.last.0 + 1;
        let mut batches: Vec<(u32, Component, &RecordBatch)> = Vec::new();
        for (step, state) in snapshot.steps.iter().enumerate() {
            let step = step as u32;
            if let Some(rows) = &state.left {
                batches.push((step, Component::LeftRows, rows));
            }
            if let Some(rows) = &state.right {
                batches.push((step, Component::RightRows, rows));
            }
            batches.push((step, Component::Entries, &state.entries));
        }
        batches.push((TASK, Component::Entries, &snapshot.task));
        let mut records = Vec::new();
        for (step, component, batch) in batches {
            for chunk in chunks(batch) {
                let mut value = Vec::with_capacity(13);
                value.extend_from_slice(&id.to_le_bytes());
                value.extend_from_slice(&step.to_le_bytes());
                value.push(component as u8);
                value.extend_from_slice(&encode_batch(&chunk)?);
                records.push(ProducerRecord::new(
                    Some(part_key(records.len() as u32)),
                    Some(value),
                ));
            }
        }
        let parts = records.len() as u32;
        for stale in parts..self.last.1 {
            records.push(ProducerRecord::new(Some(part_key(stale)), None::<Vec<u8>>));
        }
        let head = Head {
            format: FORMAT,
            description: self.description.clone(),
            id,
            parts,
            positions: snapshot.positions.clone(),
        };
        let head = serde_json::to_vec(&head).map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        records.push(ProducerRecord::new(Some(HEAD.to_vec()), Some(head)));
        self.last = (id, parts);
        Ok(records)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

fn part_key(part: u32) -> Vec<u8> {
    let mut key = vec![PART];
    key.extend_from_slice(&part.to_be_bytes());
    key
}

/// A batch in slices of about [`PART_BYTES`].
fn chunks(batch: &RecordBatch) -> Vec<RecordBatch> {
    let rows = batch.num_rows();
    let bytes = batch.get_array_memory_size().max(1);
    let per_chunk = (rows * PART_BYTES / bytes).clamp(1, rows.max(1));
    if rows <= per_chunk {
        return vec![batch.clone()];
    }
    (0..rows)
        .step_by(per_chunk)
        .map(|from| batch.slice(from, per_chunk.min(rows - from)))
        .collect()
}

/// What a join's changelog holds: its latest snapshot (when it holds one for the join
/// `description`), and that snapshot's id and part count (for the writer that follows).
pub struct Stored {
    pub snapshot: Option<Snapshot>,
    pub last: (u64, u32),
}

/// Reads the latest snapshot of a join's changelog. A snapshot of another join or layout
/// is not read (the state is then rebuilt from the sources).
pub async fn read_snapshot(
    log: &dyn Log,
    topic: &str,
    description: &str,
    steps: usize,
) -> Result<Stored, String> {
    let entries = crate::runtime::state::read_changelog(log, topic)
        .await
        .map_err(|e| format!("reading the join's changelog: {e}"))?;
    let mut head = None;
    let mut parts: BTreeMap<u32, Bytes> = BTreeMap::new();
    for (key, value) in entries {
        if key.as_ref() == HEAD {
            head = Some(value);
        } else if key.len() == 5 && key[0] == PART {
            let number = u32::from_be_bytes([key[1], key[2], key[3], key[4]]);
            parts.insert(number, value);
        }
    }
    let Some(head) = head else {
        return Ok(Stored {
            snapshot: None,
            last: (0, parts.len() as u32),
        });
    };
    let head: Head = serde_json::from_slice(&head)
        .map_err(|e| format!("the join's changelog head does not read: {e}"))?;
    let last = (head.id, head.parts.max(parts.len() as u32));
    if head.format != FORMAT || head.description != description {
        return Ok(Stored {
            snapshot: None,
            last,
        });
    }
    let snapshot = assemble(&head, &parts, steps)
        .map_err(|e| format!("the join's changelog does not read: {e}"))?;
    Ok(Stored {
        snapshot: Some(snapshot),
        last,
    })
}

/// The snapshot of `head` from its parts.
fn assemble(head: &Head, parts: &BTreeMap<u32, Bytes>, steps: usize) -> Result<Snapshot, String> {
    let mut chunks: BTreeMap<(u32, Component), Vec<RecordBatch>> = BTreeMap::new();
    for number in 0..head.parts {
        let part = parts
            .get(&number)
            .ok_or_else(|| format!("part {number} is missing"))?;
        if part.len() < 13 {
            return Err(format!("part {number} is cut short"));
        }
        let id = u64::from_le_bytes(part[0..8].try_into().unwrap_or_default());
        if id != head.id {
            return Err(format!("part {number} is of another snapshot"));
        }
        let step = u32::from_le_bytes(part[8..12].try_into().unwrap_or_default());
        let component = match part[12] {
            0 => Component::LeftRows,
            1 => Component::RightRows,
            2 => Component::Entries,
            other => return Err(format!("part {number} holds an unknown batch {other}")),
        };
        let batch = decode_batch(&part[13..]).map_err(|e| e.to_string())?;
        chunks.entry((step, component)).or_default().push(batch);
    }
    let mut whole = |step: u32, component: Component| -> Result<Option<RecordBatch>, String> {
        let Some(batches) = chunks.remove(&(step, component)) else {
            return Ok(None);
        };
        let schema = batches[0].schema();
        arrow::compute::concat_batches(&schema, &batches)
            .map(Some)
            .map_err(|e| e.to_string())
    };
    let mut states = Vec::with_capacity(steps);
    for step in 0..steps as u32 {
        states.push(StepSnapshot {
            left: whole(step, Component::LeftRows)?,
            right: whole(step, Component::RightRows)?,
            entries: whole(step, Component::Entries)?
                .ok_or_else(|| format!("step {step} has no entries"))?,
        });
    }
    let task = whole(TASK, Component::Entries)?.ok_or("the task's entries are missing")?;
    Ok(Snapshot {
        steps: states,
        task,
        positions: head.positions.clone(),
    })
}
