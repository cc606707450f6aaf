//! Transient queries: push queries (`SELECT … EMIT CHANGES`) that stream rows to one
//! subscriber until it goes away or a `LIMIT` is reached, and pull queries over streams
//! that read each partition up to its end at the time of the query.
//!
//! Entry point: [`TransientQuery::start`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};

use super::{ProcessingLog, Read, StartPosition, evaluate_rows, read_for_subscriber};
use crate::catalog::Source;
use crate::log::{Log, LogError};
use crate::plan::StatelessPlan;
use crate::runtime::{RecordError, SourceDecoder};

/// Whether a transient query follows its source or reads what is there now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Push,
    Pull,
}

/// Rows of a transient query's output: new rows, or (a push query over a table) tombstones,
/// the rows of deleted keys (key columns set, the rest NULL).
#[derive(Debug, Clone)]
pub struct Rows {
    pub batch: RecordBatch,
    pub tombstones: bool,
}

impl Rows {
    pub fn new(batch: RecordBatch) -> Rows {
        Rows {
            batch,
            tombstones: false,
        }
    }
}

/// The state a push query keeps, when it keeps some.
#[derive(Debug, Clone)]
pub enum StatefulPlan {
    Aggregate(Arc<crate::plan::aggregate::AggregatePlan>),
    Join(Arc<crate::plan::join::JoinPlan>),
    /// Aggregating joined rows: as the persistent query does, the join writes its rows to
    /// an internal topic that the aggregation reads; the topic goes with the query.
    JoinAggregate(Arc<super::JoinAggregatePlan>),
}

/// A running transient query: rows arrive on [`TransientQuery::next_rows`].
#[derive(Debug)]
pub struct TransientQuery {
    pub id: String,
    pub schema: SchemaRef,
    /// A pull query over a table: its key columns (headers mark them `KEY`), and it ends
    /// without a final message.
    pub table_keys: Option<Vec<String>>,
    /// A pull query over a table with header columns: each one's name and how it is
    /// declared (`HEADER('k')`, `HEADERS`), which its header lists after the key columns.
    pub table_headers: Vec<(String, String)>,
    rows: mpsc::Receiver<Rows>,
    stop: Arc<watch::Sender<bool>>,
}

/// Closes a transient query from elsewhere (`/close-query`).
#[derive(Debug, Clone)]
pub struct QueryCloser(Arc<watch::Sender<bool>>);

impl QueryCloser {
    pub fn close(&self) {
        let _ = self.0.send(true);
    }
}

impl TransientQuery {
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        log: Arc<dyn Log>,
        id: String,
        source: Source,
        plan: StatelessPlan,
        mode: Mode,
        start: StartPosition,
        limit: Option<u64>,
        processing_log: ProcessingLog,
    ) -> Result<TransientQuery, LogError> {
        let partitions = log.describe_topic(&source.topic).await?.partitions;
        let (sender, rows) = mpsc::channel(16);
        let (stop, stopped) = watch::channel(false);
        let remaining =
            Arc::new(AtomicUsize::new(limit.map_or(usize::MAX, |l| {
                usize::try_from(l).unwrap_or(usize::MAX)
            })));
        let decoder = Arc::new(SourceDecoder::new(source.clone()));
        let plan = Arc::new(plan);
        let schema = plan.output_schema.clone();
        for partition in partitions {
            let from = match (mode, start) {
                (Mode::Pull, _) | (_, StartPosition::Earliest) => partition.start_offset,
                (Mode::Push, StartPosition::Latest) => partition.end_offset,
            };
            let until = (mode == Mode::Pull).then_some(partition.end_offset);
            let task = TransientTask {
                log: log.clone(),
                id: id.clone(),
                topic: source.topic.clone(),
                partition: partition.partition,
                offset: from,
                until,
                decoder: decoder.clone(),
                plan: plan.clone(),
                sender: sender.clone(),
                over_table: source.kind == riffle_grammar::ast::SourceKind::Table,
                stopped: stopped.clone(),
                remaining: remaining.clone(),
                processing_log: processing_log.clone(),
            };
            spawn_logged(task.run(), "a transient query's partition stopped");
        }
        Ok(TransientQuery::streaming(id, schema, rows, stop))
    }

    /// A query whose rows arrive on `rows` until `stop` is sent `true`.
    fn streaming(
        id: String,
        schema: SchemaRef,
        rows: mpsc::Receiver<Rows>,
        stop: watch::Sender<bool>,
    ) -> TransientQuery {
        TransientQuery {
            id,
            schema,
            table_keys: None,
            table_headers: Vec::new(),
            rows,
            stop: Arc::new(stop),
        }
    }

    /// A push query that keeps state (`GROUP BY`, joins): one task over every partition
    /// of its sources, whose rows stream to the subscriber.
    pub async fn start_stateful(
        log: Arc<dyn Log>,
        spec: super::QuerySpec,
        plan: StatefulPlan,
        limit: Option<u64>,
        processing_log: ProcessingLog,
    ) -> Result<TransientQuery, LogError> {
        let (sender, rows) = mpsc::channel(16);
        let (stop, stopped) = watch::channel(false);
        let state = follow_stop(stopped);
        let remaining = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let id = spec.id.clone();
        let schema = match plan {
            StatefulPlan::Aggregate(plan) => {
                let schema = plan.output_schema.clone();
                spawn_aggregate(log, spec, plan, state, (sender, remaining), processing_log)
                    .await?;
                schema
            }
            StatefulPlan::Join(plan) => {
                let schema = plan.output.output_schema.clone();
                let subscriber = Some((sender, remaining));
                spawn_join(log, spec, plan, state, subscriber, processing_log).await?;
                schema
            }
            StatefulPlan::JoinAggregate(plan) => {
                let schema = plan.aggregate.output_schema.clone();
                let topic = plan.joined.topic.clone();
                // A topic left by a query of the same id before a crash holds stale rows.
                match log.delete_topic(&topic).await {
                    Ok(()) | Err(LogError::UnknownTopic(_)) => {}
                    Err(error) => return Err(error),
                }
                log.create_topic(&topic, crate::log::TopicConfig::new(1))
                    .await?;
                let join_spec = super::QuerySpec {
                    plan: super::QueryPlan::Join(plan.join.clone()),
                    sink_topic: Some(topic.clone()),
                    encoder: plan.join_encoder.clone(),
                    ..spec.clone()
                };
                let aggregate_spec = super::QuerySpec {
                    source: plan.joined.clone(),
                    plan: super::QueryPlan::Aggregate(plan.aggregate.clone()),
                    start: StartPosition::Earliest,
                    ..spec
                };
                // The join runs until the aggregation ends (stopped, at its LIMIT, or
                // its subscriber gone).
                let (stop_join, join_state) = watch::channel(super::QueryState::Running);
                let join = spawn_join(
                    log.clone(),
                    join_spec,
                    plan.join.clone(),
                    join_state,
                    None,
                    processing_log.clone(),
                )
                .await?;
                // Held until the topic is gone: the subscriber sees the end after it.
                let end = sender.clone();
                let aggregate = spawn_aggregate(
                    log.clone(),
                    aggregate_spec,
                    plan.aggregate.clone(),
                    state,
                    (sender, remaining),
                    processing_log,
                )
                .await?;
                tokio::spawn(async move {
                    let _ = aggregate.await;
                    stop_join.send_replace(super::QueryState::Stopped);
                    let _ = join.await;
                    if let Err(error) = log.delete_topic(&topic).await {
                        tracing::warn!(%topic, %error, "a push query's internal topic stays");
                    }
                    drop(end);
                });
                schema
            }
        };
        Ok(TransientQuery::streaming(id, schema, rows, stop))
    }

    /// A query whose rows are all known already (a pull query over a table).
    pub fn finished(
        id: String,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        table_keys: Vec<String>,
        table_headers: Vec<(String, String)>,
    ) -> TransientQuery {
        let (sender, rows) = mpsc::channel(batches.len().max(1));
        for batch in batches {
            if batch.num_rows() > 0 {
                // The channel holds every batch: sending cannot fail or wait.
                let _ = sender.try_send(Rows::new(batch));
            }
        }
        let (stop, _) = watch::channel(false);
        TransientQuery {
            id,
            schema,
            table_keys: Some(table_keys),
            table_headers,
            rows,
            stop: Arc::new(stop),
        }
    }

    /// The next rows; `None` once the query is complete (pull, or a reached `LIMIT`).
    pub async fn next_rows(&mut self) -> Option<Rows> {
        self.rows.recv().await
    }

    /// The next new rows, tombstones left out.
    pub async fn next_batch(&mut self) -> Option<RecordBatch> {
        loop {
            let rows = self.rows.recv().await?;
            if !rows.tombstones {
                return Some(rows.batch);
            }
        }
    }

    /// Stops the query (the subscriber went away).
    pub fn close(&self) {
        let _ = self.stop.send(true);
    }

    /// A handle that stops this query, for whoever else may end it.
    pub fn closer(&self) -> QueryCloser {
        QueryCloser(self.stop.clone())
    }
}

impl Drop for TransientQuery {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs a query task; an error that stops it is logged.
fn spawn_logged<E: std::fmt::Display>(
    task: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = task.await {
            tracing::warn!(%error, "{what}");
        }
    })
}

/// Starts a push query's aggregation over every partition of its source, its rows for
/// the subscriber (with how many it still wants).
async fn spawn_aggregate(
    log: Arc<dyn Log>,
    spec: super::QuerySpec,
    plan: Arc<crate::plan::aggregate::AggregatePlan>,
    state: watch::Receiver<super::QueryState>,
    (rows, remaining): (mpsc::Sender<Rows>, usize),
    processing_log: ProcessingLog,
) -> Result<tokio::task::JoinHandle<()>, LogError> {
    let partitions = log.describe_topic(&spec.source.topic).await?.partitions;
    let positions: std::collections::BTreeMap<i32, i64> = partitions
        .iter()
        .map(|p| {
            let from = match spec.start {
                StartPosition::Earliest => p.start_offset,
                StartPosition::Latest => p.end_offset,
            };
            (p.partition, from)
        })
        .collect();
    let progress = positions.iter().map(|(p, o)| ((0, *p), *o)).collect();
    let task = super::aggregate::AggregateTask {
        log,
        decoder: Arc::new(spec.decoder(&spec.source)),
        spec,
        plan,
        origins: positions.clone(),
        positions,
        state,
        progress: Arc::new(watch::channel(progress).0),
        processing_log,
        materialized: None,
        delivery: super::aggregate::Delivery::Subscriber { rows, remaining },
        changelog: None,
        producer: None,
    };
    Ok(spawn_logged(
        task.run(),
        "a push query's aggregation stopped",
    ))
}

/// Starts a push query's join over every partition of its sources: its rows go to the
/// subscriber, or (without one) to the spec's sink topic.
async fn spawn_join(
    log: Arc<dyn Log>,
    spec: super::QuerySpec,
    plan: Arc<crate::plan::join::JoinPlan>,
    state: watch::Receiver<super::QueryState>,
    subscriber: Option<(mpsc::Sender<Rows>, usize)>,
    processing_log: ProcessingLog,
) -> Result<tokio::task::JoinHandle<()>, LogError> {
    let mut positions = Vec::new();
    let mut progress = super::Progress::new();
    for (input, source) in plan.inputs.iter().enumerate() {
        let none = Default::default();
        let starts = super::join_starts(&*log, &source.source, spec.start, &none).await?;
        progress.extend(starts.iter().map(|(p, o)| ((input, *p), *o)));
        positions.push(starts);
    }
    let producer_id = format!("riffle-{}-join", spec.id);
    let task = super::join::JoinTask {
        log,
        spec,
        plan,
        origins: positions.clone(),
        positions,
        state,
        progress: Arc::new(watch::channel(progress).0),
        processing_log,
        subscriber,
        producer_id,
        changelog: None,
    };
    Ok(spawn_logged(task.run(), "a push query's join stopped"))
}

struct TransientTask {
    log: Arc<dyn Log>,
    id: String,
    topic: String,
    partition: i32,
    offset: i64,
    until: Option<i64>,
    decoder: Arc<SourceDecoder>,
    plan: Arc<StatelessPlan>,
    sender: mpsc::Sender<Rows>,
    /// The source is a table: a record without a value is a tombstone row.
    over_table: bool,
    stopped: watch::Receiver<bool>,
    remaining: Arc<AtomicUsize>,
    processing_log: ProcessingLog,
}

impl TransientTask {
    async fn run(mut self) -> Result<(), LogError> {
        loop {
            if *self.stopped.borrow() || self.remaining.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            if self.until.is_some_and(|end| self.offset >= end) {
                return Ok(());
            }
            let at = (self.topic.as_str(), self.partition, self.offset);
            let response =
                match read_for_subscriber(&*self.log, at, &mut self.stopped, &self.sender).await? {
                    Read::Records(response) => response,
                    // A pull query ends at the end it saw when it started.
                    Read::Nothing if self.until.is_some() => return Ok(()),
                    Read::Nothing => continue,
                    Read::Cancelled => return Ok(()),
                };
            let records: Vec<_> = match self.until {
                Some(end) => response
                    .records
                    .into_iter()
                    .filter(|r| r.offset < end)
                    .collect(),
                None => response.records,
            };
            self.offset = response.next_offset;
            if self.over_table {
                if !self.send_table_changes(&records).await {
                    return Ok(());
                }
                continue;
            }
            if !self.send_rows(&records).await {
                return Ok(());
            }
        }
    }

    /// A table's records in order: runs of upserts (through the plan), and tombstones
    /// (their key columns, NULL values). Records without a key are dropped. `false` once
    /// the subscriber is gone or the `LIMIT` is reached.
    async fn send_table_changes(&mut self, records: &[crate::log::Record]) -> bool {
        for (run, keyed, valued) in super::presence_runs(records) {
            match (keyed, valued) {
                (false, _) => {}
                (true, true) => {
                    if !self.send_rows(run).await {
                        return false;
                    }
                }
                (true, false) => {
                    let (batch, _) = self.decoder.decode(run, self.partition);
                    let tombstones = Rows {
                        batch: tombstone_rows(&self.plan, &batch),
                        tombstones: true,
                    };
                    if !self.send(tombstones).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Runs the plan on records and sends the rows; `false` once the subscriber is gone or
    /// the `LIMIT` is reached.
    async fn send_rows(&mut self, records: &[crate::log::Record]) -> bool {
        let (batch, errors) = self.decoder.decode(records, self.partition);
        for error in errors {
            self.processing_log.record(&self.id, error);
        }
        if batch.num_rows() == 0 {
            return true;
        }
        let partition = self.partition;
        let topic = self.topic.clone();
        let outputs = evaluate_rows(&self.plan, &batch, |_, message| {
            self.processing_log.record(
                &self.id,
                RecordError {
                    topic: topic.clone(),
                    partition,
                    offset: -1,
                    message,
                    fatal: false,
                },
            );
        });
        for (_, output) in outputs {
            if !self.send(Rows::new(output)).await {
                return false;
            }
        }
        true
    }

    /// Sends rows, within what the `LIMIT` still allows; `false` once nothing more may be
    /// sent.
    async fn send(&self, rows: Rows) -> bool {
        if rows.batch.num_rows() == 0 {
            return true;
        }
        let Some(batch) = self.take_within_limit(rows.batch) else {
            return false;
        };
        let rows = Rows { batch, ..rows };
        self.sender.send(rows).await.is_ok()
    }

    /// Cuts a batch to what the `LIMIT` still allows; `None` when nothing is left.
    fn take_within_limit(&self, output: RecordBatch) -> Option<RecordBatch> {
        let wanted = output.num_rows();
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                granted = left.min(wanted);
                Some(left - granted)
            });
        (granted > 0).then(|| output.slice(0, granted))
    }
}

/// The output rows of deleted table keys: each column that copies an input column (the key
/// columns, the window bounds) takes its value; the rest are NULL.
fn tombstone_rows(plan: &StatelessPlan, decoded: &RecordBatch) -> RecordBatch {
    let rows = decoded.num_rows();
    let columns = plan
        .projection
        .iter()
        .zip(plan.output_schema.fields())
        .map(|(column, field)| {
            column
                .source_column
                .as_ref()
                .and_then(|name| decoded.column_by_name(name))
                .and_then(|array| arrow::compute::cast(array, field.data_type()).ok())
                .unwrap_or_else(|| arrow::array::new_null_array(field.data_type(), rows))
        })
        .collect();
    RecordBatch::try_new_with_options(
        plan.output_schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .unwrap_or_else(|_| RecordBatch::new_empty(plan.output_schema.clone()))
}

/// A query state for a task that follows a transient query's stop signal: closing the
/// query stops the task.
fn follow_stop(mut stopped: watch::Receiver<bool>) -> watch::Receiver<super::QueryState> {
    let (state, state_changes) = watch::channel(super::QueryState::Running);
    tokio::spawn(async move {
        while stopped.changed().await.is_ok() {
            if *stopped.borrow() {
                break;
            }
        }
        state.send_replace(super::QueryState::Stopped);
    });
    state_changes
}
