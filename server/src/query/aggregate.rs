//! A persistent aggregation: one task reads every partition of the source (a group's rows
//! may sit in any of them), folds records into the [`Aggregation`] state, and writes each
//! change to the sink table's topic, the state's changes to its changelog topic and its
//! positions, in one transaction.
//!
//! At start the state is read back from the changelog, which matches the committed positions
//! exactly, so nothing is counted twice. Without a usable changelog (a query started by
//! another version, `EMIT FINAL`, state types without a changelog format) the state is
//! rebuilt by reading the source again from where the query first started.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, RecordBatch};
use tokio::sync::watch;

use super::{ProcessingLog, QuerySpec, QueryState, read_committed, until_running};
use crate::log::transaction::TransactionalProducer;
use crate::log::{
    GroupOffsets, IsolationLevel, Log, LogError, ProducerRecord, Record, TopicPartitionOffset,
};
use crate::plan::aggregate::{AggregatePlan, Emission};
use crate::runtime::aggregate::{Aggregation, Changes};
use crate::runtime::state::{StateStore, ensure_changelog, read_changelog};
use crate::runtime::{RecordError, SourceDecoder};
use riffle_grammar::ast::SourceKind;

/// Where an aggregation's changes go.
#[derive(Debug)]
pub(super) enum Delivery {
    /// A persistent query: records to the sink topic, then the committed position.
    Sink,
    /// A push query: the changed rows (tombstones left out) to one subscriber, until
    /// `remaining` rows were sent.
    Subscriber {
        rows: tokio::sync::mpsc::Sender<super::transient::Rows>,
        remaining: usize,
    },
}

pub(super) struct AggregateTask {
    pub log: Arc<dyn Log>,
    pub spec: QuerySpec,
    pub plan: Arc<AggregatePlan>,
    pub decoder: Arc<SourceDecoder>,
    /// The next offset to read, per partition.
    pub positions: BTreeMap<i32, i64>,
    /// Where the state began, per partition.
    pub origins: BTreeMap<i32, i64>,
    pub state: watch::Receiver<QueryState>,
    pub progress: Arc<watch::Sender<super::Progress>>,
    pub processing_log: ProcessingLog,
    /// The table's current rows, for pull queries.
    pub materialized: Option<Arc<super::materialized::Materialized>>,
    pub delivery: Delivery,
    /// The state's changelog topic (persistent queries, see [`changelog_topic`]).
    pub changelog: Option<String>,
    /// Writes a persistent query's output, changelog and positions (set by `run`).
    pub producer: Option<TransactionalProducer>,
}

/// How many changed groups a flush encodes and sends at once.
const FLUSH_CHUNK_GROUPS: usize = 4096;

/// The changelog topic of a persistent aggregation's state, named as ksqlDB names it (with
/// ksqlDB's default service id).
pub fn changelog_topic(query_id: &str) -> String {
    format!("_confluent-ksql-default_query_{query_id}-Aggregate-Aggregate-Materialize-changelog")
}

impl AggregateTask {
    fn fail(&self, what: &str, error: &dyn std::fmt::Display) -> String {
        format!("{}: {what}: {error}", self.spec.id)
    }

    pub async fn run(mut self) -> Result<(), String> {
        let mut aggregation = Aggregation::new(self.plan.clone())
            .map_err(|e| self.fail("starting the aggregation", &e))?;
        if matches!(self.delivery, Delivery::Sink) {
            // Fences a producer the query had before a restart, aborting what it left open.
            let producer =
                TransactionalProducer::new(self.log.clone(), &format!("riffle-{}", self.spec.id))
                    .await
                    .map_err(|e| self.fail("registering the query's producer", &e))?;
            self.producer = Some(producer);
        }
        self.restore(&mut aggregation).await?;
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        let coalesced = match self.plan.emission {
            Emission::PerRecord => None,
            Emission::Coalesced {
                cache_bytes,
                commit_interval,
            } => Some((cache_bytes, commit_interval)),
        };
        // Coalesced emission: what was read since the last flush is neither delivered nor
        // committed until the flush; `held` are the changes that are not groups' rows
        // (EMIT FINAL rows, the tombstones of merged sessions), delivered with it.
        let mut unflushed = false;
        let mut held: Vec<Changes> = Vec::new();
        let mut last_flush = Instant::now();
        loop {
            if unflushed && *self.state.borrow() != QueryState::Running {
                if !self.flush(&mut aggregation, &mut held).await? {
                    return Ok(());
                }
                unflushed = false;
            }
            if !until_running(&mut self.state).await {
                return Ok(());
            }
            let mut read_any = false;
            for &partition in &partitions {
                let offset = self.positions[&partition];
                let request = read_committed(&self.spec.source.topic, partition, offset);
                let response = self
                    .log
                    .fetch(&request)
                    .await
                    .map_err(|e| self.fail("reading the source", &e))?;
                if response.next_offset == offset {
                    continue;
                }
                read_any = true;
                let (records, fatal) =
                    super::until_fatal(&self.decoder, &response.records, partition);
                let changes = self.fold(&mut aggregation, records, partition, true);
                let next = fatal.as_ref().map_or(response.next_offset, |e| e.offset);
                self.positions.insert(partition, next);
                if coalesced.is_some() {
                    held.extend(changes);
                    unflushed = true;
                } else if !self.complete(&mut aggregation, &changes).await? {
                    return Ok(());
                }
                if let Some(error) = fatal {
                    if unflushed {
                        self.flush(&mut aggregation, &mut held).await?;
                    }
                    return Err(format!("{}: {}", self.spec.id, error.message));
                }
            }
            if let Some((cache_bytes, commit_interval)) = coalesced
                && unflushed
                && (!read_any
                    || aggregation.cached_bytes() >= cache_bytes
                    || last_flush.elapsed() >= commit_interval)
            {
                if !self.flush(&mut aggregation, &mut held).await? {
                    return Ok(());
                }
                unflushed = false;
                last_flush = Instant::now();
                continue;
            }
            if !read_any && !self.wait_for_records(&partitions).await? {
                return Ok(());
            }
        }
    }

    /// Coalesced emission: completes the held changes and the changed groups' latest rows,
    /// a chunk of groups at a time (so a large cache never has all its rows encoded at
    /// once); `false` once a subscriber is done.
    async fn flush(
        &mut self,
        aggregation: &mut Aggregation,
        held: &mut Vec<Changes>,
    ) -> Result<bool, String> {
        let held = std::mem::take(held);
        if !self.send(aggregation, &held).await? {
            return Ok(false);
        }
        let mut changed = aggregation.take_changed();
        while !changed.is_empty() {
            let chunk: Vec<u32> = changed
                .drain(..changed.len().min(FLUSH_CHUNK_GROUPS))
                .collect();
            let rows = aggregation
                .flush_groups(chunk)
                .map_err(|e| self.fail("emitting the changed groups", &e))?;
            // No one record caused a flushed row.
            for (_, error) in &rows.errors {
                tracing::warn!(query = %self.spec.id, %error, "emitting a changed group");
            }
            if !self.send(aggregation, &[rows]).await? {
                return Ok(false);
            }
        }
        aggregation.end_flush();
        self.complete(aggregation, &[]).await
    }

    /// Sends changes and moves the query's positions on: see [`AggregateTask::send`] and
    /// [`AggregateTask::commit`].
    async fn complete(
        &mut self,
        aggregation: &mut Aggregation,
        changes: &[Changes],
    ) -> Result<bool, String> {
        if !self.send(aggregation, changes).await? {
            return Ok(false);
        }
        self.commit().await?;
        Ok(true)
    }

    /// Sends changes where they go: rows to a subscriber (`false` once its `LIMIT` is
    /// reached or it is gone); or, into the open transaction, records to the sink topic and
    /// the state's changes to the changelog (the materialized rows follow at once).
    async fn send(
        &mut self,
        aggregation: &mut Aggregation,
        changes: &[Changes],
    ) -> Result<bool, String> {
        if let Delivery::Subscriber { rows, remaining } = &mut self.delivery {
            for change in changes {
                if !send_rows(change, rows, remaining).await {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let records = self.to_records(changes);
        let state = aggregation
            .changelog_records()
            .map_err(|e| self.fail("writing the state", &e))?;
        let mut producer = self
            .producer
            .take()
            .ok_or_else(|| self.fail("writing", &"internal: no producer"))?;
        let written = async {
            if let Some(topic) = &self.spec.sink_topic {
                producer.send(topic, records).await?;
            }
            if let Some(topic) = &self.changelog {
                producer.send(topic, state).await?;
            }
            Ok::<(), LogError>(())
        }
        .await;
        self.producer = Some(producer);
        written.map_err(|e| self.fail("writing the output and state", &e))?;
        Ok(true)
    }

    /// Commits what was sent with the positions reached, atomically (a persistent query's),
    /// and reports the positions as the query's progress.
    async fn commit(&mut self) -> Result<(), String> {
        let offsets = GroupOffsets {
            group: self.spec.id.clone(),
            offsets: self
                .positions
                .iter()
                .map(|(&partition, &offset)| TopicPartitionOffset {
                    topic: self.spec.source.topic.clone(),
                    partition,
                    offset,
                })
                .collect(),
        };
        let committed = match &mut self.producer {
            Some(producer) => producer.commit(Some(offsets)).await,
            None => Ok(()),
        };
        committed.map_err(|e| self.fail("committing the output, state and position", &e))?;
        self.report_progress();
        Ok(())
    }

    /// Reports the positions reached as the query's progress.
    fn report_progress(&self) {
        self.progress.send_modify(|progress| {
            progress.extend(self.positions.iter().map(|(p, o)| ((0, *p), *o)));
        });
    }

    /// Waits (at most a second) until a partition has records or the query's state
    /// changes; `false` when the query is gone.
    async fn wait_for_records(&mut self, partitions: &[i32]) -> Result<bool, String> {
        let waits = partitions.iter().map(|partition| {
            Box::pin(self.log.wait_for_data(
                &self.spec.source.topic,
                *partition,
                self.positions[partition],
                IsolationLevel::ReadCommitted,
                Duration::from_secs(1),
            ))
        });
        let any = futures_util::future::select_all(waits);
        tokio::select! {
            (waited, _, _) = any => {
                waited.map_err(|e| format!("{}: waiting for records: {e}", self.spec.id))?;
                Ok(true)
            }
            changed = self.state.changed() => Ok(changed.is_ok()),
        }
    }

    /// Brings back the state the query had when it stopped: from the changelog when it has
    /// a usable one, else by re-reading the source (then the whole state is written to the
    /// changelog at once, so the next start reads it from there).
    async fn restore(&mut self, aggregation: &mut Aggregation) -> Result<(), String> {
        let Some(topic) = self.changelog.clone() else {
            return self.rebuild(aggregation).await;
        };
        let has_codec = aggregation
            .with_changelog()
            .map_err(|e| self.fail("starting the changelog", &e))?;
        if !has_codec {
            tracing::info!(
                query = %self.spec.id,
                "the state holds values without a changelog format: it is rebuilt from the \
                 source at each start"
            );
            self.changelog = None;
            return self.rebuild(aggregation).await;
        }
        let existed = ensure_changelog(&*self.log, &topic)
            .await
            .map_err(|e| self.fail("creating the changelog", &e))?;
        let fresh = self
            .positions
            .iter()
            .all(|(partition, offset)| self.origins.get(partition).is_none_or(|o| o == offset));
        if existed {
            let entries = read_changelog(&*self.log, &topic)
                .await
                .map_err(|e| self.fail("reading the changelog", &e))?;
            let restored = aggregation
                .restore(&entries)
                .map_err(|e| self.fail("restoring the state", &e))?;
            if restored {
                let rows = aggregation
                    .current_rows()
                    .map_err(|e| self.fail("restoring the state", &e))?;
                let _ = self.to_records(&[rows]);
                return Ok(());
            }
            if !entries.is_empty() {
                tracing::info!(
                    query = %self.spec.id,
                    "the changelog was written by another version or plan: the state is \
                     rebuilt from the source"
                );
                self.log
                    .delete_topic(&topic)
                    .await
                    .map_err(|e| self.fail("replacing the changelog", &e))?;
                ensure_changelog(&*self.log, &topic)
                    .await
                    .map_err(|e| self.fail("replacing the changelog", &e))?;
            }
        }
        if fresh {
            return Ok(());
        }
        self.rebuild(aggregation).await?;
        aggregation.mark_all_changed();
        self.complete(aggregation, &[]).await?;
        Ok(())
    }

    /// Reads the records processed before a restart into the state, writing nothing.
    async fn rebuild(&self, aggregation: &mut Aggregation) -> Result<(), String> {
        for (&partition, &until) in &self.positions {
            let from = self.origins.get(&partition).copied().unwrap_or(until);
            let at = (self.spec.source.topic.as_str(), partition);
            super::replay(&*self.log, at, from, until, |records| {
                let changes = self.fold(aggregation, records, partition, false);
                // Nothing is written; the records' keys are what the materialized rows need.
                let _ = self.to_records(&changes);
            })
            .await
            .map_err(|e| self.fail("rebuilding the state", &e))?;
        }
        if self.plan.emission.coalesces() {
            let changes = aggregation
                .flush()
                .map_err(|e| self.fail("rebuilding the state", &e))?;
            let _ = self.to_records(&[changes]);
        }
        Ok(())
    }

    /// Folds records into the state; answers the changes. Failures are logged when `log`
    /// (a rebuild has logged them before).
    fn fold(
        &self,
        aggregation: &mut Aggregation,
        records: &[Record],
        partition: i32,
        log: bool,
    ) -> Vec<Changes> {
        let mut all = Vec::new();
        let over_table = self.spec.source.kind == SourceKind::Table;
        for (run, keyed, valued) in super::presence_runs(records) {
            match (keyed, valued) {
                // A record without a value means nothing to a stream's aggregation; to a
                // table's, it deletes its key. A table's record without a key is dropped.
                (false, false) => {}
                (_, false) if !over_table => {}
                (false, _) if over_table => {}
                (true, false) => {
                    let deletes: Vec<(&[u8], i64)> = run
                        .iter()
                        .map(|r| (r.key.as_deref().unwrap_or_default(), r.timestamp))
                        .collect();
                    match aggregation.delete(&deletes) {
                        Ok(changes) => {
                            for (row, message) in changes.errors.iter().filter(|_| log) {
                                let offset = run.get(*row).map_or(-1, |r| r.offset);
                                self.log_aggregate_error(partition, offset, message);
                            }
                            all.push(changes);
                        }
                        Err(error) => tracing::warn!(
                            query = %self.spec.id, %error, "a table's deletes failed"
                        ),
                    }
                }
                (_, true) => {
                    let (batch, errors) = self.decoder.decode(run, partition);
                    if log {
                        for error in errors {
                            self.processing_log.record(&self.spec.id, error);
                        }
                    }
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let keys: Option<Vec<&[u8]>> = over_table.then(|| {
                        (0..batch.num_rows())
                            .map(|row| {
                                let offset = offset_of(&batch, row);
                                run.binary_search_by_key(&offset, |r| r.offset)
                                    .ok()
                                    .and_then(|at| run[at].key.as_deref())
                                    .unwrap_or_default()
                            })
                            .collect()
                    });
                    self.fold_batch(
                        aggregation,
                        &batch,
                        (keys.as_deref(), run),
                        partition,
                        log,
                        &mut all,
                    );
                }
            }
        }
        all
    }

    /// Folds decoded rows (a table's with their keys) of the records `run`; a batch that
    /// fails is folded row by row, and the rows that fail are logged.
    fn fold_batch(
        &self,
        aggregation: &mut Aggregation,
        batch: &RecordBatch,
        (keys, run): (Option<&[&[u8]]>, &[Record]),
        partition: i32,
        log: bool,
        all: &mut Vec<Changes>,
    ) {
        let with_headers = run.iter().any(|record| !record.headers.is_empty());
        let process = |aggregation: &mut Aggregation, from: usize, rows: usize| {
            let slice = batch.slice(from, rows);
            let mut changes = match keys {
                Some(keys) => aggregation.process_table(&slice, &keys[from..from + rows]),
                None => aggregation.process(&slice),
            }?;
            if with_headers {
                changes.headers = changes
                    .input_rows
                    .iter()
                    .map(|row| super::headers_at(run, offset_of(batch, from + row)))
                    .collect();
            }
            Ok::<_, crate::plan::PlanError>(changes)
        };
        let report = |row: usize, message: &dyn std::fmt::Display| {
            if log {
                self.log_aggregate_error(partition, offset_of(batch, row), message);
            }
        };
        let mut folded = |aggregation: &mut Aggregation, from: usize, rows: usize| {
            // An error leaves the state as it was.
            let changes = process(aggregation, from, rows)?;
            for (row, message) in &changes.errors {
                report(from + row, message);
            }
            all.push(changes);
            Ok::<_, crate::plan::PlanError>(())
        };
        if folded(aggregation, 0, batch.num_rows()).is_ok() {
            return;
        }
        for row in 0..batch.num_rows() {
            if let Err(error) = folded(aggregation, row, 1) {
                report(row, &error);
            }
        }
    }

    /// Notes in the processing log a record the aggregation failed on.
    fn log_aggregate_error(&self, partition: i32, offset: i64, message: &dyn std::fmt::Display) {
        self.processing_log.record(
            &self.spec.id,
            RecordError {
                topic: self.spec.source.topic.clone(),
                partition,
                offset,
                message: format!("Error computing the aggregate: {message}"),
                fatal: false,
            },
        );
    }

    /// The sink records of the changes, applied to the materialized rows too.
    fn to_records(&self, changes: &[Changes]) -> Vec<ProducerRecord> {
        let mut out = Vec::new();
        for change in changes {
            let records = self.encode(change);
            if let Some(table) = &self.materialized {
                table.apply(
                    &change.output,
                    &change.timestamps,
                    &change.windows,
                    &records,
                );
            }
            out.extend(records);
        }
        out
    }

    /// The sink records of the changes: the key (with its window, for windowed tables),
    /// the value or a tombstone, and the group's time.
    fn encode(&self, changes: &Changes) -> Vec<ProducerRecord> {
        let times: ArrayRef = Arc::new(changes.timestamps.clone());
        let mut records = self.spec.encoder.encode(&changes.output, &times);
        for (i, record) in records.iter_mut().enumerate() {
            if changes.tombstones[i] {
                record.value = None;
            }
            if let Some(headers) = changes.headers.get(i) {
                record.headers = headers.clone();
            }
            if let Some((start, end)) = changes.windows[i] {
                self.spec.encoder.window_record(record, start, end);
            }
        }
        records
    }
}

/// Sends a change's rows (not its tombstones) to a subscriber, within what its `LIMIT`
/// leaves; `false` once the limit is reached or the subscriber is gone.
async fn send_rows(
    changes: &Changes,
    subscriber: &tokio::sync::mpsc::Sender<super::transient::Rows>,
    remaining: &mut usize,
) -> bool {
    let keep =
        arrow::array::BooleanArray::from(changes.tombstones.iter().map(|t| !t).collect::<Vec<_>>());
    let Ok(rows) = arrow::compute::filter_record_batch(&changes.output, &keep) else {
        return true;
    };
    let take = rows.num_rows().min(*remaining);
    if take > 0 {
        *remaining -= take;
        if subscriber
            .send(super::transient::Rows::new(rows.slice(0, take)))
            .await
            .is_err()
        {
            return false;
        }
    }
    *remaining > 0
}

fn offset_of(batch: &RecordBatch, row: usize) -> i64 {
    batch
        .column_by_name("ROWOFFSET")
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .cloned()
        })
        .filter(|offsets| offsets.is_valid(row))
        .map_or(-1, |offsets| offsets.value(row))
}
