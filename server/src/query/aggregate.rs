//! A persistent aggregation: one task reads every partition of the source (a group's rows
//! may sit in any of them), folds records into the [`Aggregation`] state, and writes each
//! change to the sink table's topic, then commits its position.
//!
//! At start the state is rebuilt by reading the source again from where the query first
//! started up to its committed position, without writing anything; then the query goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, RecordBatch};
use tokio::sync::watch;

use super::{ProcessingLog, QuerySpec, QueryState, read_committed, until_running};
use crate::log::{Acks, IsolationLevel, Log, ProducerRecord, Record, TopicPartitionOffset};
use crate::plan::aggregate::{AggregatePlan, Emission};
use crate::runtime::aggregate::{Aggregation, Changes, windowed_key};
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
    pub progress: Arc<watch::Sender<BTreeMap<i32, i64>>>,
    pub processing_log: ProcessingLog,
    /// The table's current rows, for pull queries.
    pub materialized: Option<Arc<super::materialized::Materialized>>,
    pub delivery: Delivery,
}

impl AggregateTask {
    fn fail(&self, what: &str, error: &dyn std::fmt::Display) -> String {
        format!("{}: {what}: {error}", self.spec.id)
    }

    pub async fn run(mut self) -> Result<(), String> {
        let mut aggregation = Aggregation::new(self.plan.clone())
            .map_err(|e| self.fail("starting the aggregation", &e))?;
        self.rebuild(&mut aggregation).await?;
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
                if !self.flush(&mut aggregation, &mut held, &partitions).await? {
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
                let changes = self.fold(&mut aggregation, &response.records, partition, true);
                self.positions.insert(partition, response.next_offset);
                if coalesced.is_some() {
                    held.extend(changes);
                    unflushed = true;
                    continue;
                }
                if !self.deliver(&changes).await? {
                    return Ok(());
                }
                self.commit(&[partition]).await?;
            }
            if let Some((cache_bytes, commit_interval)) = coalesced
                && unflushed
                && (!read_any
                    || aggregation.cached_bytes() >= cache_bytes
                    || last_flush.elapsed() >= commit_interval)
            {
                if !self.flush(&mut aggregation, &mut held, &partitions).await? {
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

    /// Coalesced emission: delivers the held changes and the changed groups' latest rows,
    /// then commits every partition's position; `false` once a subscriber is done.
    async fn flush(
        &mut self,
        aggregation: &mut Aggregation,
        held: &mut Vec<Changes>,
        partitions: &[i32],
    ) -> Result<bool, String> {
        let flushed = aggregation
            .flush()
            .map_err(|e| self.fail("emitting the changed groups", &e))?;
        let mut changes = std::mem::take(held);
        changes.push(flushed);
        if !self.deliver(&changes).await? {
            return Ok(false);
        }
        self.commit(partitions).await?;
        Ok(true)
    }

    /// Sends changes where they go: rows to a subscriber (`false` once its `LIMIT` is
    /// reached or it is gone), or records to the sink topic and the materialized rows.
    async fn deliver(&mut self, changes: &[Changes]) -> Result<bool, String> {
        if let Delivery::Subscriber { rows, remaining } = &mut self.delivery {
            for change in changes {
                if !send_rows(change, rows, remaining).await {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let records = self.to_records(changes);
        if let Some(topic) = &self.spec.sink_topic
            && !records.is_empty()
        {
            self.log
                .produce(topic, records, Acks::All)
                .await
                .map_err(|e| self.fail("writing to the sink", &e))?;
        }
        Ok(true)
    }

    /// Commits the positions reached in `partitions` (a persistent query's), and reports
    /// them as the query's progress.
    async fn commit(&self, partitions: &[i32]) -> Result<(), String> {
        let offsets: Vec<TopicPartitionOffset> = partitions
            .iter()
            .map(|&partition| TopicPartitionOffset {
                topic: self.spec.source.topic.clone(),
                partition,
                offset: self.positions[&partition],
            })
            .collect();
        if matches!(self.delivery, Delivery::Sink) {
            self.log
                .commit_offsets(&self.spec.id, &offsets)
                .await
                .map_err(|e| self.fail("committing the position", &e))?;
        }
        self.progress.send_modify(|progress| {
            for offset in &offsets {
                progress.insert(offset.partition, offset.offset);
            }
        });
        Ok(())
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
                        Ok(changes) => all.push(changes),
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
                        keys.as_deref(),
                        partition,
                        log,
                        &mut all,
                    );
                }
            }
        }
        all
    }

    /// Folds decoded rows (a table's with their keys); a batch that fails is folded row by
    /// row, and the rows that fail are logged.
    fn fold_batch(
        &self,
        aggregation: &mut Aggregation,
        batch: &RecordBatch,
        keys: Option<&[&[u8]]>,
        partition: i32,
        log: bool,
        all: &mut Vec<Changes>,
    ) {
        let process = |aggregation: &mut Aggregation, from: usize, rows: usize| {
            let batch = batch.slice(from, rows);
            match keys {
                Some(keys) => aggregation.process_table(&batch, &keys[from..from + rows]),
                None => aggregation.process(&batch),
            }
        };
        if let Ok(changes) = process(aggregation, 0, batch.num_rows()) {
            all.push(changes);
            return;
        }
        for row in 0..batch.num_rows() {
            match process(aggregation, row, 1) {
                Ok(changes) => all.push(changes),
                Err(error) if log => self.processing_log.record(
                    &self.spec.id,
                    RecordError {
                        topic: self.spec.source.topic.clone(),
                        partition,
                        offset: offset_of(batch, row),
                        message: format!("Error computing the aggregate: {error}"),
                    },
                ),
                Err(_) => {}
            }
        }
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
            if let (Some((start, end)), Some(kind)) =
                (changes.windows[i], self.plan.windowing.map(|w| w.kind))
            {
                record.key = Some(windowed_key(
                    record.key.as_deref().unwrap_or_default(),
                    kind,
                    start,
                    end,
                ));
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
