//! A persistent join: one task reads every partition of every joined source (rows of a key
//! may sit in any partition, so no repartition is needed), runs the join steps and the
//! query over the joined rows, and writes the results to the sink topic with its positions
//! in one transaction.
//!
//! At start the join state is rebuilt by reading the sources again, without writing, from
//! where the query first started to the committed positions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use tokio::sync::watch;

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
}

/// What the task changes as it runs.
struct Running {
    decoders: Vec<SourceDecoder>,
    steps: Vec<JoinStep>,
    /// The keys a table result holds now (a row that leaves the result deletes its key
    /// only when it was there).
    present: ArenaMap<()>,
    /// Re-reading records processed before a restart: nothing is written or logged.
    rebuilding: bool,
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
                self.rebuild(&mut running).await?;
                self.report_progress();
                Some(producer)
            }
        };
        loop {
            if !until_running(&mut self.state).await {
                return Ok(());
            }
            let mut read_any = false;
            let partitions: Vec<(usize, i32)> = self
                .positions
                .iter()
                .enumerate()
                .flat_map(|(input, p)| p.keys().map(move |&partition| (input, partition)))
                .collect();
            for (input, partition) in partitions {
                let offset = self.positions[input][&partition];
                let topic = &self.plan.inputs[input].source.topic;
                let response = self
                    .log
                    .fetch(&read_committed(topic, partition, offset))
                    .await
                    .map_err(|e| self.fail("reading a source", &e))?;
                if response.next_offset == offset {
                    continue;
                }
                read_any = true;
                let (records, fatal) =
                    super::until_fatal(&running.decoders[input], &response.records, partition);
                let next = fatal.as_ref().map_or(response.next_offset, |e| e.offset);
                self.positions[input].insert(partition, next);
                let at = (input, partition);
                let more = match &mut producer {
                    Some(producer) => {
                        let out = self.process(&mut running, at.0, at.1, records);
                        self.write(producer, out).await?;
                        true
                    }
                    None => self.deliver(&mut running, at, records).await,
                };
                if let Some(error) = fatal {
                    return Err(format!("{}: {}", self.spec.id, error.message));
                }
                if !more {
                    return Ok(());
                }
            }
            if !read_any && !self.wait_for_records().await? {
                return Ok(());
            }
        }
    }

    /// Writes a persistent query's records to its sink and commits them with the positions
    /// reached, in one transaction.
    async fn write(
        &self,
        producer: &mut TransactionalProducer,
        records: Vec<ProducerRecord>,
    ) -> Result<(), String> {
        let written = async {
            if let Some(topic) = &self.spec.sink_topic {
                producer.send(topic, records).await?;
            }
            producer.commit(Some(self.offsets())).await
        }
        .await;
        written.map_err(|e| self.fail("writing the output and position", &e))?;
        self.report_progress();
        Ok(())
    }

    /// Sends a push query's rows for records of one input's partition to its subscriber;
    /// `false` once its `LIMIT` is reached or it went away.
    async fn deliver(
        &mut self,
        running: &mut Running,
        (input, partition): (usize, i32),
        records: &[Record],
    ) -> bool {
        let rows = self.joined_rows(running, input, partition, records);
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

    /// A push query's output rows for records of one input's partition, in order.
    fn joined_rows(
        &self,
        running: &mut Running,
        input: usize,
        partition: i32,
        records: &[Record],
    ) -> Vec<RecordBatch> {
        let mut rows = Vec::new();
        self.each_joined(
            running,
            input,
            partition,
            records,
            |task, running, joined| {
                if let Some((_, results)) = task.evaluate_joined(running, &joined) {
                    rows.extend(results.into_iter().map(|(_, output)| output));
                }
            },
        );
        rows
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

    /// Reads the sources again from where the query first started to its committed
    /// positions, a fetch of each partition in turn, writing nothing.
    async fn rebuild(&self, running: &mut Running) -> Result<(), String> {
        running.rebuilding = true;
        let mut at = self.origins.clone();
        loop {
            let mut read_any = false;
            for (input, partitions) in at.iter_mut().enumerate() {
                for (partition, offset) in partitions.iter_mut() {
                    let until = self.positions[input].get(partition).copied().unwrap_or(0);
                    if *offset >= until {
                        continue;
                    }
                    let topic = &self.plan.inputs[input].source.topic;
                    let response = self
                        .log
                        .fetch(&read_committed(topic, *partition, *offset))
                        .await
                        .map_err(|e| self.fail("rebuilding the join state", &e))?;
                    if response.next_offset == *offset {
                        *offset = until;
                        continue;
                    }
                    let end = response.records.partition_point(|r| r.offset < until);
                    self.process(running, input, *partition, &response.records[..end]);
                    *offset = response.next_offset.min(until);
                    read_any = true;
                }
            }
            if !read_any {
                break;
            }
        }
        running.rebuilding = false;
        Ok(())
    }

    /// The sink records for records of one input's partition, in order.
    fn process(
        &self,
        running: &mut Running,
        input: usize,
        partition: i32,
        records: &[Record],
    ) -> Vec<ProducerRecord> {
        let mut out = Vec::new();
        self.each_joined(
            running,
            input,
            partition,
            records,
            |task, running, joined| out.extend(task.finish(running, joined)),
        );
        out.retain(|record| record.timestamp.is_none_or(|t| t >= 0));
        out
    }

    /// Decodes records of one input's partition and runs them through the join, handing
    /// each batch of joined rows to `each`.
    fn each_joined(
        &self,
        running: &mut Running,
        input: usize,
        partition: i32,
        records: &[Record],
        mut each: impl FnMut(&Self, &mut Running, JoinOutput),
    ) {
        let source = &self.plan.inputs[input];
        let table = source.source.kind == SourceKind::Table;
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
            // The decoded rows' offsets find the records whose headers the output carries.
            let offsets = run
                .iter()
                .any(|record| !record.headers.is_empty())
                .then(|| batch.column_by_name("ROWOFFSET").cloned())
                .flatten();
            let batch = match RecordBatch::try_new(source.schema.clone(), batch.columns().to_vec())
            {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(query = %self.spec.id, %error, "a decoded batch does not fit the join");
                    continue;
                }
            };
            let deletes = table.then(|| vec![!valued; batch.num_rows()]);
            match self.join(running, input, batch, deletes) {
                Ok(mut joined) => {
                    if let Some(offsets) = offsets
                        .as_ref()
                        .and_then(|o| o.as_primitive_opt::<Int64Type>())
                    {
                        joined.headers = joined
                            .triggers
                            .iter()
                            .map(|row| super::headers_at(run, offsets.value(*row as usize)))
                            .collect();
                    }
                    each(self, running, joined)
                }
                Err(message) => self.log_failure(
                    running,
                    RecordError {
                        topic: source.source.topic.clone(),
                        partition,
                        offset: run[0].offset,
                        message,
                        fatal: false,
                    },
                ),
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
            if let (Some(kind), Some(bounds)) = (encoder.window, self.window_columns()) {
                super::window_keys(&mut records, &input, kind, bounds);
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

    /// Waits (at most a second) until a partition of an input has records or the query's
    /// state changes; `false` when the query is gone.
    async fn wait_for_records(&mut self) -> Result<bool, String> {
        let mut waits = Vec::new();
        for (input, partitions) in self.positions.iter().enumerate() {
            let topic = self.plan.inputs[input].source.topic.clone();
            for (&partition, &offset) in partitions {
                let log = self.log.clone();
                let topic = topic.clone();
                waits.push(Box::pin(async move {
                    log.wait_for_data(
                        &topic,
                        partition,
                        offset,
                        IsolationLevel::ReadCommitted,
                        Duration::from_secs(1),
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
