//! The aggregation's state as a [`StateStore`]: each group's accumulator states, the rows of
//! a table source (to take back out when they change) and stream time, written as
//! changelog records and read back at restart. Entry points: [`Aggregation::with_changelog`],
//! the [`StateStore`] implementation, [`Aggregation::current_rows`].
//!
//! Record keys start with a tag: `g` and a state key (a group's accumulator states, its time
//! and whether it is shown), `p` and a table key (the row's group and aggregate arguments),
//! or the single key `m` (stream time, and what wrote the records).

use bytes::{BufMut, Bytes};
use serde::{Deserialize, Serialize};

use super::*;
use crate::log::ProducerRecord;
use crate::runtime::state::{ScalarRows, StateStore, field};

const GROUP: u8 = b'g';
const TABLE_ROW: u8 = b'p';
const META: &[u8] = b"m";
/// The layout of the records; a changelog of another layout is not read.
const FORMAT: u32 = 1;

/// How the aggregation's values are written.
#[derive(Debug)]
pub(super) struct StateCodec {
    /// A group's time, whether it is shown, then each accumulator's state fields.
    groups: ScalarRows,
    /// Where each accumulator's fields start among the group fields.
    state_ranges: Vec<std::ops::Range<usize>>,
    /// A table row's arguments, aggregate after aggregate (`None`: no aggregate takes any).
    arguments: Option<ScalarRows>,
    argument_counts: Vec<usize>,
    /// What the records hold: only read back by an aggregation that writes the same.
    description: String,
}

/// The bookkeeping record.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    /// The Riffle version that wrote it (Arrow's row format is only read by the same).
    version: String,
    state: String,
    stream_time: i64,
    last_close: Option<i64>,
}

impl StateCodec {
    /// `None` when a value's type has no row format.
    fn try_new(plan: &AggregatePlan) -> Result<Option<StateCodec>, PlanError> {
        let mut fields = vec![
            field("timestamp", arrow::datatypes::DataType::Int64),
            field("shown", arrow::datatypes::DataType::Boolean),
        ];
        let mut state_ranges = Vec::with_capacity(plan.aggregates.len());
        let mut argument_fields = Vec::new();
        let mut argument_counts = Vec::with_capacity(plan.aggregates.len());
        for (index, aggregate) in plan.aggregates.iter().enumerate() {
            let start = fields.len();
            for state in aggregate.state_fields()? {
                fields.push(field(
                    &format!("{index}.{}", state.name()),
                    state.data_type().clone(),
                ));
            }
            state_ranges.push(start..fields.len());
            let expressions = aggregate.expressions();
            argument_counts.push(expressions.len());
            for (position, expression) in expressions.iter().enumerate() {
                argument_fields.push(field(
                    &format!("{index}.{position}"),
                    expression.data_type(&plan.input_schema)?,
                ));
            }
        }
        let Some(groups) = ScalarRows::try_new(fields)? else {
            return Ok(None);
        };
        let arguments = match argument_fields.is_empty() {
            true => None,
            false => match ScalarRows::try_new(argument_fields)? {
                Some(arguments) => Some(arguments),
                None => return Ok(None),
            },
        };
        let description = format!(
            "groups({}) arguments({}) windowed({})",
            groups.describe(),
            arguments
                .as_ref()
                .map(ScalarRows::describe)
                .unwrap_or_default(),
            plan.windowing.is_some()
        );
        Ok(Some(StateCodec {
            groups,
            state_ranges,
            arguments,
            argument_counts,
            description,
        }))
    }
}

fn tagged(tag: u8, key: &[u8]) -> Bytes {
    let mut bytes = Vec::with_capacity(key.len() + 1);
    bytes.push(tag);
    bytes.extend_from_slice(key);
    Bytes::from(bytes)
}

fn put(key: Bytes, value: Bytes) -> ProducerRecord {
    ProducerRecord {
        key: Some(key),
        value: Some(value),
        ..ProducerRecord::default()
    }
}

fn delete(key: Bytes) -> ProducerRecord {
    ProducerRecord {
        key: Some(key),
        ..ProducerRecord::default()
    }
}

impl Aggregation {
    /// Keeps track of changes for a changelog from now on; `false` (and no tracking) when
    /// a value of the state has no changelog format.
    pub fn with_changelog(&mut self) -> Result<bool, PlanError> {
        // `EMIT FINAL` time windows keep their state in vectorized accumulators, without a
        // changelog format: they are rebuilt from the source.
        if self.final_windows.is_some() {
            return Ok(false);
        }
        self.changelog = StateCodec::try_new(&self.plan)?;
        Ok(self.changelog.is_some())
    }

    /// Every shown group's current row, as changes (what a restored table holds).
    pub fn current_rows(&mut self) -> Result<Changes, PlanError> {
        let mut pending = Pending::new(self.plan.aggregates.len());
        let having = self.plan.having.is_some();
        let windowed = self.plan.windowing.is_some();
        for (key, group) in self.groups.iter_mut() {
            if group.shown {
                push_group_row(&mut pending, key, group, having, windowed)?;
            }
        }
        self.finish(pending, &[], None)
    }

    fn meta(&self) -> Result<Bytes, PlanError> {
        let codec = self.codec()?;
        let meta = Meta {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").to_string(),
            state: codec.description.clone(),
            stream_time: self.stream_time,
            last_close: self.last_close,
        };
        serde_json::to_vec(&meta)
            .map(Bytes::from)
            .map_err(|e| PlanError::Plan(format!("internal: writing the state's bookkeeping: {e}")))
    }

    fn codec(&self) -> Result<&StateCodec, PlanError> {
        self.changelog
            .as_ref()
            .ok_or_else(|| PlanError::Plan("internal: the aggregation has no changelog".into()))
    }

    /// The table rows' records (`p` keys) for the keys changed since the last write.
    fn table_row_records(&mut self, records: &mut Vec<ProducerRecord>) -> Result<(), PlanError> {
        let mut keys = std::mem::take(&mut self.previous_changed);
        keys.sort_unstable();
        keys.dedup();
        let mut kept = Vec::new();
        let mut arguments = Vec::new();
        for key in keys {
            match self.previous.get(&key) {
                Some(row) => {
                    arguments.push(row.arguments.iter().flatten().cloned().collect::<Vec<_>>());
                    kept.push(key);
                }
                None => records.push(delete(tagged(TABLE_ROW, &key))),
            }
        }
        let codec = self.codec()?;
        let encoded = match &codec.arguments {
            Some(rows) => rows.encode(&arguments)?,
            None => vec![Bytes::new(); kept.len()],
        };
        for (key, arguments) in kept.into_iter().zip(encoded) {
            let group = &self.previous[&key].group;
            let mut value = Vec::with_capacity(4 + group.len() + arguments.len());
            value.put_u32(group.len() as u32);
            value.extend_from_slice(group);
            value.extend_from_slice(&arguments);
            records.push(put(tagged(TABLE_ROW, &key), Bytes::from(value)));
        }
        Ok(())
    }

    /// Loads groups from their records' keys (state keys) and values.
    fn restore_groups(&mut self, entries: &[(&[u8], &[u8])]) -> Result<(), PlanError> {
        let codec = self.codec()?;
        let columns = codec
            .groups
            .decode(entries.iter().map(|(_, value)| *value))?;
        let ranges = codec.state_ranges.clone();
        let times = columns[0]
            .as_primitive_opt::<Int64Type>()
            .cloned()
            .ok_or_else(|| PlanError::Plan("internal: a group's time is not a BIGINT".into()))?;
        let shown = columns[1]
            .as_boolean_opt()
            .cloned()
            .ok_or_else(|| PlanError::Plan("internal: a group's shown flag".into()))?;
        let windowing = self.plan.windowing;
        for (row, (key, _)) in entries.iter().enumerate() {
            let window = window_of_state_key(key, windowing.is_some());
            let mut group = new_group(&self.plan, times.value(row))?;
            group.shown = shown.is_valid(row) && shown.value(row);
            for (accumulator, range) in group.accumulators.iter_mut().zip(&ranges) {
                let states: Vec<ArrayRef> = columns[range.clone()]
                    .iter()
                    .map(|column| column.slice(row, 1))
                    .collect();
                accumulator.merge_batch(&states)?;
            }
            let slot = self.groups.insert(key, group);
            if let (Some(windowing), Some((start, end))) = (windowing, window) {
                self.window_ends.insert((end, slot));
                let session = matches!(windowing.kind, WindowKind::Session { .. });
                if self.plan.emit_final && session {
                    self.pending_windows.insert((end, (*key).into()));
                }
                if session {
                    self.sessions
                        .entry(group_of_state_key(key, true).into())
                        .or_default()
                        .push((start, end));
                }
            }
        }
        Ok(())
    }

    /// Loads a table source's rows from their records' keys (table keys) and values.
    fn restore_table_rows(&mut self, entries: &[(&[u8], &[u8])]) -> Result<(), PlanError> {
        let mut split = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let length = value
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u32::from_be_bytes(b) as usize)
                .filter(|length| 4 + length <= value.len())
                .ok_or_else(|| PlanError::Plan("internal: a table row's record is cut".into()))?;
            split.push((*key, &value[4..4 + length], &value[4 + length..]));
        }
        let codec = self.codec()?;
        let counts = codec.argument_counts.clone();
        let columns = match &codec.arguments {
            Some(rows) => rows.decode(split.iter().map(|(_, _, arguments)| *arguments))?,
            None => Vec::new(),
        };
        for (row, (key, group, _)) in split.into_iter().enumerate() {
            let mut columns = columns.iter();
            let arguments = counts
                .iter()
                .map(|count| {
                    columns
                        .by_ref()
                        .take(*count)
                        .map(|column| ScalarValue::try_from_array(column, row))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.previous.insert(
                key.into(),
                PreviousRow {
                    group: group.into(),
                    arguments,
                },
            );
        }
        Ok(())
    }
}

impl StateStore for Aggregation {
    fn changelog_records(&mut self) -> Result<Vec<ProducerRecord>, PlanError> {
        if self.changelog.is_none() {
            return Ok(Vec::new());
        }
        let mut records = Vec::new();
        for key in std::mem::take(&mut self.removed) {
            if !self.groups.contains_key(&key) {
                records.push(delete(tagged(GROUP, &key)));
            }
        }
        // Coalesced emission hands its groups over at each flush; per-record emission
        // leaves them marked.
        let mut slots = std::mem::take(&mut self.unlogged);
        if !self.plan.emission.coalesces() {
            slots.append(&mut self.dirty.take());
        }
        let mut written = Vec::with_capacity(slots.len());
        let mut rows = Vec::with_capacity(slots.len());
        for slot in slots {
            let Some((key, group)) = self.groups.at_slot(slot) else {
                continue;
            };
            group.dirty = false;
            let mut row = vec![
                ScalarValue::Int64(Some(group.timestamp)),
                ScalarValue::Boolean(Some(group.shown)),
            ];
            for accumulator in &mut group.accumulators {
                row.extend(accumulator.state()?);
            }
            rows.push(row);
            written.push(tagged(GROUP, key));
        }
        let values = self.codec()?.groups.encode(&rows)?;
        records.extend(
            written
                .into_iter()
                .zip(values)
                .map(|(key, value)| put(key, value)),
        );
        self.table_row_records(&mut records)?;
        records.push(put(Bytes::from_static(META), self.meta()?));
        Ok(records)
    }

    fn restore(&mut self, entries: &[(Bytes, Bytes)]) -> Result<bool, PlanError> {
        let codec = self.codec()?;
        let Some((_, meta)) = entries.iter().find(|(key, _)| key.as_ref() == META) else {
            return Ok(false);
        };
        let Ok(meta) = serde_json::from_slice::<Meta>(meta) else {
            return Ok(false);
        };
        if meta.format != FORMAT
            || meta.version != env!("CARGO_PKG_VERSION")
            || meta.state != codec.description
        {
            return Ok(false);
        }
        let mut groups = Vec::new();
        let mut table_rows = Vec::new();
        for (key, value) in entries {
            match key.split_first() {
                Some((&GROUP, key)) => groups.push((key, value.as_ref())),
                Some((&TABLE_ROW, key)) => table_rows.push((key, value.as_ref())),
                _ => {}
            }
        }
        self.restore_groups(&groups)?;
        self.restore_table_rows(&table_rows)?;
        self.stream_time = meta.stream_time;
        self.last_close = meta.last_close;
        Ok(true)
    }

    fn mark_all_changed(&mut self) {
        if self.changelog.is_none() {
            return;
        }
        self.unlogged.extend(self.groups.slots());
        self.previous_changed.extend(self.previous.keys().cloned());
    }
}
