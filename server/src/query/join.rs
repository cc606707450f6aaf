//! A persistent join: one task reads every partition of every joined source (rows of a key
//! may sit in any partition, so no repartition is needed), runs the join steps and the
//! query over the joined rows, and writes the results to the sink topic with its positions
//! in one transaction.
//!
//! A join with a stream–stream step writes its state to the query's changelog now and then
//! (a snapshot, see `join_state.rs`) in the transaction of the output and the positions it
//! matches. At start the latest snapshot is loaded and the records between its positions
//! and the committed ones are read again, without writing; without a snapshot, the sources
//! are read again from where the query first started. A join without one keeps only table
//! rows: its tables are read again from where the query first started, its streams not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use tokio::sync::watch;

use super::join_inputs::{self, Columns, DecodedRun, Next, Ordering, PartitionBuffer};
use super::join_state::{Snapshot, SnapshotWriter};
use super::{
    ProcessingLog, Progress, QuerySpec, QueryState, evaluate_rows, presence_runs, read_committed,
    until_running,
};
use crate::log::transaction::TransactionalProducer;
use crate::log::{
    GroupOffsets, IsolationLevel, Log, LogError, ProducerRecord, Record, TopicPartitionOffset,
};
use crate::plan::join::{JOINED_ROW, JoinPlan};
use crate::runtime::arena_map::ArenaMap;
use crate::runtime::join::snapshot::{Entries, EntryKind, entries};
use crate::runtime::join::{JoinOutput, JoinStep, ROWTIME, RowChange, Side, SideLayout, StepMode};
use crate::runtime::{RecordError, SourceDecoder};
use riffle_grammar::ast::SourceKind;

pub(super) struct JoinTask {
    pub log: Arc<dyn Log>,
    pub spec: QuerySpec,
    pub plan: Arc<JoinPlan>,
    /// The next offset to read, per input and partition.
    pub positions: Vec<BTreeMap<i32, i64>>,
    /// Where the query first started, per input and partition.
    pub origins: Vec<BTreeMap<i32, i64>>,
    pub state: watch::Receiver<QueryState>,
    pub progress: Arc<watch::Sender<Progress>>,
    pub processing_log: ProcessingLog,
    /// A push query's subscriber and how many rows it still wants; `None` for a
    /// persistent query (which writes to its sink).
    pub subscriber: Option<(tokio::sync::mpsc::Sender<super::transient::Rows>, usize)>,
    /// The transactional id a persistent query writes with.
    pub producer_id: String,
    /// The changelog topic a persistent query snapshots its state to; `None` for a push
    /// query.
    pub changelog: Option<String>,
}

/// A snapshot is taken once the rows joined since the last one reach this many times the
/// rows the state holds (and `TaskOptions::join_snapshot_rows`): writing snapshots costs at
/// most about half of what reading the inputs does, and a restart reads at most this many
/// times the state's rows again.
const SNAPSHOT_AFTER_STATE_TIMES: usize = 2;

/// What the task changes as it runs.
struct Running {
    decoders: Vec<SourceDecoder>,
    steps: Vec<JoinStep>,
    /// The keys a table result holds now (a row that leaves the result deletes its key
    /// only when it was there).
    present: ArenaMap<()>,
    /// Re-reading records processed before a restart: nothing is written or logged.
    rebuilding: bool,
    /// Per input and partition, the rows decoded and not joined yet.
    buffers: Vec<Vec<PartitionBuffer>>,
    /// Where each input's batches hold the row time and the record offset.
    columns: Vec<Columns>,
    /// The latest row time joined from each input.
    input_times: Vec<i64>,
    ordering: Ordering,
    /// Writes the state's snapshots (a persistent query).
    snapshots: Option<SnapshotWriter>,
    /// Input rows joined since the last snapshot.
    joined_since_snapshot: usize,
}

/// The join key a step appends to each input batch.
const STEP_KEY: &str = "__RIFFLE_STEP_KEY";

impl JoinTask {
    fn fail(&self, what: &str, error: &dyn std::fmt::Display) -> String {
        format!("{}: {what}: {error}", self.spec.id)
    }

    pub async fn run(mut self) -> Result<(), String> {
        let mut running = Running {
            decoders: self
                .plan
                .inputs
                .iter()
                .map(|input| self.spec.decoder(&input.source))
                .collect(),
            steps: self
                .steps()
                .map_err(|e| self.fail("starting the join", &e))?,
            present: ArenaMap::default(),
            rebuilding: false,
            buffers: Vec::new(),
            columns: self
                .plan
                .inputs
                .iter()
                .map(|input| {
                    let index = |name: &str| {
                        let name = crate::plan::join::joined_name(&input.alias, name);
                        input.schema.index_of(&name).unwrap_or(0)
                    };
                    Columns {
                        time: index(ROWTIME),
                        offset: index("ROWOFFSET"),
                    }
                })
                .collect(),
            input_times: vec![i64::MIN; self.plan.inputs.len()],
            ordering: self.ordering(),
            snapshots: None,
            joined_since_snapshot: 0,
        };
        // A persistent query writes through a transactional producer (which fences the one
        // it had before a restart, aborting what that left open) and rebuilds its state; a
        // push query starts afresh and writes nothing.
        let mut producer = match self.subscriber {
            Some(_) => None,
            None => {
                let producer = TransactionalProducer::new(self.log.clone(), &self.producer_id)
                    .await
                    .map_err(|e| self.fail("registering the query's producer", &e))?;
                let from = self.restore(&mut running).await?;
                self.rebuild(&mut running, &from).await?;
                self.report_progress();
                Some(producer)
            }
        };
        running.buffers = self.buffers(&self.positions, None);
        // An input without rows holds the others back at its latest time for up to
        // `max.task.idle.ms` from when it was found empty.
        let mut empty_since: Vec<Option<Instant>> = vec![None; self.plan.inputs.len()];
        loop {
            if !until_running(&mut self.state).await {
                return Ok(());
            }
            self.fill(&mut running).await?;
            // Records that gave no rows (skipped, or failed to decode) move the position
            // on by themselves.
            if self.note_skipped(&running) {
                match &mut producer {
                    Some(producer) => self.write(&mut running, producer, Vec::new()).await?,
                    None => self.report_progress(),
                }
            }
            // The record the query stops at, once the rows before it are joined and written.
            let fatal = running
                .buffers
                .iter()
                .flatten()
                .find_map(|b| b.runs.is_empty().then_some(b.fatal.as_ref()).flatten());
            if let Some(error) = fatal {
                return Err(format!("{}: {}", self.spec.id, error.message));
            }
            let idle = self.spec.options.max_task_idle;
            let mut awaited = vec![None; self.plan.inputs.len()];
            let mut wait_for = Duration::from_secs(1);
            for (input, buffers) in running.buffers.iter().enumerate() {
                // Only an ordered input holds the others back.
                if !running.ordering.ordered[input] || buffers.iter().any(|b| !b.runs.is_empty()) {
                    empty_since[input] = None;
                    continue;
                }
                let since = *empty_since[input].get_or_insert_with(Instant::now);
                if let Some(left) = idle.checked_sub(since.elapsed()).filter(|d| !d.is_zero()) {
                    awaited[input] = Some(running.input_times[input]);
                    wait_for = wait_for.min(left);
                }
            }
            match join_inputs::next(
                &running.buffers,
                &running.columns,
                &running.ordering,
                &awaited,
            ) {
                Next::Take { input, slot, until } => {
                    if !self
                        .take(&mut running, &mut producer, (input, slot), until)
                        .await?
                    {
                        return Ok(());
                    }
                }
                Next::Wait => {
                    let awaited: Vec<usize> = (0..awaited.len())
                        .filter(|&input| awaited[input].is_some())
                        .collect();
                    if !self.wait_for_records(&running, &awaited, wait_for).await? {
                        return Ok(());
                    }
                }
                Next::Empty => {
                    // Nothing buffered: the next rows start a new idle period.
                    empty_since.fill(None);
                    let all: Vec<usize> = (0..self.plan.inputs.len()).collect();
                    if !self
                        .wait_for_records(&running, &all, Duration::from_secs(1))
                        .await?
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// How the inputs are ordered (see [`join_inputs`]): a join with stream–stream steps
    /// orders its stream inputs, within the smallest of those steps' grace periods.
    fn ordering(&self) -> Ordering {
        let slack = self
            .plan
            .steps
            .iter()
            .filter_map(|step| match step.mode {
                StepMode::Windowed { grace, .. } => Some(grace),
                _ => None,
            })
            .min();
        Ordering {
            ordered: self
                .plan
                .inputs
                .iter()
                .map(|input| slack.is_some() && input.source.kind == SourceKind::Stream)
                .collect(),
            slack: slack.unwrap_or(0),
        }
    }

    /// A buffer per input partition, fetching from `from`, up to `until` (per input and
    /// partition) when given.
    fn buffers(
        &self,
        from: &[BTreeMap<i32, i64>],
        until: Option<&[BTreeMap<i32, i64>]>,
    ) -> Vec<Vec<PartitionBuffer>> {
        from.iter()
            .enumerate()
            .map(|(input, partitions)| {
                partitions
                    .iter()
                    .map(|(&partition, &offset)| {
                        let limit = until.map(|u| u[input].get(&partition).copied().unwrap_or(0));
                        PartitionBuffer::new(partition, offset, limit)
                    })
                    .collect()
            })
            .collect()
    }

    /// Fetches and decodes the next records of every partition whose buffer is empty.
    async fn fill(&self, running: &mut Running) -> Result<(), String> {
        for input in 0..running.buffers.len() {
            for slot in 0..running.buffers[input].len() {
                let buffer = &running.buffers[input][slot];
                if !buffer.wants_fetch() {
                    continue;
                }
                let (partition, offset, until) = (buffer.partition, buffer.fetch_at, buffer.until);
                let topic = &self.plan.inputs[input].source.topic;
                let response = self
                    .log
                    .fetch(&read_committed(topic, partition, offset))
                    .await
                    .map_err(|e| self.fail("reading a source", &e))?;
                let end = until.map_or(response.records.len(), |until| {
                    response.records.partition_point(|r| r.offset < until)
                });
                let (records, fatal) = super::until_fatal(
                    &running.decoders[input],
                    &response.records[..end],
                    partition,
                );
                let runs = self.decode(running, input, partition, records);
                let buffer = &mut running.buffers[input][slot];
                buffer.fetch_at = match until {
                    // Nothing more to read below the limit (records were removed).
                    Some(until) if response.next_offset == offset => until,
                    Some(until) => response.next_offset.min(until),
                    None => response.next_offset,
                };
                buffer.runs.extend(runs);
                buffer.fatal = fatal;
            }
        }
        Ok(())
    }

    /// Takes the next rows of a partition (see [`join_inputs::take`]), joins them and writes
    /// or delivers the results; `false` once a push query has all the rows it wants.
    async fn take(
        &mut self,
        running: &mut Running,
        producer: &mut Option<TransactionalProducer>,
        (input, slot): (usize, usize),
        until: i64,
    ) -> Result<bool, String> {
        let columns = running.columns[input];
        let buffer = &mut running.buffers[input][slot];
        let Some(run) = join_inputs::take(buffer, columns, until) else {
            return Ok(true);
        };
        let partition = buffer.partition;
        self.positions[input].insert(partition, join_inputs::resume_at(buffer, columns));
        match producer {
            Some(producer) => {
                let out = self.process(running, input, partition, run);
                self.write(running, producer, out).await?;
                Ok(true)
            }
            None => Ok(self.deliver(running, (input, partition), run).await),
        }
    }

    /// Moves the positions of partitions without buffered rows to their next fetch (past
    /// records that gave no rows); whether any moved.
    fn note_skipped(&mut self, running: &Running) -> bool {
        let mut moved = false;
        for (input, buffers) in running.buffers.iter().enumerate() {
            for buffer in buffers.iter().filter(|b| b.runs.is_empty()) {
                let at = join_inputs::resume_at(buffer, running.columns[input]);
                let position = self.positions[input].entry(buffer.partition).or_insert(at);
                moved |= *position != at;
                *position = at;
            }
        }
        moved
    }

    /// Writes a persistent query's records to its sink and commits them with the positions
    /// reached, in one transaction (with a snapshot of the state when one is due).
    async fn write(
        &self,
        running: &mut Running,
        producer: &mut TransactionalProducer,
        records: Vec<ProducerRecord>,
    ) -> Result<(), String> {
        // A snapshot that cannot be taken is not taken again: a restart then loads an
        // earlier one (or reads the sources again), which is slower, never wrong.
        let snapshot = self.snapshot_records(running).unwrap_or_else(|error| {
            tracing::warn!(query = %self.spec.id, %error, "the join state is not snapshotted");
            running.snapshots = None;
            None
        });
        let written = async {
            if let Some(topic) = &self.spec.sink_topic {
                producer.send(topic, records).await?;
            }
            if let Some((topic, records)) = snapshot {
                producer.send(&topic, records).await?;
            }
            producer.commit(Some(self.offsets())).await
        }
        .await;
        written.map_err(|e| self.fail("writing the output and position", &e))?;
        self.report_progress();
        Ok(())
    }

    /// Sends a push query's rows for decoded rows of one input's partition to its
    /// subscriber; `false` once its `LIMIT` is reached or it went away.
    async fn deliver(
        &mut self,
        running: &mut Running,
        (input, partition): (usize, i32),
        run: DecodedRun,
    ) -> bool {
        let mut rows = Vec::new();
        if let Some(joined) = self.join_run(running, input, partition, run)
            && let Some((_, results)) = self.evaluate_joined(running, &joined)
        {
            rows.extend(results.into_iter().map(|(_, output)| output));
        }
        let Some((subscriber, remaining)) = &mut self.subscriber else {
            return false;
        };
        for rows in rows {
            let take = rows.num_rows().min(*remaining);
            if take == 0 {
                continue;
            }
            *remaining -= take;
            let sent = subscriber
                .send(super::transient::Rows::new(rows.slice(0, take)))
                .await;
            if sent.is_err() || *remaining == 0 {
                return false;
            }
        }
        true
    }

    /// The join steps of the plan, each with the layout of its inputs' batches (a step's
    /// key expression's value is appended to each batch it gets).
    fn steps(&self) -> Result<Vec<JoinStep>, arrow::error::ArrowError> {
        let with_key = |schema: &arrow::datatypes::SchemaRef, key_type: &DataType| {
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new(STEP_KEY, key_type.clone(), true));
            Arc::new(Schema::new(fields))
        };
        let source_layout = |schema: &arrow::datatypes::SchemaRef, alias: &str| SideLayout {
            carried: (0..schema.fields().len()).collect(),
            time: schema
                .index_of(&crate::plan::join::joined_name(alias, ROWTIME))
                .unwrap_or(0),
            key: schema.fields().len(),
        };
        self.plan
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let left = if index == 0 {
                    source_layout(&step.left_schema, &self.plan.inputs[0].alias)
                } else {
                    let count = step.left_schema.fields().len();
                    SideLayout {
                        carried: (0..count - 2).collect(),
                        time: count - 2,
                        key: count,
                    }
                };
                let right = source_layout(&step.right_schema, &self.plan.inputs[index + 1].alias);
                JoinStep::new(
                    step.kind,
                    step.mode,
                    (with_key(&step.left_schema, &step.key_type), left),
                    (with_key(&step.right_schema, &step.key_type), right),
                    &step.key_name,
                )
                .map(|join| join.with_left_primary_key(step.left_primary_key.clone()))
            })
            .collect()
    }

    /// The changelog records of a snapshot of the state, when one is due; the state is
    /// then the one the positions being committed reached.
    fn snapshot_records(
        &self,
        running: &mut Running,
    ) -> Result<Option<(String, Vec<ProducerRecord>)>, arrow::error::ArrowError> {
        let kept: usize = running.steps.iter().map(JoinStep::kept_rows).sum();
        let due = (kept + running.present.len()) * SNAPSHOT_AFTER_STATE_TIMES;
        let due = due.max(self.spec.options.join_snapshot_rows);
        if running.snapshots.is_none() || running.joined_since_snapshot < due {
            return Ok(None);
        }
        running.joined_since_snapshot = 0;
        let steps = running
            .steps
            .iter_mut()
            .map(JoinStep::snapshot)
            .collect::<Result<Vec<_>, _>>()?;
        let mut task = Entries::default();
        for (key, ()) in running.present.iter() {
            task.push_plain(EntryKind::Present, key, 0, 0);
        }
        for (input, time) in running.input_times.iter().enumerate() {
            task.push_plain(EntryKind::InputTime, &[], input as u32, *time);
        }
        let snapshot = Snapshot {
            steps,
            task: task.finish()?,
            positions: self.positions.clone(),
        };
        let Some(writer) = &mut running.snapshots else {
            return Ok(None);
        };
        Ok(Some((
            writer.topic().to_string(),
            writer.records(&snapshot)?,
        )))
    }

    /// Loads the latest snapshot of the state from the changelog (a persistent query with
    /// a stream–stream step); answers where reading the sources again starts: the
    /// snapshot's positions, or where the query first started when there is no snapshot it
    /// can use. A join without a stream–stream step keeps only table rows: its tables are
    /// read again from where the query first started (their topics are their changelogs,
    /// as in ksqlDB), its streams not at all.
    async fn restore(&self, running: &mut Running) -> Result<Vec<BTreeMap<i32, i64>>, String> {
        let keeps_stream_rows = self
            .plan
            .steps
            .iter()
            .any(|step| matches!(step.mode, StepMode::Windowed { .. }));
        if !keeps_stream_rows {
            let tables_from_origin = self.plan.inputs.iter().enumerate().map(|(input, source)| {
                match source.source.kind {
                    SourceKind::Table => self.origins[input].clone(),
                    SourceKind::Stream => self.positions[input].clone(),
                }
            });
            return Ok(tables_from_origin.collect());
        }
        let Some(topic) = &self.changelog else {
            return Ok(self.origins.clone());
        };
        crate::runtime::state::ensure_changelog(&*self.log, topic)
            .await
            .map_err(|e| self.fail("creating the join's changelog", &e))?;
        let description = self.state_description();
        let stored = super::join_state::read_snapshot(
            &*self.log,
            topic,
            &description,
            self.plan.steps.len(),
        )
        .await
        .map_err(|e| self.fail("restoring the join state", &e))?;
        running.snapshots = Some(SnapshotWriter::new(topic.clone(), description, stored.last));
        let Some(snapshot) = stored.snapshot else {
            return Ok(self.origins.clone());
        };
        // The snapshot was committed with positions no later than the committed ones.
        let fits = snapshot.positions.len() == self.positions.len()
            && snapshot
                .positions
                .iter()
                .zip(&self.positions)
                .all(|(at, committed)| {
                    at.len() == committed.len()
                        && at
                            .iter()
                            .zip(committed)
                            .all(|((p, o), (cp, co))| p == cp && o <= co)
                });
        if !fits {
            tracing::warn!(query = %self.spec.id, "the join's snapshot does not fit its inputs");
            return Ok(self.origins.clone());
        }
        let positions = snapshot.positions.clone();
        if let Err(error) = self.load(running, snapshot) {
            tracing::warn!(query = %self.spec.id, %error, "the join's snapshot does not load");
            running.steps = self
                .steps()
                .map_err(|e| self.fail("starting the join", &e))?;
            running.present = ArenaMap::default();
            running.input_times.fill(i64::MIN);
            return Ok(self.origins.clone());
        }
        let kept: usize = running.steps.iter().map(JoinStep::kept_rows).sum();
        tracing::info!(query = %self.spec.id, kept, "the join state is loaded from its changelog");
        Ok(positions)
    }

    /// Loads a snapshot into a task that has joined nothing yet.
    fn load(&self, running: &mut Running, snapshot: Snapshot) -> Result<(), String> {
        for (step, state) in running.steps.iter_mut().zip(snapshot.steps) {
            step.restore(state).map_err(|e| e.to_string())?;
        }
        for entry in entries(&snapshot.task).map_err(|e| e.to_string())? {
            match entry.kind {
                EntryKind::Present => {
                    running.present.insert(entry.key, ());
                }
                EntryKind::InputTime => {
                    if let Some(time) = running.input_times.get_mut(entry.slot as usize) {
                        *time = entry.time;
                    }
                }
                other => return Err(format!("the task's entries hold a {other:?}")),
            }
        }
        Ok(())
    }

    /// What the state is of: a snapshot is only loaded by a join of the same steps over
    /// the same inputs.
    fn state_description(&self) -> String {
        let inputs = self
            .plan
            .inputs
            .iter()
            .map(|input| format!("{} {:?}", input.source.topic, input.schema.fields()));
        let steps = self.plan.steps.iter().map(|step| {
            format!(
                "{:?} {:?} {} {:?} | {:?} | {:?}",
                step.kind,
                step.mode,
                step.key_type,
                step.left_primary_key,
                step.left_schema.fields(),
                step.right_schema.fields()
            )
        });
        inputs.chain(steps).collect::<Vec<_>>().join("\n")
    }

    /// Reads the sources again from `from` to the committed positions, a fetch of each
    /// partition in turn, writing nothing.
    async fn rebuild(
        &self,
        running: &mut Running,
        from: &[BTreeMap<i32, i64>],
    ) -> Result<(), String> {
        running.rebuilding = true;
        running.buffers = self.buffers(from, Some(&self.positions));
        // Everything up to the committed positions is there: no input is waited for.
        let awaited = vec![None; self.plan.inputs.len()];
        loop {
            self.fill(running).await?;
            let Next::Take { input, slot, until } = join_inputs::next(
                &running.buffers,
                &running.columns,
                &running.ordering,
                &awaited,
            ) else {
                break;
            };
            let columns = running.columns[input];
            let buffer = &mut running.buffers[input][slot];
            let partition = buffer.partition;
            if let Some(run) = join_inputs::take(buffer, columns, until) {
                self.process(running, input, partition, run);
            }
        }
        running.rebuilding = false;
        Ok(())
    }

    /// The sink records for decoded rows of one input's partition, in order.
    fn process(
        &self,
        running: &mut Running,
        input: usize,
        partition: i32,
        run: DecodedRun,
    ) -> Vec<ProducerRecord> {
        let Some(joined) = self.join_run(running, input, partition, run) else {
            return Vec::new();
        };
        let mut out = self.finish(running, joined);
        out.retain(|record| record.timestamp.is_none_or(|t| t >= 0));
        out
    }

    /// Decodes records of one input's partition, in runs of records that agree on having
    /// a key and a value; decoding errors go to the processing log.
    fn decode(
        &self,
        running: &Running,
        input: usize,
        partition: i32,
        records: &[Record],
    ) -> Vec<DecodedRun> {
        let source = &self.plan.inputs[input];
        let table = source.source.kind == SourceKind::Table;
        let mut runs = Vec::new();
        for (run, keyed, valued) in presence_runs(records) {
            // A table's records need a key; a stream's without a value are skipped.
            if (table && !keyed) || (!table && !valued) {
                continue;
            }
            let (batch, errors) = running.decoders[input].decode(run, partition);
            for error in errors {
                self.log_failure(running, error);
            }
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = match RecordBatch::try_new(source.schema.clone(), batch.columns().to_vec())
            {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(query = %self.spec.id, %error, "a decoded batch does not fit the join");
                    continue;
                }
            };
            runs.push(DecodedRun {
                batch,
                deletes: table.then_some(!valued),
                // The records' headers go with the outputs they cause.
                records: run
                    .iter()
                    .any(|record| !record.headers.is_empty())
                    .then(|| run.into()),
            });
        }
        runs
    }

    /// Runs decoded rows of one input's partition through the join; the joined rows carry
    /// the headers of the records that caused them.
    fn join_run(
        &self,
        running: &mut Running,
        input: usize,
        partition: i32,
        run: DecodedRun,
    ) -> Option<JoinOutput> {
        let columns = running.columns[input];
        running.joined_since_snapshot += run.batch.num_rows();
        if let Some(latest) = run.times(columns).and_then(arrow::compute::max) {
            running.input_times[input] = running.input_times[input].max(latest);
        }
        let offsets = run.offsets(columns).cloned();
        let first_offset = offsets.as_ref().map_or(0, |o| o.value(0));
        let deletes = run.deletes.map(|d| vec![d; run.batch.num_rows()]);
        match self.join(running, input, run.batch, deletes) {
            Ok(mut joined) => {
                if let (Some(records), Some(offsets)) = (&run.records, &offsets) {
                    joined.headers = joined
                        .triggers
                        .iter()
                        .map(|row| super::headers_at(records, offsets.value(*row as usize)))
                        .collect();
                }
                Some(joined)
            }
            Err(message) => {
                self.log_failure(
                    running,
                    RecordError {
                        topic: self.plan.inputs[input].source.topic.clone(),
                        partition,
                        offset: first_offset,
                        message,
                        fatal: false,
                    },
                );
                None
            }
        }
    }

    /// Runs a batch of input `input` through the steps: into the step that joins it, then
    /// each later step as its left input.
    fn join(
        &self,
        running: &mut Running,
        input: usize,
        batch: RecordBatch,
        deletes: Option<Vec<bool>>,
    ) -> Result<JoinOutput, String> {
        let (first, side) = match input {
            0 => (0, Side::Left),
            n => (n - 1, Side::Right),
        };
        let step = &self.plan.steps[first];
        let key = match side {
            Side::Left => &step.left_key,
            Side::Right => &step.right_key,
        };
        let bounds = step.window_bounds.as_ref().map(|b| match side {
            Side::Left => &b[0],
            Side::Right => &b[1],
        });
        let batch = with_key(batch, key, &step.key_type, bounds)?;
        let mut output = running.steps[first]
            .push(side, batch, deletes.as_deref())
            .map_err(|e| format!("Error joining: {e}"))?;
        for later in first + 1..self.plan.steps.len() {
            let step = &self.plan.steps[later];
            let deletes = output.deletes();
            let triggers = output.triggers;
            let batch = with_key(output.batch, &step.left_key, &step.key_type, None)?;
            let table = matches!(
                self.plan.steps[later - 1].mode,
                StepMode::TableTable | StepMode::ForeignKey
            );
            output = running.steps[later]
                .push(Side::Left, batch, table.then_some(deletes.as_slice()))
                .map_err(|e| format!("Error joining: {e}"))?;
            // Each row's trigger, as a row of the batch pushed into the first step.
            for trigger in &mut output.triggers {
                *trigger = triggers[*trigger as usize];
            }
        }
        Ok(output)
    }

    /// The sink records of joined rows: the query's filter and projection, the join key
    /// as the record key; for a table, rows that leave the result delete their key.
    fn finish(&self, running: &mut Running, joined: JoinOutput) -> Vec<ProducerRecord> {
        let Some((batch, results)) = self.evaluate_joined(running, &joined) else {
            return Vec::new();
        };
        let rows = batch.num_rows();
        // The join key is the result's key, except in a foreign-key join (the left
        // table's key, selected as it is).
        let foreign = matches!(self.plan.key, crate::plan::join::JoinKey::LeftTable(..));
        let key_index = if foreign || !self.plan.partition_keys.is_empty() {
            None
        } else {
            self.plan
                .joined_schema
                .index_of(self.plan.key_column())
                .ok()
        };
        let encoder = &self.spec.encoder;
        let mut encoded: Vec<Option<ProducerRecord>> = (0..rows).map(|_| None).collect();
        for (input, output) in results {
            let output = match key_index {
                Some(index) => with_join_key(output, input.column(index), encoder),
                None => output,
            };
            let (Some(rowtime), Some(numbers)) = (
                input.column_by_name(ROWTIME),
                input
                    .column_by_name(JOINED_ROW)
                    .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            ) else {
                continue;
            };
            let mut records = encoder.encode(&output, rowtime);
            if let Some(bounds) = self.window_columns() {
                super::window_keys(&mut records, &input, encoder, bounds);
            }
            for (mut record, row) in records.into_iter().zip(numbers.values()) {
                if let Some(headers) = joined.headers.get(*row as usize) {
                    record.headers = headers.clone();
                }
                if let Some(slot) = encoded.get_mut(*row as usize) {
                    *slot = Some(record);
                }
            }
        }
        if self.plan.kind == SourceKind::Stream {
            return encoded.into_iter().flatten().collect();
        }
        // A table: each row upserts its key, or deletes it when the row is gone or filtered
        // out and the key was there.
        let keys = self.result_keys(&batch, key_index);
        let times = batch
            .column_by_name(ROWTIME)
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
        let mut out = Vec::with_capacity(rows);
        for (row, record) in encoded.into_iter().enumerate() {
            let key = keys.get(row).and_then(|r| r.key.clone());
            let key_bytes = key.as_deref().unwrap_or_default();
            let change = joined.changes[row];
            match record {
                Some(record) if change == RowChange::Upsert => {
                    running.present.insert(key_bytes, ());
                    out.push(record);
                }
                _ => {
                    let held = running.present.remove(key_bytes).is_some();
                    if held || change == RowChange::DeleteAlways {
                        out.push(ProducerRecord {
                            partition: None,
                            timestamp: times.as_ref().map(|t| t.value(row)),
                            key,
                            value: None,
                            headers: joined.headers.get(row).cloned().unwrap_or_default(),
                        });
                    }
                }
            }
        }
        out
    }

    /// The columns holding a windowed join's output windows: the left input's bounds.
    fn window_columns(&self) -> Option<(&str, &str)> {
        let bounds = self.plan.steps.first()?.window_bounds.as_ref()?;
        Some((bounds[0].0.as_str(), bounds[0].1.as_str()))
    }

    /// Joined rows with their row numbers, and the query's filter and projection over
    /// them (pairs of passing input rows and output rows); `None` when there are none.
    fn evaluate_joined(
        &self,
        running: &Running,
        joined: &JoinOutput,
    ) -> Option<(RecordBatch, Vec<(RecordBatch, RecordBatch)>)> {
        let rows = joined.batch.num_rows();
        if rows == 0 {
            return None;
        }
        let mut columns = joined.batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from_iter_values(0..rows as i64)));
        let batch = match RecordBatch::try_new(self.plan.joined_schema.clone(), columns) {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(query = %self.spec.id, %error, "joined rows do not fit the query");
                return None;
            }
        };
        let mut failures = Vec::new();
        let results = evaluate_rows(&self.plan.output, &batch, |row, message| {
            failures.push((row, message))
        });
        for (row, message) in failures {
            self.log_failure(
                running,
                RecordError {
                    topic: self.spec.source.topic.clone(),
                    partition: -1,
                    offset: row as i64,
                    message: format!("Error computing the query result: {message}"),
                    fatal: false,
                },
            );
        }
        Some((batch, results))
    }

    /// The encoded result key of every joined row: the join key, or (foreign-key joins)
    /// the selected left key columns.
    fn result_keys(&self, batch: &RecordBatch, key_index: Option<usize>) -> Vec<ProducerRecord> {
        let encoder = &self.spec.encoder;
        let Some(rowtime) = batch.column_by_name(ROWTIME).cloned() else {
            return Vec::new();
        };
        let empty = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            Vec::new(),
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        );
        let Ok(empty) = empty else {
            return Vec::new();
        };
        let keys = match key_index {
            Some(index) => with_join_key(empty, batch.column(index), encoder),
            None => {
                let mut fields = Vec::new();
                let mut columns = Vec::new();
                for (name, _) in &encoder.key_columns {
                    let source = self
                        .plan
                        .output
                        .projection
                        .iter()
                        .find(|p| &p.name == name)
                        .and_then(|p| p.source_column.as_ref())
                        .and_then(|s| batch.column_by_name(s));
                    if let Some(column) = source {
                        fields.push(Field::new(name, column.data_type().clone(), true));
                        columns.push(column.clone());
                    }
                }
                RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or(empty)
            }
        };
        encoder.encode(&keys, &rowtime)
    }

    fn log_failure(&self, running: &Running, error: RecordError) {
        if !running.rebuilding {
            self.processing_log.record(&self.spec.id, error);
        }
    }

    /// The positions reached, to commit with the output.
    fn offsets(&self) -> GroupOffsets {
        GroupOffsets {
            group: self.spec.id.clone(),
            offsets: self
                .positions
                .iter()
                .enumerate()
                .flat_map(|(input, partitions)| {
                    let topic = &self.plan.inputs[input].source.topic;
                    partitions
                        .iter()
                        .map(|(&partition, &offset)| TopicPartitionOffset {
                            topic: topic.clone(),
                            partition,
                            offset,
                        })
                })
                .collect(),
        }
    }

    fn report_progress(&self) {
        self.progress.send_modify(|progress| {
            for (input, partitions) in self.positions.iter().enumerate() {
                for (&partition, &offset) in partitions {
                    progress.insert((input, partition), offset);
                }
            }
        });
    }

    /// Waits (at most `limit`) until a partition of one of `inputs` has records past those
    /// fetched, or the query's state changes; `false` when the query is gone.
    async fn wait_for_records(
        &mut self,
        running: &Running,
        inputs: &[usize],
        limit: Duration,
    ) -> Result<bool, String> {
        let mut waits = Vec::new();
        for &input in inputs {
            let topic = &self.plan.inputs[input].source.topic;
            for buffer in &running.buffers[input] {
                let (log, topic) = (self.log.clone(), topic.clone());
                let (partition, offset) = (buffer.partition, buffer.fetch_at);
                waits.push(Box::pin(async move {
                    log.wait_for_data(
                        &topic,
                        partition,
                        offset,
                        IsolationLevel::ReadCommitted,
                        limit,
                    )
                    .await
                }));
            }
        }
        if waits.is_empty() {
            return Ok(self.state.changed().await.is_ok());
        }
        let any = futures_util::future::select_all(waits);
        tokio::select! {
            (waited, _, _) = any => {
                waited.map_err(|e: LogError| self.fail("waiting for records", &e))?;
                Ok(true)
            }
            changed = self.state.changed() => Ok(changed.is_ok()),
        }
    }
}

/// `batch` with the value of a step's key expression appended; in a join of windowed
/// sources, with the row's window (its `bounds` columns) beside it.
fn with_key(
    batch: RecordBatch,
    key: &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    key_type: &DataType,
    bounds: Option<&(String, String)>,
) -> Result<RecordBatch, String> {
    let rows = batch.num_rows();
    let values = key
        .evaluate(&batch)
        .and_then(|v| v.into_array(rows))
        .map_err(|e| format!("Error computing the join key: {}", e.strip_backtrace()))?;
    let cast = |values: ArrayRef, to: &DataType| {
        if values.data_type() == to {
            Ok(values)
        } else {
            arrow::compute::cast(&values, to).map_err(|e| e.to_string())
        }
    };
    let values = match (bounds, key_type) {
        (Some((start, end)), DataType::Struct(fields)) => {
            let bound = |name: &str| {
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| format!("internal: no window bound {name} in a joined row"))
            };
            let key = cast(values, fields[0].data_type())?;
            let columns = vec![key, bound(start)?, bound(end)?];
            Arc::new(
                arrow::array::StructArray::try_new(fields.clone(), columns, None)
                    .map_err(|e| e.to_string())?,
            )
        }
        _ => cast(values, key_type)?,
    };
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(STEP_KEY, key_type.clone(), true));
    let mut columns = batch.columns().to_vec();
    columns.push(values);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// The output rows with their key column holding the join key (a right join's row keeps
/// the key even where the selected left key column is NULL).
fn with_join_key(
    output: RecordBatch,
    join_key: &ArrayRef,
    encoder: &crate::runtime::SinkEncoder,
) -> RecordBatch {
    let Some((name, ty)) = encoder.key_columns.first() else {
        return output;
    };
    let target = ty.to_arrow();
    let key = match arrow::compute::cast(join_key, &target) {
        Ok(key) => key,
        Err(_) => return output,
    };
    let original = output.clone();
    let mut fields: Vec<Field> = Vec::with_capacity(output.num_columns() + 1);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(output.num_columns() + 1);
    for (field, column) in output.schema().fields().iter().zip(output.columns()) {
        if field.name() != name {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    fields.push(Field::new(name, target, true));
    columns.push(key);
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(join_key.len())),
    )
    .unwrap_or(original)
}
