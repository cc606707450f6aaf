//! The cleaner: retention for `delete` topics and compaction for `compact` topics, on a
//! background thread that never holds a partition's lock while it reads or writes files.
//!
//! Compaction rewrites sealed segments (below the last stable offset) keeping, per key, only
//! the record with the highest offset; a tombstone stays until `delete_retention_ms` after
//! it was written, so that readers catching up still see the delete. Offsets never change.
//! Entry points: [`Cleaner::start`], [`clean`].

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::batch::{BatchHeader, BatchProducer, RecordRef, decode_records, encode_batch};
use super::partition::Partition;
use super::segment::read_at;
use super::{EmbeddedLog, now_millis};
use crate::log::{
    CleanupPolicy, FetchRequest, IsolationLevel, LogError, Record, Result, TopicConfig,
};

/// Stops the cleaner thread when the log is dropped.
#[derive(Debug, Default)]
pub struct Cleaner {
    signal: Arc<CleanerSignal>,
}

#[derive(Debug, Default)]
struct CleanerSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
    /// Completed passes, for whoever wants to know that the cleaner has run.
    passes: tokio::sync::watch::Sender<u64>,
}

impl Drop for Cleaner {
    fn drop(&mut self) {
        *self.signal.stopped.lock() = true;
        self.signal.wake.notify_all();
    }
}

impl Cleaner {
    pub fn passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signal.passes.subscribe()
    }

    /// Starts the cleaner thread. It holds the log only to list partitions, so dropping the
    /// last handle closes the log promptly.
    pub fn start(log: &EmbeddedLog, interval: Duration) {
        let weak = Arc::downgrade(&log.inner);
        let signal = log.inner.cleaner.signal.clone();
        let spawned = std::thread::Builder::new()
            .name("riffle-log-cleaner".into())
            .spawn(move || {
                let mut last_cleaned: HashMap<(Arc<str>, i32), i64> = HashMap::new();
                loop {
                    {
                        let mut stopped = signal.stopped.lock();
                        if !*stopped {
                            signal.wake.wait_for(&mut stopped, interval);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    let partitions = EmbeddedLog { inner }.all_partitions();
                    for (config, partition) in partitions {
                        let key = (partition.topic.clone(), partition.id);
                        let end = partition.ends().high_watermark;
                        // Compact again only after new writes (or to expire tombstones).
                        let due = config.cleanup_policy == CleanupPolicy::Delete
                            || last_cleaned.get(&key) != Some(&end)
                            || config.delete_retention_ms < interval.as_millis() as i64;
                        if due {
                            if let Err(error) = clean_partition(&config, &partition) {
                                tracing::warn!(
                                    topic = %partition.topic, partition = partition.id, %error,
                                    "cleaning failed; it will be retried"
                                );
                            }
                            last_cleaned.insert(key, end);
                        }
                    }
                    signal.passes.send_modify(|passes| *passes += 1);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start the log cleaner; retention and compaction are off");
        }
    }
}

/// Applies retention and compaction to every partition, now.
pub fn clean(log: &EmbeddedLog) -> Result<()> {
    for (config, partition) in log.all_partitions() {
        clean_partition(&config, &partition)?;
    }
    Ok(())
}

fn clean_partition(config: &TopicConfig, partition: &Partition) -> Result<()> {
    match config.cleanup_policy {
        CleanupPolicy::Delete => {
            apply_retention(config, partition);
            Ok(())
        }
        CleanupPolicy::Compact => compact(config, partition),
    }
}

fn apply_retention(config: &TopicConfig, partition: &Partition) {
    let now = now_millis();
    let removed = partition.remove_old_segments(|segment, total| {
        let too_old = config
            .retention_ms
            .is_some_and(|ms| segment.max_timestamp < now.saturating_sub(ms));
        let too_big = config
            .retention_bytes
            .is_some_and(|bytes| total.saturating_sub(segment.size) >= bytes);
        too_old || too_big
    });
    if removed > 0 {
        tracing::debug!(topic = %partition.topic, partition = partition.id, removed, "retention removed segments");
    }
}

/// Rewrites the sealed segments keeping the latest record of each key.
fn compact(config: &TopicConfig, partition: &Partition) -> Result<()> {
    let sealed = partition.sealed_segments();
    if sealed.is_empty() {
        return Ok(());
    }
    let latest = latest_offsets(partition)?;
    let aborted = partition.aborted_ranges();
    let now = now_millis();
    let dir = partition.dir();
    for (base_offset, file, size) in sealed {
        let bytes = read_at(&file, 0, size as usize).map_err(|e| io_error(partition, e))?;
        let mut out = Vec::with_capacity(bytes.len());
        let mut changed = false;
        let mut at = 0;
        while at < bytes.len() {
            let rest = bytes.slice(at..);
            let header = BatchHeader::parse(&rest).map_err(|_| corrupt(partition, base_offset))?;
            header
                .verify(&rest)
                .map_err(|_| corrupt(partition, header.base_offset))?;
            let batch = rest.slice(..header.size);
            at += header.size;
            if header.control {
                out.extend_from_slice(&batch);
                continue;
            }
            let in_aborted = header.transactional
                && aborted.iter().any(|(producer, first, last)| {
                    *producer == header.producer_id
                        && *first <= header.base_offset
                        && header.base_offset <= *last
                });
            let mut kept: Vec<Record> = Vec::new();
            let mut total = 0;
            decode_records(&batch, &header, |record| {
                total += 1;
                let latest_for_key = match &record.key {
                    None => true,
                    Some(key) => latest.get(key) == Some(&record.offset),
                };
                let tombstone_expired = record.value.is_none()
                    && now.saturating_sub(header.append_time) >= config.delete_retention_ms;
                if !in_aborted && latest_for_key && !tombstone_expired {
                    kept.push(record);
                }
            })
            .map_err(|_| corrupt(partition, header.base_offset))?;
            if kept.len() == total {
                out.extend_from_slice(&batch);
                continue;
            }
            changed = true;
            if kept.is_empty() {
                continue;
            }
            encode_batch(
                &mut out,
                header.base_offset,
                BatchProducer {
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                    base_sequence: header.base_sequence,
                    transactional: header.transactional,
                },
                false,
                header.append_time,
                kept.iter().map(|record| RecordRef {
                    offset_delta: (record.offset - header.base_offset) as u32,
                    timestamp: record.timestamp,
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    headers: &record.headers,
                }),
            );
        }
        if !changed {
            continue;
        }
        let cleaned = dir.join(format!("{base_offset:020}.log.cleaned"));
        let mut file = File::create(&cleaned).map_err(|e| io_error(partition, e))?;
        file.write_all(&out)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(partition, e))?;
        partition.replace_segment(base_offset, &cleaned)?;
    }
    Ok(())
}

/// The highest offset of each key below the last stable offset (committed data only).
fn latest_offsets(partition: &Partition) -> Result<HashMap<Bytes, i64>> {
    let mut latest = HashMap::new();
    let mut offset = partition.start_offset();
    loop {
        let request = FetchRequest::new(partition.topic.to_string(), partition.id, offset)
            .with_isolation(IsolationLevel::ReadCommitted)
            .with_max_bytes(4 * 1024 * 1024);
        let response = partition.fetch(&request)?;
        for record in &response.records {
            if let Some(key) = &record.key {
                // Copied, so that the map does not pin whole read buffers.
                latest.insert(Bytes::copy_from_slice(key), record.offset);
            }
        }
        if response.next_offset >= response.end_offset || response.next_offset == offset {
            return Ok(latest);
        }
        offset = response.next_offset;
    }
}

fn io_error(partition: &Partition, error: std::io::Error) -> LogError {
    LogError::io(
        format!(
            "compacting topic '{}' partition {}",
            partition.topic, partition.id
        ),
        error,
    )
}

fn corrupt(partition: &Partition, offset: i64) -> LogError {
    LogError::Corrupt {
        topic: partition.topic.to_string(),
        partition: partition.id,
        offset,
        reason: "a sealed segment failed its checksum during compaction".to_string(),
    }
}
