//! Topics, partitions and offsets: the [`Log`] trait and its backends.
//!
//! The engine reads and writes records only through [`Log`]. The [`embedded`] backend is a
//! file-backed partitioned log in the server's data directory; a Kafka backend implements
//! the same calls. Records, offsets, acks, consumer groups and transactions follow Kafka's
//! meaning, so that a query behaves the same on either backend.

pub mod embedded;
pub mod partitioner;
pub mod transaction;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use embedded::EmbeddedLog;

/// A record header: a name and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record as stored: a `None` value is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A record to produce. Without a partition, keyed records go to
/// `murmur2(key) % partitions` and keyless ones to one partition per call, round-robin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; the time of the append when `None`.
    pub timestamp: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl ProducerRecord {
    pub fn new(key: Option<impl Into<Bytes>>, value: Option<impl Into<Bytes>>) -> Self {
        Self {
            key: key.map(Into::into),
            value: value.map(Into::into),
            ..Self::default()
        }
    }
}

/// When a produce call returns, as Kafka's `acks` setting.
///
/// On the embedded log:
/// - `None` (`acks=0`): after the batch is written to the operating system's page cache; no
///   offsets are reported back (they read as -1).
/// - `Leader` (`acks=1`): after the write to the page cache; the records survive the
///   process being killed, not a power loss.
/// - `All` (`acks=all`): after the segment is flushed to disk (`fdatasync`); the records
///   survive a power loss. Concurrent producers share one flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Acks {
    None,
    Leader,
    All,
}

/// What a topic does with old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    /// Delete whole segments older than `retention_ms` or beyond `retention_bytes`.
    Delete,
    /// Keep the latest record per key; tombstones go after `delete_retention_ms`.
    Compact,
}

/// A topic's layout and configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: i32,
    pub cleanup_policy: CleanupPolicy,
    /// Records older than this are deleted (`None`: kept forever). Kafka's `retention.ms`.
    pub retention_ms: Option<i64>,
    /// Per partition, the oldest segments go beyond this size. Kafka's `retention.bytes`.
    pub retention_bytes: Option<u64>,
    /// How long a tombstone survives compaction. Kafka's `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// Size at which a partition starts a new segment file. Kafka's `segment.bytes`.
    pub segment_bytes: u64,
    /// Largest encoded batch a produce call may write. Kafka's `max.message.bytes`.
    pub max_message_bytes: usize,
}

impl TopicConfig {
    pub fn new(partitions: i32) -> Self {
        Self {
            partitions,
            ..Self::default()
        }
    }

    pub fn compacted(mut self) -> Self {
        self.cleanup_policy = CleanupPolicy::Compact;
        self
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: Some(7 * 24 * 3_600_000),
            retention_bytes: None,
            delete_retention_ms: 24 * 3_600_000,
            segment_bytes: 128 * 1024 * 1024,
            max_message_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What `describe_topic` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionDescription>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// The first offset still stored.
    pub start_offset: i64,
    /// The offset the next record will get.
    pub end_offset: i64,
    pub size_bytes: u64,
}

/// Which records a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IsolationLevel {
    /// Everything written, including records of open and aborted transactions.
    #[default]
    ReadUncommitted,
    /// Only records outside transactions or of committed ones, and nothing after the first
    /// record of a transaction still open.
    ReadCommitted,
}

/// A read of one partition from an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// At least one batch is returned even when it is larger.
    pub max_bytes: usize,
    pub max_records: usize,
    pub isolation: IsolationLevel,
}

impl FetchRequest {
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            max_bytes: 1024 * 1024,
            max_records: usize::MAX,
            isolation: IsolationLevel::ReadUncommitted,
        }
    }

    pub fn with_isolation(mut self, isolation: IsolationLevel) -> Self {
        self.isolation = isolation;
        self
    }

    pub fn with_max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records;
        self
    }

    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub records: Vec<Record>,
    /// Where the next fetch should start (past skipped markers and aborted records too).
    pub next_offset: i64,
    /// The end of the partition for this reader's isolation level.
    pub end_offset: i64,
}

/// Where a produced record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordPosition {
    pub partition: i32,
    /// -1 with `Acks::None`.
    pub offset: i64,
}

/// A producer's identity for idempotent and transactional writes. A new epoch for the same
/// id fences the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// A batch for one partition, from an idempotent (and possibly transactional) producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer: ProducerIdentity,
    /// Sequence number of the first record; the partition expects one more than the last
    /// record of this producer's previous batch.
    pub base_sequence: i32,
    pub transactional: bool,
    pub records: Vec<ProducerRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    /// The batch had been written before (a retry); nothing was written again.
    pub duplicate: bool,
}

/// Consumer offsets to commit with a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    pub group: String,
    pub offsets: Vec<TopicPartitionOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group will read.
    pub offset: i64,
}

/// Errors of the log. Each names the topic (and partition) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{topic}' has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        partitions: i32,
    },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("'{name}' is not a valid topic name: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid configuration for topic '{topic}': {reason}")]
    InvalidConfig { topic: String, reason: String },
    #[error(
        "a batch of {size} bytes for topic '{topic}' partition {partition} exceeds the \
         topic's max.message.bytes of {max}"
    )]
    RecordTooLarge {
        topic: String,
        partition: i32,
        size: usize,
        max: usize,
    },
    #[error(
        "offset {offset} is out of range for topic '{topic}' partition {partition} \
         (it holds {start}..{end})"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
        start: i64,
        end: i64,
    },
    #[error("topic '{topic}' partition {partition} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error(
        "producer {producer_id} sent sequence {received} to topic '{topic}' partition \
         {partition}, which expected {expected}"
    )]
    OutOfOrderSequence {
        topic: String,
        partition: i32,
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    #[error("producer {producer_id} epoch {epoch} has been fenced by a newer epoch {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("invalid transaction state: {0}")]
    InvalidTransactionState(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LogError {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// A partitioned, replayable log of records: the embedded log or a Kafka cluster.
#[async_trait]
pub trait Log: Send + Sync + std::fmt::Debug {
    async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()>;
    async fn delete_topic(&self, name: &str) -> Result<()>;
    async fn list_topics(&self) -> Result<Vec<String>>;
    async fn describe_topic(&self, name: &str) -> Result<TopicDescription>;

    /// Writes records, choosing partitions with Kafka's default partitioner where a record
    /// names none. Returns each record's position, in input order.
    async fn produce(
        &self,
        topic: &str,
        records: Vec<ProducerRecord>,
        acks: Acks,
    ) -> Result<Vec<RecordPosition>>;

    /// Writes a batch of an idempotent or transactional producer to one partition. A batch
    /// whose sequence was already written is not written again.
    async fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: ProducerBatch,
        acks: Acks,
    ) -> Result<AppendResult>;

    async fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse>;

    /// Waits until the partition's end (for `isolation`) passes `offset`, or `timeout`
    /// passes; returns whether data is there. Woken by writes, never by polling.
    async fn wait_for_data(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        isolation: IsolationLevel,
        timeout: Duration,
    ) -> Result<bool>;

    /// The first offset whose record time is at or after `timestamp`; `None` when every
    /// record is older.
    async fn offset_for_time(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<i64>>;

    /// The first stored offset and the end offset for `isolation`.
    async fn offsets(
        &self,
        topic: &str,
        partition: i32,
        isolation: IsolationLevel,
    ) -> Result<(i64, i64)>;

    /// Durably records where a consumer group is in each partition.
    async fn commit_offsets(&self, group: &str, offsets: &[TopicPartitionOffset]) -> Result<()>;

    /// The committed offsets of a group in a topic, by partition.
    async fn committed_offsets(&self, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>>;

    /// Registers a producer. With a transactional id, a second registration under the same
    /// id fences the first and aborts its open transaction.
    async fn init_producer(&self, transactional_id: Option<&str>) -> Result<ProducerIdentity>;

    /// Commits the producer's open transaction, and `offsets` with it, atomically.
    async fn commit_transaction(
        &self,
        producer: ProducerIdentity,
        offsets: Option<GroupOffsets>,
    ) -> Result<()>;

    /// Aborts the producer's open transaction: readers in `ReadCommitted` never see it.
    async fn abort_transaction(&self, producer: ProducerIdentity) -> Result<()>;
}
