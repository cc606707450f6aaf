//! A transactional producer over any [`Log`]: records for several topics and partitions,
//! then one commit that makes them visible together with consumer offsets (Kafka's
//! exactly-once write path: read, process, write, commit offsets, atomically).
//!
//! Entry point: [`TransactionalProducer`].

use std::collections::HashMap;
use std::sync::Arc;

use super::partitioner::partition_for_key;
use super::{Acks, GroupOffsets, Log, ProducerBatch, ProducerIdentity, ProducerRecord, Result};

/// About how many bytes one append carries at most (well under any topic's
/// `max.message.bytes`): large transactions go in several appends.
const APPEND_BYTES: usize = 1024 * 1024;

/// Writes records in transactions. Registering fences any earlier producer with the same
/// transactional id and aborts its open transaction, so a restarted writer never commits
/// what a stopped one left half done.
#[derive(Debug)]
pub struct TransactionalProducer {
    log: Arc<dyn Log>,
    identity: ProducerIdentity,
    /// The next sequence number per partition.
    sequences: HashMap<(String, i32), i32>,
    /// The partition count of each topic written to.
    partition_counts: HashMap<String, i32>,
    /// Spreads keyless records over partitions, one partition per call.
    round_robin: u32,
}

impl TransactionalProducer {
    pub async fn new(log: Arc<dyn Log>, transactional_id: &str) -> Result<Self> {
        let identity = log.init_producer(Some(transactional_id)).await?;
        Ok(Self {
            log,
            identity,
            sequences: HashMap::new(),
            partition_counts: HashMap::new(),
            round_robin: 0,
        })
    }

    /// Writes records into the open transaction (opened by the first write after a
    /// commit). Partitions are chosen as [`Log::produce`] chooses them.
    pub async fn send(&mut self, topic: &str, records: Vec<ProducerRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let count = match self.partition_counts.get(topic) {
            Some(count) => *count,
            None => {
                let count = self.log.describe_topic(topic).await?.partitions.len() as i32;
                self.partition_counts
                    .insert(topic.to_string(), count.max(1));
                count.max(1)
            }
        };
        self.round_robin = self.round_robin.wrapping_add(1);
        let keyless = (self.round_robin % count as u32) as i32;
        let mut by_partition: HashMap<i32, Vec<ProducerRecord>> = HashMap::new();
        for mut record in records {
            let partition = match (record.partition.take(), &record.key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => keyless,
            };
            by_partition.entry(partition).or_default().push(record);
        }
        for (partition, records) in by_partition {
            for chunk in chunks_of_bytes(records, APPEND_BYTES) {
                self.append(topic, partition, chunk).await?;
            }
        }
        Ok(())
    }

    async fn append(
        &mut self,
        topic: &str,
        partition: i32,
        records: Vec<ProducerRecord>,
    ) -> Result<()> {
        let sequence = self
            .sequences
            .entry((topic.to_string(), partition))
            .or_insert(0);
        let base_sequence = *sequence;
        *sequence = sequence.wrapping_add(records.len() as i32);
        let batch = ProducerBatch {
            producer: self.identity,
            base_sequence,
            transactional: true,
            records,
        };
        // The commit flushes every partition the transaction wrote to.
        self.log
            .append(topic, partition, batch, Acks::Leader)
            .await?;
        Ok(())
    }

    /// Commits what was written since the last commit, with `offsets`, atomically: readers
    /// in `ReadCommitted` see all of it or none of it.
    pub async fn commit(&mut self, offsets: Option<GroupOffsets>) -> Result<()> {
        self.log.commit_transaction(self.identity, offsets).await
    }

    /// Drops what was written since the last commit.
    pub async fn abort(&mut self) -> Result<()> {
        self.log.abort_transaction(self.identity).await
    }
}

/// Splits records into runs of about `limit` bytes (at least one record each).
fn chunks_of_bytes(records: Vec<ProducerRecord>, limit: usize) -> Vec<Vec<ProducerRecord>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for record in records {
        let size = record.key.as_ref().map_or(0, |k| k.len())
            + record.value.as_ref().map_or(0, |v| v.len())
            + record
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>()
            + 32;
        if !chunk.is_empty() && bytes + size > limit {
            chunks.push(std::mem::take(&mut chunk));
            bytes = 0;
        }
        bytes += size;
        chunk.push(record);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{
        EmbeddedLog, FetchRequest, IsolationLevel, TopicConfig, TopicPartitionOffset,
    };

    fn record(key: &str, value: &str) -> ProducerRecord {
        ProducerRecord::new(Some(key.to_string()), Some(value.to_string()))
    }

    async fn committed_values(log: &dyn Log, topic: &str) -> Vec<String> {
        let mut values = Vec::new();
        for partition in 0..log
            .describe_topic(topic)
            .await
            .expect("a topic")
            .partitions
            .len()
        {
            let request = FetchRequest::new(topic, partition as i32, 0)
                .with_isolation(IsolationLevel::ReadCommitted);
            let response = log.fetch(&request).await.expect("reads");
            values.extend(response.records.iter().filter_map(|r| {
                r.value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            }));
        }
        values.sort();
        values
    }

    #[tokio::test]
    async fn records_and_offsets_commit_together_and_a_restarted_producer_drops_an_open_transaction()
     {
        let dir = tempfile::tempdir().expect("a directory");
        let log: Arc<dyn Log> =
            Arc::new(EmbeddedLog::open(dir.path(), Default::default()).expect("opens"));
        log.create_topic("out", TopicConfig::new(3))
            .await
            .expect("creates");
        let mut producer = TransactionalProducer::new(log.clone(), "q1")
            .await
            .expect("registers");
        producer
            .send(
                "out",
                vec![record("a", "1"), record("b", "2"), record("c", "3")],
            )
            .await
            .expect("writes");
        assert!(committed_values(&*log, "out").await.is_empty());
        let offsets = GroupOffsets {
            group: "q1".into(),
            offsets: vec![TopicPartitionOffset {
                topic: "in".into(),
                partition: 0,
                offset: 42,
            }],
        };
        producer.commit(Some(offsets)).await.expect("commits");
        assert_eq!(committed_values(&*log, "out").await, ["1", "2", "3"]);
        assert_eq!(
            log.committed_offsets("q1", "in").await.expect("reads")[&0],
            42
        );
        // A second transaction left open, then a new producer with the same id.
        producer
            .send("out", vec![record("a", "4")])
            .await
            .expect("writes");
        let mut restarted = TransactionalProducer::new(log.clone(), "q1")
            .await
            .expect("registers");
        assert!(
            producer.commit(None).await.is_err(),
            "the old one is fenced"
        );
        restarted
            .send("out", vec![record("b", "5")])
            .await
            .expect("writes");
        restarted.commit(None).await.expect("commits");
        assert_eq!(committed_values(&*log, "out").await, ["1", "2", "3", "5"]);
    }

    #[test]
    fn large_writes_go_in_several_appends() {
        let records: Vec<ProducerRecord> = (0..10).map(|_| record("k", &"x".repeat(400))).collect();
        let chunks = chunks_of_bytes(records, 1000);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 2, 2, 2]
        );
    }
}
