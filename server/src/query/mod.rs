//! Persistent queries: one task per source partition that reads records, decodes them,
//! runs the plan, writes the results to the sink topic and commits its position.
//!
//! Delivery is at-least-once: the position is committed after the sink records are
//! acknowledged, so a restart resumes without losing records. Entry point:
//! [`PersistentQuery::start`].

mod aggregate;
mod join;
mod join_inputs;
mod join_state;

pub use aggregate::changelog_topic;
pub mod materialized;
pub mod print;
pub mod transient;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::Source;
use crate::log::{
    Acks, FetchRequest, IsolationLevel, Log, LogError, ProducerRecord, Record, TopicPartitionOffset,
};
use crate::plan::StatelessPlan;
use crate::runtime::{RecordError, SinkEncoder, SourceDecoder};
use riffle_grammar::ast::SourceKind;

/// How far a query has read: the next offset per input (its position among the query's
/// sources) and partition.
pub type Progress = BTreeMap<(usize, i32), i64>;

/// Where a query starts in a partition it has no committed position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
}

/// Records that failed, shared by all queries: ksqlDB's processing log.
///
/// Each entry is written (as JSON) to the processing-log topic, which the engine declares as
/// the stream `KSQL_PROCESSING_LOG`; the latest entries are also kept in memory.
#[derive(Debug, Clone, Default)]
pub struct ProcessingLog {
    recent: Arc<Mutex<std::collections::VecDeque<ProcessingLogEntry>>>,
    /// Shared by every clone, so that [`ProcessingLog::close`] ends the writer for all.
    sink: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<ProcessingLogEntry>>>>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingLogEntry {
    pub query_id: String,
    pub error: RecordError,
}

/// Entries kept in memory; the topic keeps them all.
const RECENT_ENTRIES: usize = 1000;

impl ProcessingLog {
    /// A processing log that also writes every entry to `topic`.
    pub fn with_topic(log: Arc<dyn Log>, topic: String) -> Self {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<ProcessingLogEntry>();
        let writer = tokio::spawn(async move {
            while let Some(entry) = receiver.recv().await {
                let value = serde_json::json!({
                    "LOGGER": format!("processing.{}", entry.query_id),
                    "LEVEL": "ERROR",
                    "TIME": crate::log::embedded::now_millis(),
                    "MESSAGE": {
                        "TYPE": 0,
                        "ERRORMESSAGE": entry.error.message,
                        "TOPIC": entry.error.topic,
                        "PARTITION": entry.error.partition,
                        "OFFSET": entry.error.offset,
                    },
                });
                let record = crate::log::ProducerRecord::new(
                    None::<Vec<u8>>,
                    Some(value.to_string().into_bytes()),
                );
                if let Err(error) = log.produce(&topic, vec![record], Acks::Leader).await {
                    tracing::warn!(%error, "could not write to the processing log topic");
                }
            }
        });
        Self {
            recent: Arc::default(),
            sink: Arc::new(Mutex::new(Some(sender))),
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    /// Stops writing to the topic, after what was recorded so far is written.
    pub async fn close(&self) {
        self.sink.lock().take();
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }

    pub fn record(&self, query_id: &str, error: RecordError) {
        tracing::warn!(
            query = query_id, topic = %error.topic, partition = error.partition,
            offset = error.offset, message = %error.message, "record skipped"
        );
        let entry = ProcessingLogEntry {
            query_id: query_id.to_string(),
            error,
        };
        if let Some(sink) = self.sink.lock().as_ref() {
            let _ = sink.send(entry.clone());
        }
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_ENTRIES {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    /// The latest entries, oldest first.
    pub fn entries(&self) -> Vec<ProcessingLogEntry> {
        self.recent.lock().iter().cloned().collect()
    }
}

/// How a persistent query computes its output.
#[derive(Debug, Clone)]
pub enum QueryPlan {
    /// Filter and project, record by record.
    Stateless(StatelessPlan),
    /// Group and aggregate (maybe in windows): a table.
    Aggregate(Arc<crate::plan::aggregate::AggregatePlan>),
    /// Join sources, then filter and project the joined rows.
    Join(Arc<crate::plan::join::JoinPlan>),
    /// Join sources, then group and aggregate the joined rows: two stages linked by an
    /// internal topic, as ksqlDB repartitions joined rows before grouping them.
    JoinAggregate(Arc<JoinAggregatePlan>),
}

/// The two stages of an aggregation over joined rows.
#[derive(Debug, Clone)]
pub struct JoinAggregatePlan {
    /// The join, its `WHERE` and every joined column (`SELECT *`).
    pub join: Arc<crate::plan::join::JoinPlan>,
    /// How the join stage writes its rows to `joined.topic`.
    pub join_encoder: SinkEncoder,
    /// The joined rows as the aggregation reads them (an internal source, in no catalog).
    pub joined: Source,
    pub aggregate: Arc<crate::plan::aggregate::AggregatePlan>,
}

/// The internal topic between the stages of an aggregation over joined rows, named as
/// ksqlDB names its repartition topic (with ksqlDB's default service id).
pub fn joined_rows_topic(query_id: &str) -> String {
    format!("_confluent-ksql-default_query_{query_id}-Aggregate-GroupBy-repartition")
}

/// Deletes a terminated query's internal topics (an aggregation's changelog, the joined
/// rows an aggregation over a join reads), those it has.
pub async fn delete_internal_topics(log: &dyn Log, query_id: &str) -> Result<(), LogError> {
    for topic in [
        changelog_topic(query_id),
        joined_rows_topic(query_id),
        join_state::join_changelog_topic(query_id),
    ] {
        match log.delete_topic(&topic).await {
            Ok(()) | Err(LogError::UnknownTopic(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

impl QueryPlan {
    /// The input columns the plan reads, by name.
    pub fn used_columns(&self) -> std::collections::HashSet<String> {
        let expressions = match self {
            QueryPlan::Stateless(plan) => plan.input_expressions(),
            QueryPlan::Aggregate(plan) => plan.input_expressions(),
            // Each joined source is decoded whole.
            QueryPlan::Join(_) | QueryPlan::JoinAggregate(_) => Vec::new(),
        };
        expressions
            .iter()
            .flat_map(datafusion::physical_expr::utils::collect_columns)
            .map(|column| column.name().to_string())
            .collect()
    }
}

/// What a persistent query runs.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub id: String,
    /// The statement that started it, as sent.
    pub statement: String,
    /// The stream it writes to.
    pub sink_name: String,
    pub source: Source,
    pub plan: QueryPlan,
    /// Where the results go; `None` for a query that only materializes a source table.
    pub sink_topic: Option<String>,
    pub encoder: SinkEncoder,
    pub start: StartPosition,
    pub options: TaskOptions,
}

/// How a query's tasks treat their input, from the properties it was started with.
#[derive(Debug, Clone, Copy)]
pub struct TaskOptions {
    /// A record without a valid time stops the query (`ksql.timestamp.throw.on.invalid`).
    pub fail_on_invalid_timestamp: bool,
    /// How long a join waits for an input that has no records before it reads ahead in
    /// the others (Kafka Streams' `max.task.idle.ms`; 0, not at all, by default).
    pub max_task_idle: Duration,
    /// A persistent join snapshots its state once at least this many rows were joined
    /// since the last snapshot (and twice the rows it holds): Riffle's
    /// `riffle.join.snapshot.min.rows`.
    pub join_snapshot_rows: usize,
}

/// The default of [`TaskOptions::join_snapshot_rows`].
pub const JOIN_SNAPSHOT_ROWS: usize = 100_000;

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            fail_on_invalid_timestamp: false,
            max_task_idle: Duration::ZERO,
            join_snapshot_rows: JOIN_SNAPSHOT_ROWS,
        }
    }
}

impl QuerySpec {
    /// The decoder of one of the query's sources, with the query's error policy.
    pub(crate) fn decoder(&self, source: &Source) -> SourceDecoder {
        SourceDecoder::new(source.clone())
            .failing_on_invalid_timestamps(self.options.fail_on_invalid_timestamp)
    }
}

impl QuerySpec {
    /// The sources the query reads: its source, and those it joins.
    pub fn inputs(&self) -> Vec<&Source> {
        match &self.plan {
            QueryPlan::Join(plan) => plan.inputs.iter().map(|i| &i.source).collect(),
            QueryPlan::JoinAggregate(plan) => plan.join.inputs.iter().map(|i| &i.source).collect(),
            _ => vec![&self.source],
        }
    }

    /// Whether the query reads the source of this name.
    pub fn reads(&self, name: &str) -> bool {
        self.inputs().iter().any(|s| s.name == name)
    }
}

/// Whether a persistent query's tasks read their source (`PAUSE` and `RESUME` switch it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryState {
    Running,
    Paused,
    Stopped,
    /// A task stopped on an error (never sent to the tasks; see [`PersistentQuery::state`]).
    Error,
}

impl QueryState {
    /// ksqlDB's name for the state (`SHOW QUERIES`, `EXPLAIN`).
    pub fn name(self) -> &'static str {
        match self {
            QueryState::Running => "RUNNING",
            QueryState::Paused => "PAUSED",
            QueryState::Stopped => "TERMINATED",
            QueryState::Error => "ERROR",
        }
    }
}

/// A persistent query: its tasks run until it is stopped, and idle while it is paused.
#[derive(Debug)]
pub struct PersistentQuery {
    pub spec: QuerySpec,
    state: watch::Sender<QueryState>,
    /// The next offset to read, per source partition.
    progress: watch::Receiver<Progress>,
    /// The first error that stopped a partition's task, if any.
    failure: Arc<Mutex<Option<String>>>,
    /// A table's current rows (aggregations), for pull queries.
    materialized: Option<Arc<materialized::Materialized>>,
    tasks: Vec<JoinHandle<()>>,
    /// An aggregation over joined rows runs as two queries (see [`QueryPlan::JoinAggregate`]);
    /// this one then only stands for them.
    stages: Option<Stages>,
}

/// The join stage and the aggregation stage of an aggregation over joined rows.
#[derive(Debug)]
struct Stages {
    log: Arc<dyn Log>,
    join: Box<PersistentQuery>,
    aggregate: Box<PersistentQuery>,
}

impl PersistentQuery {
    /// Starts the query's tasks in `initial` state (`Paused` makes them wait for
    /// [`PersistentQuery::set_state`]).
    pub async fn start(
        log: Arc<dyn Log>,
        spec: QuerySpec,
        processing_log: ProcessingLog,
        initial: QueryState,
    ) -> Result<PersistentQuery, LogError> {
        match &spec.plan {
            QueryPlan::Join(plan) => {
                let plan = plan.clone();
                let producer_id = format!("riffle-{}", spec.id);
                return Self::start_join(log, spec, plan, processing_log, initial, producer_id)
                    .await;
            }
            QueryPlan::JoinAggregate(plan) => {
                let plan = plan.clone();
                return Self::start_join_aggregate(log, spec, plan, processing_log, initial).await;
            }
            QueryPlan::Stateless(_) | QueryPlan::Aggregate(_) => {}
        }
        let partitions = log.describe_topic(&spec.source.topic).await?.partitions;
        let committed = log.committed_offsets(&spec.id, &spec.source.topic).await?;
        let mut starts = BTreeMap::new();
        for partition in &partitions {
            let offset = match committed.get(&partition.partition) {
                Some(offset) => *offset,
                None => match spec.start {
                    StartPosition::Earliest => partition.start_offset,
                    StartPosition::Latest => partition.end_offset,
                },
            };
            starts.insert(partition.partition, offset);
        }
        let (state, state_changes) = watch::channel(initial);
        let (progress_sender, progress) =
            watch::channel(starts.iter().map(|(p, o)| ((0, *p), *o)).collect());
        let progress_sender = Arc::new(progress_sender);
        let failure = Arc::new(Mutex::new(None));
        let decoder = Arc::new(
            spec.decoder(&spec.source)
                .reading_only(&spec.plan.used_columns()),
        );
        let spawn = |id: String,
                     partition: Option<i32>,
                     work: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), String>> + Send>,
        >| {
            let failure = failure.clone();
            // Held until the failure is noted, so that waiters see it, not a closed channel.
            let progress = progress_sender.clone();
            tokio::spawn(async move {
                if let Err(error) = work.await {
                    tracing::error!(query = %id, ?partition, %error, "query task stopped");
                    failure.lock().get_or_insert(error);
                    progress.send_modify(|_| {});
                }
            })
        };
        // Where the state began: the positions of the query's first start. A query that
        // keeps state rebuilds it from there to where it stopped.
        let origin_group = format!("{}-origin", spec.id);
        let mut origins = log
            .committed_offsets(&origin_group, &spec.source.topic)
            .await?;
        if origins.is_empty() {
            let first: Vec<TopicPartitionOffset> = starts
                .iter()
                .map(|(partition, offset)| TopicPartitionOffset {
                    topic: spec.source.topic.clone(),
                    partition: *partition,
                    offset: *offset,
                })
                .collect();
            log.commit_offsets(&origin_group, &first).await?;
            origins = starts.clone();
        }
        let mut materialized = None;
        let tasks = match &spec.plan {
            QueryPlan::Stateless(plan) => {
                let plan = Arc::new(plan.clone());
                // A query over a table writes a table: its rows are kept for pull queries.
                if spec.source.kind == SourceKind::Table {
                    materialized = Some(Arc::new(materialized::Materialized::new(
                        spec.encoder.key_columns.clone(),
                        spec.encoder.value_columns.clone(),
                        spec.encoder.key_format.clone(),
                        None,
                    )));
                }
                let from_values = Arc::new(from_values(&spec.source, &plan));
                starts
                    .into_iter()
                    .map(|(partition, offset)| {
                        let task = PartitionTask {
                            log: log.clone(),
                            spec: spec.clone(),
                            plan: plan.clone(),
                            decoder: decoder.clone(),
                            partition,
                            origin: origins.get(&partition).copied().unwrap_or(offset),
                            offset,
                            state: state_changes.clone(),
                            progress: progress_sender.clone(),
                            processing_log: processing_log.clone(),
                            materialized: materialized.clone(),
                            rebuilding: false,
                            from_values: from_values.clone(),
                        };
                        spawn(spec.id.clone(), Some(partition), Box::pin(task.run()))
                    })
                    .collect()
            }
            QueryPlan::Join(_) | QueryPlan::JoinAggregate(_) => Vec::new(),
            QueryPlan::Aggregate(plan) => {
                let table = Arc::new(materialized::Materialized::new(
                    spec.encoder.key_columns.clone(),
                    spec.encoder.value_columns.clone(),
                    spec.encoder.key_format.clone(),
                    plan.windowing.map(|w| w.table_retention()),
                ));
                materialized = Some(table.clone());
                let task = aggregate::AggregateTask {
                    materialized: Some(table),
                    delivery: aggregate::Delivery::Sink,
                    // EMIT FINAL's emitted windows leave the state but stay in the
                    // table: it rebuilds both from the source.
                    changelog: (!plan.emit_final).then(|| aggregate::changelog_topic(&spec.id)),
                    producer: None,
                    log: log.clone(),
                    spec: spec.clone(),
                    plan: plan.clone(),
                    decoder: decoder.clone(),
                    positions: starts,
                    origins,
                    state: state_changes.clone(),
                    progress: progress_sender.clone(),
                    processing_log: processing_log.clone(),
                };
                vec![spawn(spec.id.clone(), None, Box::pin(task.run()))]
            }
        };
        Ok(PersistentQuery {
            spec,
            state,
            progress,
            failure,
            materialized,
            tasks,
            stages: None,
        })
    }

    /// Starts an aggregation over joined rows: the join writes its rows to the internal
    /// topic (its own producer, committing its positions with them), the aggregation reads
    /// that topic from its start. Both keep the query's id: the aggregation's changelog and
    /// positions are the query's.
    async fn start_join_aggregate(
        log: Arc<dyn Log>,
        spec: QuerySpec,
        plan: Arc<JoinAggregatePlan>,
        processing_log: ProcessingLog,
        initial: QueryState,
    ) -> Result<PersistentQuery, LogError> {
        if log.describe_topic(&plan.joined.topic).await.is_err() {
            log.create_topic(&plan.joined.topic, crate::log::TopicConfig::new(1))
                .await?;
        }
        let join_spec = QuerySpec {
            plan: QueryPlan::Join(plan.join.clone()),
            sink_topic: Some(plan.joined.topic.clone()),
            encoder: plan.join_encoder.clone(),
            ..spec.clone()
        };
        let producer_id = format!("riffle-{}-join", spec.id);
        let join = Self::start_join(
            log.clone(),
            join_spec,
            plan.join.clone(),
            processing_log.clone(),
            initial,
            producer_id,
        )
        .await?;
        let aggregate_spec = QuerySpec {
            source: plan.joined.clone(),
            plan: QueryPlan::Aggregate(plan.aggregate.clone()),
            start: StartPosition::Earliest,
            ..spec.clone()
        };
        let aggregate = Box::pin(Self::start(
            log.clone(),
            aggregate_spec,
            processing_log,
            initial,
        ))
        .await?;
        let (state, _) = watch::channel(initial);
        let (_, progress) = watch::channel(Progress::new());
        Ok(PersistentQuery {
            spec,
            state,
            progress,
            failure: Arc::default(),
            materialized: aggregate.materialized.clone(),
            tasks: Vec::new(),
            stages: Some(Stages {
                log,
                join: Box::new(join),
                aggregate: Box::new(aggregate),
            }),
        })
    }

    /// Starts a join's task: positions and origins for every partition of every input.
    async fn start_join(
        log: Arc<dyn Log>,
        spec: QuerySpec,
        plan: Arc<crate::plan::join::JoinPlan>,
        processing_log: ProcessingLog,
        initial: QueryState,
        producer_id: String,
    ) -> Result<PersistentQuery, LogError> {
        let origin_group = format!("{}-origin", spec.id);
        let mut positions = Vec::new();
        let mut origins = Vec::new();
        let mut progress = Progress::new();
        for (input, source) in plan.inputs.iter().enumerate() {
            let topic = &source.source.topic;
            let committed = log.committed_offsets(&spec.id, topic).await?;
            let starts = join_starts(&*log, &source.source, spec.start, &committed).await?;
            let mut first = log.committed_offsets(&origin_group, topic).await?;
            if first.is_empty() {
                let at: Vec<TopicPartitionOffset> = starts
                    .iter()
                    .map(|(&partition, &offset)| TopicPartitionOffset {
                        topic: topic.clone(),
                        partition,
                        offset,
                    })
                    .collect();
                log.commit_offsets(&origin_group, &at).await?;
                first = starts.clone();
            }
            progress.extend(starts.iter().map(|(p, o)| ((input, *p), *o)));
            positions.push(starts);
            origins.push(first);
        }
        let (state, state_changes) = watch::channel(initial);
        let (progress_sender, progress) = watch::channel(progress);
        let progress_sender = Arc::new(progress_sender);
        let failure = Arc::new(Mutex::new(None));
        let task = join::JoinTask {
            log,
            spec: spec.clone(),
            plan,
            positions,
            origins,
            state: state_changes,
            progress: progress_sender.clone(),
            processing_log,
            subscriber: None,
            producer_id,
            changelog: Some(join_state::join_changelog_topic(&spec.id)),
        };
        let id = spec.id.clone();
        let failed = failure.clone();
        let handle = tokio::spawn(async move {
            if let Err(error) = task.run().await {
                tracing::error!(query = %id, %error, "query task stopped");
                failed.lock().get_or_insert(error);
                // Waiters see the failure, not a closed channel.
                progress_sender.send_modify(|_| {});
            }
        });
        Ok(PersistentQuery {
            spec,
            state,
            progress,
            failure,
            materialized: None,
            tasks: vec![handle],
            stages: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The table's current rows, when the query materializes a table.
    pub fn materialized(&self) -> Option<Arc<materialized::Materialized>> {
        self.materialized.clone()
    }

    /// Why the query stopped working, if it did.
    pub fn failure(&self) -> Option<String> {
        if let Some(stages) = &self.stages {
            return stages.join.failure().or_else(|| stages.aggregate.failure());
        }
        self.failure.lock().clone()
    }

    /// Waits until every partition has processed everything below `ends` (the positions of
    /// the query's inputs); for an aggregation over joined rows, until the aggregation has
    /// also read every joined row written by then.
    pub async fn wait_for(&self, ends: &Progress) -> Result<(), String> {
        let Some(stages) = &self.stages else {
            return self.wait_for_own(ends).await;
        };
        stages.join.wait_for_own(ends).await?;
        let topic = &stages.aggregate.spec.source.topic;
        let description = stages
            .log
            .describe_topic(topic)
            .await
            .map_err(|e| format!("reading the end of {topic}: {e}"))?;
        let joined_ends = description
            .partitions
            .iter()
            .map(|p| ((0, p.partition), p.end_offset))
            .collect();
        stages.aggregate.wait_for_own(&joined_ends).await
    }

    async fn wait_for_own(&self, ends: &Progress) -> Result<(), String> {
        let mut progress = self.progress.clone();
        let result = progress
            .wait_for(|done| {
                ends.iter()
                    .all(|(p, end)| done.get(p).is_some_and(|offset| offset >= end))
                    || self.failure.lock().is_some()
            })
            .await;
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        result
            .map(|_| ())
            .map_err(|_| "the query stopped".to_string())
    }

    /// Running, paused or stopped as asked; `Error` once a task stopped on an error.
    pub fn state(&self) -> QueryState {
        if self.failure().is_some() {
            return QueryState::Error;
        }
        *self.state.borrow()
    }

    /// Pauses or resumes the query; a paused query keeps its position and reads nothing.
    pub fn set_state(&self, state: QueryState) {
        self.state.send_replace(state);
        if let Some(stages) = &self.stages {
            stages.join.set_state(state);
            stages.aggregate.set_state(state);
        }
    }

    /// Stops the query's tasks and waits for them to finish.
    pub async fn stop(self) {
        self.state.send_replace(QueryState::Stopped);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(stages) = self.stages {
            Box::pin(stages.join.stop()).await;
            Box::pin(stages.aggregate.stop()).await;
        }
    }
}

/// Where a join starts reading a source, per partition: its committed position, else
/// `start`, except that a table input is read whole (a join needs the table's rows).
pub(crate) async fn join_starts(
    log: &dyn Log,
    source: &Source,
    start: StartPosition,
    committed: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>, LogError> {
    let from = match source.kind {
        SourceKind::Table => StartPosition::Earliest,
        SourceKind::Stream => start,
    };
    let partitions = log.describe_topic(&source.topic).await?.partitions;
    Ok(partitions
        .iter()
        .map(|p| {
            let first = match from {
                StartPosition::Earliest => p.start_offset,
                StartPosition::Latest => p.end_offset,
            };
            (
                p.partition,
                committed.get(&p.partition).copied().unwrap_or(first),
            )
        })
        .collect())
}

/// A fetch of committed records only (what a query may read).
pub(crate) fn read_committed(topic: &str, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::new(topic.to_string(), partition, offset)
        .with_isolation(IsolationLevel::ReadCommitted)
}

/// A partition's records in runs that agree on whether they have a key and a value (a
/// table reads the three kinds differently), in order, with those two facts.
pub(crate) fn presence_runs(records: &[Record]) -> impl Iterator<Item = (&[Record], bool, bool)> {
    records
        .chunk_by(|a, b| {
            (a.key.is_some(), a.value.is_some()) == (b.key.is_some(), b.value.is_some())
        })
        .map(|run| (run, run[0].key.is_some(), run[0].value.is_some()))
}

/// Reads a partition's committed records from `from` up to `until` (exclusive) and hands
/// them to `each`, batch by batch: how a query rebuilds its state after a restart.
pub(crate) async fn replay(
    log: &dyn Log,
    (topic, partition): (&str, i32),
    from: i64,
    until: i64,
    mut each: impl FnMut(&[Record]),
) -> Result<(), LogError> {
    let mut offset = from;
    while offset < until {
        let response = log.fetch(&read_committed(topic, partition, offset)).await?;
        if response.next_offset == offset {
            break;
        }
        let end = response.records.partition_point(|r| r.offset < until);
        each(&response.records[..end]);
        offset = response.next_offset;
    }
    Ok(())
}

/// Waits while a query is paused; `false` once it is stopped (or its owner is gone).
pub(crate) async fn until_running(state: &mut watch::Receiver<QueryState>) -> bool {
    loop {
        match *state.borrow_and_update() {
            QueryState::Stopped | QueryState::Error => return false,
            QueryState::Running => return true,
            QueryState::Paused => {}
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

/// What [`read_or_wait`] found.
pub(crate) enum Read {
    Records(crate::log::FetchResponse),
    /// Nothing arrived in time; ask again.
    Nothing,
    /// `cancel` completed.
    Cancelled,
}

/// Fetches the records from `offset` on; when there are none yet, waits (at most a second)
/// for some to arrive or for `cancel` to complete.
pub(crate) async fn read_or_wait(
    log: &dyn Log,
    topic: &str,
    partition: i32,
    offset: i64,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Read, LogError> {
    let request = read_committed(topic, partition, offset);
    let response = log.fetch(&request).await?;
    if response.next_offset != offset {
        return Ok(Read::Records(response));
    }
    let wait = log.wait_for_data(
        topic,
        partition,
        offset,
        IsolationLevel::ReadCommitted,
        Duration::from_secs(1),
    );
    tokio::select! {
        waited = wait => waited.map(|_| Read::Nothing),
        _ = cancel => Ok(Read::Cancelled),
    }
}

/// [`read_or_wait`] for a task feeding one subscriber: it stops waiting when told to stop
/// or when the subscriber went away.
pub(crate) async fn read_for_subscriber<T>(
    log: &dyn Log,
    (topic, partition, offset): (&str, i32, i64),
    stopped: &mut watch::Receiver<bool>,
    subscriber: &tokio::sync::mpsc::Sender<T>,
) -> Result<Read, LogError> {
    let cancel = async {
        tokio::select! {
            _ = stopped.changed() => {}
            _ = subscriber.closed() => {}
        }
    };
    read_or_wait(log, topic, partition, offset, cancel).await
}

/// Runs the plan on a batch. A failure (or a panic inside a function) makes it run row by
/// row: a row whose `WHERE` fails is left out, a column that fails is NULL, and each
/// failure gets a processing-log entry.
pub(crate) fn evaluate_rows(
    plan: &crate::plan::StatelessPlan,
    batch: &RecordBatch,
    mut report: impl FnMut(usize, String),
) -> Vec<(RecordBatch, RecordBatch)> {
    let attempt = |batch: &RecordBatch| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.apply(batch))).unwrap_or_else(
            |_| {
                Err(crate::plan::PlanError::Plan(
                    "a function failed unexpectedly".to_string(),
                ))
            },
        )
    };
    crate::functions::udf::take_row_failures();
    if let Ok(result) = attempt(batch) {
        // Functions count rows of the filtered batch; `report` wants rows of `batch`.
        let offset_of = |b: &RecordBatch| {
            b.column_by_name("ROWOFFSET")
                .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
        };
        let (all, passed) = (offset_of(batch), offset_of(&result.0));
        for (row, message) in crate::functions::udf::take_row_failures() {
            let original = match (&all, &passed) {
                (Some(all), Some(passed)) if row < passed.len() => all
                    .values()
                    .binary_search(&passed.value(row))
                    .unwrap_or(row),
                _ => row,
            };
            report(original, message);
        }
        return vec![result];
    }
    crate::functions::udf::take_row_failures();
    let mut results = Vec::new();
    for row in 0..batch.num_rows() {
        let mut failures = |message: String| report(row, message);
        let result = plan.apply_row(&batch.slice(row, 1), &mut failures);
        for (_, message) in crate::functions::udf::take_row_failures() {
            failures(message);
        }
        results.extend(result);
    }
    results
}

struct PartitionTask {
    log: Arc<dyn Log>,
    spec: QuerySpec,
    plan: Arc<StatelessPlan>,
    decoder: Arc<SourceDecoder>,
    partition: i32,
    /// Where the query first started in the partition.
    origin: i64,
    offset: i64,
    state: watch::Receiver<QueryState>,
    progress: Arc<watch::Sender<Progress>>,
    processing_log: ProcessingLog,
    /// The table's current rows (a query over a table), for pull queries.
    materialized: Option<Arc<materialized::Materialized>>,
    /// Replaying records processed before a restart: failures are not logged again.
    rebuilding: bool,
    /// The output columns computed from value or pseudo columns: NULL for a record
    /// without a value (see [`from_values`]).
    from_values: Arc<Vec<String>>,
}

/// The records a task may process from a fetch, and the error that then stops the query:
/// with `ksql.timestamp.throw.on.invalid`, those before the first record without a valid
/// time (as Kafka Streams processes records until the one its timestamp extractor fails
/// on). The query then writes and commits what it processed, and stops there.
pub(crate) fn until_fatal<'a>(
    decoder: &SourceDecoder,
    records: &'a [Record],
    partition: i32,
) -> (&'a [Record], Option<RecordError>) {
    match decoder.first_fatal(records, partition) {
        Some(error) => {
            let end = records.partition_point(|r| r.offset < error.offset);
            (&records[..end], Some(error))
        }
        None => (records, None),
    }
}

/// The output columns a plan computes from the source's value columns or its pseudo
/// columns: for a record without a value they are NULL, as ksqlDB sees them (the pseudo
/// columns travel beside the value there).
fn from_values(source: &Source, plan: &StatelessPlan) -> Vec<String> {
    let values: std::collections::HashSet<String> = source
        .value_columns()
        .into_iter()
        .map(|(name, _)| name)
        .chain(
            crate::catalog::PSEUDO_COLUMNS
                .iter()
                .map(|(name, _)| name.to_string()),
        )
        .collect();
    plan.projection
        .iter()
        .filter(|column| {
            datafusion::physical_expr::utils::collect_columns(&column.expr)
                .iter()
                .any(|c| values.contains(c.name()))
        })
        .map(|column| column.name.clone())
        .collect()
}

/// A row of NULLs of `schema` (a tombstone's row).
fn null_row(schema: &arrow::datatypes::SchemaRef) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .map(|f| arrow::array::new_null_array(f.data_type(), 1))
        .collect();
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()))
}

/// `batch` with the named columns all NULL.
fn with_null_columns(batch: RecordBatch, names: &[String]) -> RecordBatch {
    if names.is_empty() {
        return batch;
    }
    let schema = batch.schema();
    let (fields, columns): (Vec<arrow::datatypes::Field>, Vec<arrow::array::ArrayRef>) = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            if names.contains(field.name()) {
                let nulls = arrow::array::new_null_array(field.data_type(), batch.num_rows());
                (field.as_ref().clone().with_nullable(true), nulls)
            } else {
                (field.as_ref().clone(), column.clone())
            }
        })
        .unzip();
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    RecordBatch::try_new(schema, columns).unwrap_or(batch)
}

/// Gives each output record the headers of the input record it came from (found by
/// `ROWOFFSET` in `run`, whose offsets ascend), as Kafka Streams carries headers through.
fn copy_headers(out: &mut [ProducerRecord], input: &RecordBatch, run: &[Record]) {
    let Some(offsets) = input
        .column_by_name("ROWOFFSET")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
    else {
        return;
    };
    for (record, offset) in out.iter_mut().zip(offsets.values()) {
        record.headers = headers_at(run, *offset);
    }
}

/// The headers of the record at `offset` in `run` (records in offset order); none when it
/// is not there.
pub(crate) fn headers_at(run: &[Record], offset: i64) -> Vec<crate::log::Header> {
    run.binary_search_by_key(&offset, |r| r.offset)
        .map(|at| run[at].headers.clone())
        .unwrap_or_default()
}

/// The window bound columns of a windowed source's rows.
const WINDOW_BOUNDS: (&str, &str) = ("WINDOWSTART", "WINDOWEND");

/// Gives each output key of a windowed sink the window of its input row (a stream over a
/// windowed source keeps the windows), found in the columns named `bounds`.
pub(crate) fn window_keys(
    out: &mut [ProducerRecord],
    input: &RecordBatch,
    encoder: &SinkEncoder,
    (start, end): (&str, &str),
) {
    if encoder.window.is_none() {
        return;
    }
    let bound = |name: &str| {
        input
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
    };
    let (Some(starts), Some(ends)) = (bound(start), bound(end)) else {
        return;
    };
    for (row, record) in out.iter_mut().enumerate() {
        if row < starts.len() && starts.is_valid(row) && ends.is_valid(row) {
            encoder.window_record(record, starts.value(row), ends.value(row));
        }
    }
}

impl PartitionTask {
    /// The sink records for fetched records, in their order. On a stream, a record without a
    /// value passes through as a record without a value (as ksqlDB's does) when the query
    /// neither filters nor changes the key.
    fn process(&self, records: &[Record]) -> Vec<ProducerRecord> {
        if self.spec.source.kind == SourceKind::Table {
            return self.process_table(records);
        }
        let mut out = Vec::new();
        for run in records.chunk_by(|a, b| a.value.is_none() == b.value.is_none()) {
            if run[0].value.is_none() && self.spec.source.kind == SourceKind::Stream {
                let same_key = self.passes_null_values();
                // Repartitioned (new key columns): the key cannot be computed from a record
                // without a value, so it passes with no key, as ksqlDB's does.
                let new_key = self.plan.filter.is_none()
                    && self.spec.encoder.key_columns != self.spec.source.key_columns();
                if same_key {
                    out.extend(run.iter().map(|record| ProducerRecord {
                        partition: None,
                        timestamp: Some(record.timestamp),
                        key: record.key.clone(),
                        value: None,
                        headers: record.headers.clone(),
                    }));
                } else if new_key {
                    out.extend(self.rekeyed_null_values(run));
                }
                continue;
            }
            let (batch, errors) = self.decoder.decode(run, self.partition);
            for error in errors {
                self.log_failure(error);
            }
            if batch.num_rows() == 0 {
                continue;
            }
            let carry_headers = run.iter().any(|record| !record.headers.is_empty());
            for (input, output) in self.evaluate(&batch) {
                if let Some(rowtime) = input.column_by_name("ROWTIME") {
                    let start = out.len();
                    out.extend(self.spec.encoder.encode(&output, rowtime));
                    if carry_headers {
                        copy_headers(&mut out[start..], &input, run);
                    }
                    window_keys(&mut out[start..], &input, &self.spec.encoder, WINDOW_BOUNDS);
                }
            }
        }
        // A sink `TIMESTAMP` column that is NULL or negative drops its record.
        out.retain(|record| record.timestamp.is_none_or(|t| t >= 0));
        out
    }

    /// The sink records for a table's records, each an upsert of its key: a record without
    /// a value deletes the key, and so does a row the query's `WHERE` leaves out (ksqlDB
    /// forwards a tombstone for it); a record without a key is dropped. The changes are
    /// applied to the materialized rows too.
    fn process_table(&self, records: &[Record]) -> Vec<ProducerRecord> {
        /// Where each sink record comes from.
        enum Change<'a> {
            /// Row `.1` of output piece `.0`.
            Row(usize, usize),
            Tombstone(&'a Record),
        }
        let mut changes = Vec::new();
        let mut pieces: Vec<(RecordBatch, Vec<ProducerRecord>)> = Vec::new();
        for (run, keyed, valued) in presence_runs(records) {
            match (keyed, valued) {
                (false, _) => continue,
                (true, false) => changes.extend(run.iter().map(Change::Tombstone)),
                (true, true) => {
                    let (batch, errors) = self.decoder.decode(run, self.partition);
                    for error in errors {
                        self.log_failure(error);
                    }
                    let Some(offsets) = batch
                        .column_by_name("ROWOFFSET")
                        .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
                    else {
                        continue;
                    };
                    let mut passed = std::collections::HashMap::new();
                    for (input, output) in self.evaluate(&batch) {
                        let Some(rowtime) = input.column_by_name("ROWTIME") else {
                            continue;
                        };
                        let mut encoded = self.spec.encoder.encode(&output, rowtime);
                        copy_headers(&mut encoded, &input, run);
                        window_keys(&mut encoded, &input, &self.spec.encoder, WINDOW_BOUNDS);
                        if let Some(input_offsets) = input
                            .column_by_name("ROWOFFSET")
                            .and_then(|c| c.as_primitive_opt::<Int64Type>())
                        {
                            for (row, offset) in input_offsets.values().iter().enumerate() {
                                passed.insert(*offset, (pieces.len(), row));
                            }
                        }
                        pieces.push((output, encoded));
                    }
                    for offset in offsets.values() {
                        match passed.get(offset) {
                            Some(&(piece, row)) => changes.push(Change::Row(piece, row)),
                            None => {
                                if let Ok(at) = run.binary_search_by_key(offset, |r| r.offset) {
                                    changes.push(Change::Tombstone(&run[at]));
                                }
                            }
                        }
                    }
                }
            }
        }
        let out: Vec<ProducerRecord> = changes
            .iter()
            .map(|change| match change {
                Change::Row(piece, row) => pieces[*piece].1[*row].clone(),
                Change::Tombstone(record) => ProducerRecord {
                    partition: None,
                    timestamp: Some(record.timestamp),
                    key: record.key.clone(),
                    value: None,
                    headers: record.headers.clone(),
                },
            })
            .collect();
        if let Some(table) = &self.materialized {
            // The rows, aligned with the records (a tombstone's row is all NULL).
            let nulls = null_row(&self.plan.output_schema);
            let indices: Vec<(usize, usize)> = changes
                .iter()
                .map(|change| match change {
                    Change::Row(piece, row) => (*piece, *row),
                    Change::Tombstone(_) => (pieces.len(), 0),
                })
                .collect();
            let aligned = (|| {
                let batches: Vec<&RecordBatch> =
                    pieces.iter().map(|(b, _)| b).chain([&nulls]).collect();
                let columns = (0..nulls.num_columns())
                    .map(|c| {
                        let arrays: Vec<&dyn Array> =
                            batches.iter().map(|b| b.column(c).as_ref()).collect();
                        arrow::compute::interleave(&arrays, &indices)
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?;
                RecordBatch::try_new(nulls.schema(), columns).ok()
            })();
            match aligned {
                Some(rows) => {
                    let times = arrow::array::Int64Array::from_iter_values(
                        out.iter().map(|r| r.timestamp.unwrap_or_default()),
                    );
                    table.apply(&rows, &times, &[], &out);
                }
                None => {
                    tracing::warn!(query = %self.spec.id, "a table's rows could not be materialized")
                }
            }
        }
        out
    }

    /// Records without a value of a query that sets a new key (`PARTITION BY`): each keeps
    /// no value and takes the key its row gives with NULL value columns.
    fn rekeyed_null_values(&self, run: &[Record]) -> Vec<ProducerRecord> {
        let (batch, errors) = self.decoder.decode_keeping_null_values(run, self.partition);
        for error in errors {
            self.log_failure(error);
        }
        let mut out = Vec::with_capacity(batch.num_rows());
        for (input, output) in self.evaluate(&batch) {
            let output = with_null_columns(output, &self.from_values);
            if let Some(rowtime) = input.column_by_name("ROWTIME") {
                let start = out.len();
                out.extend(self.spec.encoder.encode(&output, rowtime));
                copy_headers(&mut out[start..], &input, run);
            }
        }
        for record in &mut out {
            record.value = None;
        }
        out
    }

    fn passes_null_values(&self) -> bool {
        self.plan.filter.is_none()
            && self.spec.encoder.key_columns == self.spec.source.key_columns()
            && self.spec.encoder.key_format == self.spec.source.key_format
    }

    fn evaluate(&self, batch: &RecordBatch) -> Vec<(RecordBatch, RecordBatch)> {
        let offsets = batch
            .column_by_name("ROWOFFSET")
            .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
        evaluate_rows(&self.plan, batch, |row, message| {
            let offset = offsets.as_ref().map_or(-1, |o| o.value(row));
            self.log_failure(RecordError {
                topic: self.spec.source.topic.clone(),
                partition: self.partition,
                offset,
                message: format!("Error computing the query result: {message}"),
                fatal: false,
            });
        })
    }

    /// Records a failed record in the processing log, unless the task is rebuilding its rows
    /// (the failure was logged when the record was first processed).
    fn log_failure(&self, error: RecordError) {
        if !self.rebuilding {
            self.processing_log.record(&self.spec.id, error);
        }
    }

    /// Rebuilds the materialized rows (a query over a table) from the records processed
    /// before a restart, writing nothing.
    async fn rebuild(&mut self) -> Result<(), LogError> {
        if self.materialized.is_none() {
            return Ok(());
        }
        self.rebuilding = true;
        let rebuilt = self.replay().await;
        self.rebuilding = false;
        rebuilt
    }

    async fn replay(&self) -> Result<(), LogError> {
        let at = (self.spec.source.topic.as_str(), self.partition);
        replay(&*self.log, at, self.origin, self.offset, |records| {
            self.process(records);
        })
        .await
    }

    async fn run(mut self) -> Result<(), String> {
        if let Err(error) = self.rebuild().await {
            return Err(format!("{}: rebuilding the table: {error}", self.spec.id));
        }
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            format!("{}: {what}: {error}", self.spec.id)
        };
        loop {
            if !until_running(&mut self.state).await {
                return Ok(());
            }
            let request = read_committed(&self.spec.source.topic, self.partition, self.offset);
            let response = self
                .log
                .fetch(&request)
                .await
                .map_err(|e| fail("reading the source", &e))?;
            if response.next_offset == self.offset {
                let wait = self.log.wait_for_data(
                    &self.spec.source.topic,
                    self.partition,
                    self.offset,
                    IsolationLevel::ReadCommitted,
                    Duration::from_secs(1),
                );
                tokio::select! {
                    waited = wait => { waited.map_err(|e| fail("waiting for records", &e))?; }
                    changed = self.state.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                    }
                }
                continue;
            }
            let (processed, fatal) = until_fatal(&self.decoder, &response.records, self.partition);
            let records = self.process(processed);
            if let Some(topic) = &self.spec.sink_topic
                && !records.is_empty()
            {
                self.log
                    .produce(topic, records, Acks::All)
                    .await
                    .map_err(|e| fail("writing to the sink", &e))?;
            }
            self.offset = fatal.as_ref().map_or(response.next_offset, |e| e.offset);
            self.log
                .commit_offsets(
                    &self.spec.id,
                    &[TopicPartitionOffset {
                        topic: self.spec.source.topic.clone(),
                        partition: self.partition,
                        offset: self.offset,
                    }],
                )
                .await
                .map_err(|e| fail("committing the position", &e))?;
            let (partition, offset) = (self.partition, self.offset);
            self.progress.send_modify(|progress| {
                progress.insert((0, partition), offset);
            });
            if let Some(error) = fatal {
                return Err(format!("{}: {}", self.spec.id, error.message));
            }
        }
    }
}
