//! [`EmbeddedLog`]: the file-backed partitioned log in the server's data directory.
//!
//! ```text
//! <dir>/.lock                          held while a process has the log open
//! <dir>/<topic>/topic.json             the topic's configuration
//! <dir>/<topic>/<partition>/<offset>.log   segments of record batches
//! <dir>/__consumer_offsets/…           committed group offsets (a compacted topic)
//! <dir>/__transaction_state/…          transaction coordinator state (a compacted topic)
//! ```
//!
//! Start-up recovers every partition (truncating torn tails), finishes transactions that
//! were committing when the process stopped, aborts the ones that were open, and reloads
//! group offsets. A background cleaner applies retention and compaction.

mod batch;
mod cleaner;
mod coordinator;
mod partition;
mod segment;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::partitioner::partition_for_key;
use super::{
    Acks, AppendResult, FetchRequest, FetchResponse, GroupOffsets, IsolationLevel, Log, LogError,
    PartitionDescription, ProducerBatch, ProducerIdentity, ProducerRecord, RecordPosition, Result,
    TopicConfig, TopicDescription, TopicPartitionOffset,
};
use cleaner::Cleaner;
use coordinator::Coordinator;
use partition::{Partition, sync_dir};

pub use partition::PartitionEnds;

/// The topic holding committed consumer-group offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The topic holding the transaction coordinator's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Settings of an embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How often the cleaner applies retention and compaction.
    pub cleaner_interval: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cleaner_interval: Duration::from_secs(30),
        }
    }
}

/// The embedded log. Cheap to clone; all clones share one log.
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    _lock: File,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    coordinator: Mutex<Coordinator>,
    groups: Mutex<HashMap<String, GroupOffsetsByPartition>>,
    cleaner: Cleaner,
}

/// A group's next offset to read, by (topic, partition).
type GroupOffsetsByPartition = HashMap<(String, i32), i64>;

#[derive(Debug)]
struct Topic {
    config: TopicConfig,
    dir: PathBuf,
    partitions: Vec<Arc<Partition>>,
    /// Round-robin position for keyless records.
    sticky: AtomicU32,
}

impl EmbeddedLog {
    /// Opens the log in `dir` (creating it), recovering whatever a previous process left.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<EmbeddedLog> {
        let dir = dir.as_ref().to_path_buf();
        let context = || format!("opening the log in {}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io(context(), e))?;
        let lock = File::create(dir.join(".lock")).map_err(|e| LogError::io(context(), e))?;
        if lock.try_lock().is_err() {
            return Err(LogError::io(
                context(),
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "another process has this data directory open",
                ),
            ));
        }
        let mut topics = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| LogError::io(context(), e))? {
            let entry = entry.map_err(|e| LogError::io(context(), e))?;
            let config_path = entry.path().join("topic.json");
            if !config_path.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| LogError::io(context(), e))?;
            let config: TopicConfig =
                serde_json::from_str(&text).map_err(|e| LogError::InvalidConfig {
                    topic: name.clone(),
                    reason: format!("{} is unreadable: {e}", config_path.display()),
                })?;
            let topic = Topic::open(&name, entry.path(), config)?;
            topics.insert(name, Arc::new(topic));
        }
        let log = EmbeddedLog {
            inner: Arc::new(Inner {
                dir,
                _lock: lock,
                topics: RwLock::new(topics),
                coordinator: Mutex::new(Coordinator::default()),
                groups: Mutex::new(HashMap::new()),
                cleaner: Cleaner::default(),
            }),
        };
        for internal in [CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC] {
            if log.topic(internal).is_err() {
                log.create_topic_blocking(internal, TopicConfig::new(1).compacted())?;
            }
        }
        coordinator::recover(&log)?;
        log.load_group_offsets()?;
        Cleaner::start(&log, options.cleaner_interval);
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>> {
        let found = self.topic(topic)?;
        found.partition(topic, partition)
    }

    /// Creates a topic with its partitions on disk.
    pub fn create_topic_blocking(&self, name: &str, config: TopicConfig) -> Result<()> {
        validate_topic_name(name)?;
        validate_config(name, &config)?;
        let mut topics = self.inner.topics.write();
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let dir = self.inner.dir.join(name);
        let context = || format!("creating topic '{name}'");
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io(context(), e))?;
        let topic = Topic::open(name, dir.clone(), config.clone())?;
        let text = serde_json::to_string_pretty(&config).expect("a topic config serializes");
        let temporary = dir.join("topic.json.tmp");
        std::fs::write(&temporary, text).map_err(|e| LogError::io(context(), e))?;
        File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(|e| LogError::io(context(), e))?;
        std::fs::rename(&temporary, dir.join("topic.json"))
            .map_err(|e| LogError::io(context(), e))?;
        sync_dir(&dir)
            .and_then(|()| sync_dir(&self.inner.dir))
            .map_err(|e| LogError::io(context(), e))?;
        topics.insert(name.to_string(), Arc::new(topic));
        Ok(())
    }

    /// Deletes a topic and its files. Reads already under way finish on the old files.
    pub fn delete_topic_blocking(&self, name: &str) -> Result<()> {
        if name.starts_with("__") {
            return Err(LogError::InvalidTopicName {
                name: name.to_string(),
                reason: "internal topics cannot be deleted",
            });
        }
        let topic = self
            .inner
            .topics
            .write()
            .remove(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        std::fs::remove_dir_all(&topic.dir)
            .map_err(|e| LogError::io(format!("deleting topic '{name}'"), e))?;
        let _ = sync_dir(&self.inner.dir);
        Ok(())
    }

    pub fn list_topics_blocking(&self) -> Vec<String> {
        self.inner.topics.read().keys().cloned().collect()
    }

    pub fn describe_topic_blocking(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.topic(name)?;
        let partitions = topic
            .partitions
            .iter()
            .map(|p| PartitionDescription {
                partition: p.id,
                start_offset: p.start_offset(),
                end_offset: p.ends().high_watermark,
                size_bytes: p.size_bytes(),
            })
            .collect();
        Ok(TopicDescription {
            name: name.to_string(),
            config: topic.config.clone(),
            partitions,
        })
    }

    /// Writes records, partitioning them as Kafka's default partitioner does, and waits as
    /// `acks` says (flushing to disk for `Acks::All`).
    pub fn produce_blocking(
        &self,
        topic_name: &str,
        records: Vec<ProducerRecord>,
        acks: Acks,
    ) -> Result<Vec<RecordPosition>> {
        let topic = self.topic(topic_name)?;
        let count = topic.partitions.len() as i32;
        let sticky = (topic.sticky.fetch_add(1, Ordering::Relaxed) % count as u32) as i32;
        let mut by_partition: BTreeMap<i32, (Vec<usize>, Vec<ProducerRecord>)> = BTreeMap::new();
        for (index, mut record) in records.into_iter().enumerate() {
            let partition = match (record.partition.take(), &record.key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => sticky,
            };
            let entry = by_partition.entry(partition).or_default();
            entry.0.push(index);
            entry.1.push(record);
        }
        let total = by_partition
            .values()
            .map(|(indexes, _)| indexes.len())
            .sum();
        let mut positions = vec![
            RecordPosition {
                partition: -1,
                offset: -1
            };
            total
        ];
        let now = now_millis();
        let mut to_flush = Vec::new();
        for (partition_id, (indexes, records)) in by_partition {
            let partition = topic.partition(topic_name, partition_id)?;
            let appended = partition.append(&records, None, now)?;
            for (i, index) in indexes.into_iter().enumerate() {
                positions[index] = RecordPosition {
                    partition: partition_id,
                    offset: match acks {
                        Acks::None => -1,
                        _ => appended.base_offset + i as i64,
                    },
                };
            }
            to_flush.push((partition, appended.end_offset));
        }
        if acks == Acks::All {
            for (partition, end) in to_flush {
                partition.flush_to(end)?;
            }
        }
        Ok(positions)
    }

    /// Writes an idempotent (and possibly transactional) producer's batch to one partition.
    pub fn append_blocking(
        &self,
        topic: &str,
        partition_id: i32,
        batch: ProducerBatch,
        acks: Acks,
    ) -> Result<AppendResult> {
        let partition = self.partition(topic, partition_id)?;
        if batch.transactional {
            self.inner
                .coordinator
                .lock()
                .check_transactional(batch.producer)?;
        }
        let appended = partition.append(
            &batch.records,
            Some((batch.producer, batch.base_sequence, batch.transactional)),
            now_millis(),
        )?;
        if batch.transactional {
            self.inner
                .coordinator
                .lock()
                .add_partition(batch.producer, topic, partition_id);
        }
        if acks == Acks::All {
            partition.flush_to(appended.end_offset)?;
        }
        Ok(AppendResult {
            base_offset: appended.base_offset,
            duplicate: appended.duplicate,
        })
    }

    pub fn fetch_blocking(&self, request: &FetchRequest) -> Result<FetchResponse> {
        self.partition(&request.topic, request.partition)?
            .fetch(request)
    }

    pub fn offsets_blocking(
        &self,
        topic: &str,
        partition: i32,
        isolation: IsolationLevel,
    ) -> Result<(i64, i64)> {
        let partition = self.partition(topic, partition)?;
        Ok((partition.start_offset(), partition.ends().end(isolation)))
    }

    /// Subscribes to a partition's end offsets.
    pub fn watch(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<tokio::sync::watch::Receiver<PartitionEnds>> {
        Ok(self.partition(topic, partition)?.subscribe())
    }

    pub fn commit_offsets_blocking(
        &self,
        group: &str,
        offsets: &[TopicPartitionOffset],
    ) -> Result<()> {
        let records = offsets
            .iter()
            .map(|o| group_offset_record(group, o))
            .collect();
        self.produce_blocking(CONSUMER_OFFSETS_TOPIC, records, Acks::All)?;
        self.apply_group_offsets(group, offsets);
        Ok(())
    }

    fn apply_group_offsets(&self, group: &str, offsets: &[TopicPartitionOffset]) {
        let mut groups = self.inner.groups.lock();
        let entry = groups.entry(group.to_string()).or_default();
        for offset in offsets {
            entry.insert((offset.topic.clone(), offset.partition), offset.offset);
        }
    }

    pub fn committed_offsets_blocking(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.inner
            .groups
            .lock()
            .get(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .filter(|((t, _), _)| t == topic)
                    .map(|((_, partition), offset)| (*partition, *offset))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replays committed group offsets (only committed transactions count).
    fn load_group_offsets(&self) -> Result<()> {
        let mut offset = 0;
        loop {
            let response = self.fetch_blocking(
                &FetchRequest::new(CONSUMER_OFFSETS_TOPIC, 0, offset)
                    .with_isolation(IsolationLevel::ReadCommitted),
            )?;
            for record in &response.records {
                if let (Some(key), Some(value)) = (&record.key, &record.value)
                    && let Some((group, topic_offset)) = parse_group_offset_record(key, value)
                {
                    self.apply_group_offsets(&group, &[topic_offset]);
                }
            }
            if response.next_offset >= response.end_offset || response.next_offset == offset {
                return Ok(());
            }
            offset = response.next_offset;
        }
    }

    pub fn init_producer_blocking(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<ProducerIdentity> {
        coordinator::init_producer(self, transactional_id)
    }

    pub fn commit_transaction_blocking(
        &self,
        producer: ProducerIdentity,
        offsets: Option<GroupOffsets>,
    ) -> Result<()> {
        coordinator::end_transaction(self, producer, offsets, true)
    }

    pub fn abort_transaction_blocking(&self, producer: ProducerIdentity) -> Result<()> {
        coordinator::end_transaction(self, producer, None, false)
    }

    pub fn offset_for_time_blocking(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<i64>> {
        self.partition(topic, partition)?.offset_for_time(timestamp)
    }

    /// Counts the background cleaner's completed passes.
    pub fn cleaner_passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.cleaner.passes()
    }

    /// Runs retention and compaction once, now (the cleaner does it periodically).
    pub fn clean_now(&self) -> Result<()> {
        cleaner::clean(self)
    }

    fn all_partitions(&self) -> Vec<(TopicConfig, Arc<Partition>)> {
        self.inner
            .topics
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| (t.config.clone(), p.clone())))
            .collect()
    }
}

impl Topic {
    fn open(name: &str, dir: PathBuf, config: TopicConfig) -> Result<Topic> {
        let shared_name: Arc<str> = Arc::from(name);
        let partitions = (0..config.partitions)
            .map(|id| {
                Partition::open(
                    shared_name.clone(),
                    id,
                    dir.join(id.to_string()),
                    config.clone(),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Topic {
            config,
            dir,
            partitions,
            sticky: AtomicU32::new(0),
        })
    }

    fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>> {
        usize::try_from(partition)
            .ok()
            .and_then(|index| self.partitions.get(index))
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: self.partitions.len() as i32,
            })
    }
}

/// Kafka's topic name rules: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 249 {
        Some("it is longer than 249 characters")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_config(name: &str, config: &TopicConfig) -> Result<()> {
    let reason = if config.partitions < 1 || config.partitions > 10_000 {
        Some(format!(
            "partitions must be between 1 and 10000, not {}",
            config.partitions
        ))
    } else if config.segment_bytes < 1024 {
        Some("segment.bytes must be at least 1024".to_string())
    } else if config.max_message_bytes < 1024 {
        Some("max.message.bytes must be at least 1024".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LogError::InvalidConfig {
            topic: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `group \0 topic \0 partition` → next offset.
fn group_offset_record(group: &str, offset: &TopicPartitionOffset) -> ProducerRecord {
    let mut key = Vec::with_capacity(group.len() + offset.topic.len() + 6);
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(offset.topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&offset.partition.to_be_bytes());
    ProducerRecord {
        partition: Some(0),
        key: Some(Bytes::from(key)),
        value: Some(Bytes::copy_from_slice(&offset.offset.to_be_bytes())),
        ..ProducerRecord::default()
    }
}

fn parse_group_offset_record(key: &[u8], value: &[u8]) -> Option<(String, TopicPartitionOffset)> {
    let (names, partition_bytes) = key.split_last_chunk::<4>()?;
    let names = names.strip_suffix(&[0])?;
    let split = names.iter().position(|b| *b == 0)?;
    let group = std::str::from_utf8(&names[..split]).ok()?;
    let topic = std::str::from_utf8(&names[split + 1..]).ok()?;
    let offset = i64::from_be_bytes(value.try_into().ok()?);
    Some((
        group.to_string(),
        TopicPartitionOffset {
            topic: topic.to_string(),
            partition: i32::from_be_bytes(*partition_bytes),
            offset,
        },
    ))
}

/// Milliseconds since the epoch, by the wall clock.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs a blocking log call off the async worker threads.
async fn blocking<T: Send + 'static>(
    log: &EmbeddedLog,
    call: impl FnOnce(EmbeddedLog) -> Result<T> + Send + 'static,
) -> Result<T> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || call(log))
        .await
        .map_err(|e| LogError::io("a log task stopped", std::io::Error::other(e)))?
}

#[async_trait]
impl Log for EmbeddedLog {
    async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        let name = name.to_string();
        blocking(self, move |log| log.create_topic_blocking(&name, config)).await
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        blocking(self, move |log| log.delete_topic_blocking(&name)).await
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.list_topics_blocking())
    }

    async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        self.describe_topic_blocking(name)
    }

    async fn produce(
        &self,
        topic: &str,
        records: Vec<ProducerRecord>,
        acks: Acks,
    ) -> Result<Vec<RecordPosition>> {
        if acks == Acks::All {
            let topic = topic.to_string();
            return blocking(self, move |log| log.produce_blocking(&topic, records, acks)).await;
        }
        // Writes to the page cache take microseconds: no need to leave the worker.
        self.produce_blocking(topic, records, acks)
    }

    async fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: ProducerBatch,
        acks: Acks,
    ) -> Result<AppendResult> {
        if acks == Acks::All {
            let topic = topic.to_string();
            return blocking(self, move |log| {
                log.append_blocking(&topic, partition, batch, acks)
            })
            .await;
        }
        self.append_blocking(topic, partition, batch, acks)
    }

    async fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse> {
        self.fetch_blocking(request)
    }

    async fn wait_for_data(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        isolation: IsolationLevel,
        timeout: Duration,
    ) -> Result<bool> {
        let mut ends = self.watch(topic, partition)?;
        let arrived =
            tokio::time::timeout(timeout, ends.wait_for(|e| e.end(isolation) > offset)).await;
        Ok(matches!(arrived, Ok(Ok(_))))
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<i64>> {
        self.offset_for_time_blocking(topic, partition, timestamp)
    }

    async fn offsets(
        &self,
        topic: &str,
        partition: i32,
        isolation: IsolationLevel,
    ) -> Result<(i64, i64)> {
        self.offsets_blocking(topic, partition, isolation)
    }

    async fn commit_offsets(&self, group: &str, offsets: &[TopicPartitionOffset]) -> Result<()> {
        let group = group.to_string();
        let offsets = offsets.to_vec();
        blocking(self, move |log| {
            log.commit_offsets_blocking(&group, &offsets)
        })
        .await
    }

    async fn committed_offsets(&self, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>> {
        Ok(self.committed_offsets_blocking(group, topic))
    }

    async fn init_producer(&self, transactional_id: Option<&str>) -> Result<ProducerIdentity> {
        let id = transactional_id.map(str::to_string);
        blocking(self, move |log| log.init_producer_blocking(id.as_deref())).await
    }

    async fn commit_transaction(
        &self,
        producer: ProducerIdentity,
        offsets: Option<GroupOffsets>,
    ) -> Result<()> {
        blocking(self, move |log| {
            log.commit_transaction_blocking(producer, offsets)
        })
        .await
    }

    async fn abort_transaction(&self, producer: ProducerIdentity) -> Result<()> {
        blocking(self, move |log| log.abort_transaction_blocking(producer)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for good in ["orders", "page_views-2", "a.b", "X"] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "has space", "slash/", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_offset_records_round_trip() {
        let offset = TopicPartitionOffset {
            topic: "orders".into(),
            partition: 7,
            offset: 1234,
        };
        let record = group_offset_record("g1", &offset);
        let parsed = parse_group_offset_record(
            record.key.as_deref().expect("key"),
            record.value.as_deref().expect("value"),
        );
        assert_eq!(parsed, Some(("g1".to_string(), offset)));
    }
}
