//! One partition of the embedded log: its segments, the producers writing to it, its open
//! and aborted transactions, and the end offsets readers wait on.
//!
//! Writers take the partition's lock to assign offsets and write to the page cache; reads
//! copy what they need under the lock and read files outside it. `acks=all` writers share
//! flushes through [`Partition::flush_to`]. Entry points: [`Partition::open`],
//! [`Partition::append`], [`Partition::fetch`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::batch::{
    BatchDefect, BatchHeader, BatchProducer, HEADER_LEN, RecordRef, decode_records, encode_batch,
};
use super::segment::{self, ScannedBatch, Segment, parse_segment_name};
use crate::log::{
    FetchRequest, FetchResponse, IsolationLevel, LogError, ProducerIdentity, ProducerRecord,
    Record, Result, TopicConfig,
};

/// Batches an idempotent producer may retry, per partition (as Kafka keeps).
const RECENT_BATCHES: usize = 5;

/// The ends of a partition, as readers of each isolation level see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEnds {
    /// One past the last record written.
    pub high_watermark: i64,
    /// The first offset of the oldest open transaction, or the high watermark.
    pub last_stable: i64,
}

impl PartitionEnds {
    pub fn end(&self, isolation: IsolationLevel) -> i64 {
        match isolation {
            IsolationLevel::ReadUncommitted => self.high_watermark,
            IsolationLevel::ReadCommitted => self.last_stable,
        }
    }
}

/// The outcome of an append: where the batch went and what must be flushed for
/// `acks=all`.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    /// One past the last offset written.
    pub end_offset: i64,
    pub duplicate: bool,
}

/// Whether a marker commits or aborts a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort = 0,
    Commit = 1,
}

#[derive(Debug, Clone, Copy)]
struct AbortedTransaction {
    producer_id: i64,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerState {
    epoch: i16,
    last_sequence: i32,
    /// (first sequence, last sequence, base offset) of recent batches.
    recent: VecDeque<(i32, i32, i64)>,
}

impl ProducerState {
    /// A new epoch starts its sequences again at 0.
    fn enter_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.last_sequence = -1;
            self.recent.clear();
        }
    }
}

#[derive(Debug)]
struct PartitionState {
    dir: PathBuf,
    config: TopicConfig,
    segments: Vec<Segment>,
    next_offset: i64,
    producers: HashMap<i64, ProducerState>,
    /// Open transactions by first offset, and the reverse.
    open_by_offset: BTreeMap<i64, i64>,
    open_by_producer: HashMap<i64, i64>,
    aborted: Vec<AbortedTransaction>,
    encode_buffer: Vec<u8>,
}

#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub id: i32,
    state: Mutex<PartitionState>,
    /// The offset below which everything is flushed to disk.
    flushed: Mutex<i64>,
    ends: watch::Sender<PartitionEnds>,
}

/// What a read needs from the partition, copied under its lock.
struct ReadPlan {
    file: Arc<File>,
    position: u64,
    readable_end: u64,
    corrupt_at: Option<u64>,
    segment_next_offset: i64,
}

impl Partition {
    /// Opens (or creates) the partition in `dir`, recovering its state from the segments.
    pub fn open(topic: Arc<str>, id: i32, dir: PathBuf, config: TopicConfig) -> Result<Partition> {
        let context = || {
            format!(
                "opening topic '{topic}' partition {id} in {}",
                dir.display()
            )
        };
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io(context(), e))?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| LogError::io(context(), e))? {
            let entry = entry.map_err(|e| LogError::io(context(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(base) = parse_segment_name(&name) {
                bases.push(base);
            } else if name.ends_with(".cleaned") || name.ends_with(".tmp") {
                // Left by a compaction that did not finish; the original is intact.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();
        let mut state = PartitionState {
            dir: dir.clone(),
            config,
            segments: Vec::with_capacity(bases.len().max(1)),
            next_offset: 0,
            producers: HashMap::new(),
            open_by_offset: BTreeMap::new(),
            open_by_producer: HashMap::new(),
            aborted: Vec::new(),
            encode_buffer: Vec::new(),
        };
        for (i, base) in bases.iter().enumerate() {
            let recover = i + 1 == bases.len();
            let path = segment::segment_path(&dir, *base);
            let (segment, defect) = Segment::open(path, *base, recover, |scanned| {
                state.replay(&scanned);
            })
            .map_err(|e| LogError::io(context(), e))?;
            if let (Some(defect), false) = (defect, recover) {
                tracing::error!(
                    topic = %topic, partition = id, segment = base, ?defect,
                    "segment is corrupt; reads past the damage will fail"
                );
            }
            state.next_offset = segment.next_offset.max(state.next_offset);
            state.segments.push(segment);
        }
        if state.segments.is_empty() {
            let segment = Segment::create(&dir, 0).map_err(|e| LogError::io(context(), e))?;
            sync_dir(&dir).map_err(|e| LogError::io(context(), e))?;
            state.segments.push(segment);
        }
        let ends = state.ends();
        let next_offset = state.next_offset;
        Ok(Partition {
            topic,
            id,
            state: Mutex::new(state),
            flushed: Mutex::new(next_offset),
            ends: watch::Sender::new(ends),
        })
    }

    pub fn ends(&self) -> PartitionEnds {
        *self.ends.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<PartitionEnds> {
        self.ends.subscribe()
    }

    pub fn start_offset(&self) -> i64 {
        self.state.lock().segments[0].base_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.state.lock().segments.iter().map(|s| s.size).sum()
    }

    /// Writes records as one or more batches. `producer` is `None` for a plain producer.
    pub fn append(
        &self,
        records: &[ProducerRecord],
        producer: Option<(ProducerIdentity, i32, bool)>,
        now: i64,
    ) -> Result<Appended> {
        let mut state = self.state.lock();
        if let Some((identity, base_sequence, _)) = producer {
            if base_sequence >= 0 {
                if let Some(duplicate) =
                    state.check_sequence(self, identity, base_sequence, records.len())?
                {
                    return Ok(duplicate);
                }
            } else {
                // The coordinator's own writes carry no sequence; only the epoch is checked.
                state.check_epoch(identity)?;
            }
        }
        let base_offset = state.next_offset;
        if records.is_empty() {
            return Ok(Appended {
                base_offset,
                end_offset: base_offset,
                duplicate: false,
            });
        }
        let batch_producer = producer.map_or(BatchProducer::NONE, |(identity, sequence, tx)| {
            BatchProducer {
                producer_id: identity.id,
                epoch: identity.epoch,
                base_sequence: sequence,
                transactional: tx,
            }
        });
        state.write_records(self, records, batch_producer, now)?;
        if let Some((identity, base_sequence, transactional)) = producer {
            let entry = state.producers.entry(identity.id).or_default();
            entry.enter_epoch(identity.epoch);
            if base_sequence >= 0 {
                let last_sequence = base_sequence + records.len() as i32 - 1;
                entry.last_sequence = last_sequence;
                entry
                    .recent
                    .push_back((base_sequence, last_sequence, base_offset));
                if entry.recent.len() > RECENT_BATCHES {
                    entry.recent.pop_front();
                }
            }
            if transactional && !state.open_by_producer.contains_key(&identity.id) {
                state.open_by_producer.insert(identity.id, base_offset);
                state.open_by_offset.insert(base_offset, identity.id);
            }
        }
        let end_offset = state.next_offset;
        self.ends.send_replace(state.ends());
        Ok(Appended {
            base_offset,
            end_offset,
            duplicate: false,
        })
    }

    /// Ends `producer`'s open transaction here, if it has one, with a marker.
    pub fn write_marker(&self, producer: ProducerIdentity, marker: Marker, now: i64) -> Result<()> {
        let mut state = self.state.lock();
        state.check_epoch(producer)?;
        state
            .producers
            .entry(producer.id)
            .or_default()
            .enter_epoch(producer.epoch);
        let Some(first_offset) = state.open_by_producer.get(&producer.id).copied() else {
            return Ok(());
        };
        let marker_offset = state.next_offset;
        let key = [0u8, 0, 0, marker as u8];
        let mut buffer = std::mem::take(&mut state.encode_buffer);
        buffer.clear();
        encode_batch(
            &mut buffer,
            marker_offset,
            BatchProducer {
                producer_id: producer.id,
                epoch: producer.epoch,
                base_sequence: -1,
                transactional: true,
            },
            true,
            now,
            std::iter::once(RecordRef {
                offset_delta: 0,
                timestamp: now,
                key: Some(&key),
                value: None,
                headers: &[],
            }),
        );
        let result = state.write_encoded(self, &buffer);
        state.encode_buffer = buffer;
        result?;
        state.close_transaction(producer.id, first_offset, marker_offset, marker);
        self.ends.send_replace(state.ends());
        Ok(())
    }

    /// The producers with a transaction open here (after recovery: the ones a crash cut off).
    pub fn open_transactions(&self) -> Vec<ProducerIdentity> {
        let state = self.state.lock();
        state
            .open_by_producer
            .keys()
            .map(|id| ProducerIdentity {
                id: *id,
                epoch: state.producers.get(id).map_or(0, |p| p.epoch),
            })
            .collect()
    }

    /// The largest producer id seen here, so new ids never reuse one.
    pub fn max_producer_id(&self) -> i64 {
        self.state
            .lock()
            .producers
            .keys()
            .copied()
            .max()
            .unwrap_or(-1)
    }

    /// Blocks until every offset below `end_offset` is on disk. Concurrent callers share
    /// flushes: whoever flushes covers everything written before it started.
    ///
    /// Lock order: `flushed`, then `state` (never the other way round).
    pub fn flush_to(&self, end_offset: i64) -> Result<()> {
        let mut flushed = self.flushed.lock();
        if *flushed >= end_offset {
            return Ok(());
        }
        let (file, target) = {
            let state = self.state.lock();
            (state.active().file.clone(), state.next_offset)
        };
        file.sync_data().map_err(|e| {
            LogError::io(
                format!("flushing topic '{}' partition {}", self.topic, self.id),
                e,
            )
        })?;
        *flushed = target;
        Ok(())
    }

    /// Reads records from `request.offset`, up to the end for the request's isolation level.
    pub fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse> {
        let mut records = Vec::new();
        let mut offset = request.offset;
        let mut budget = request.max_bytes;
        let (end_offset, aborted) = {
            let state = self.state.lock();
            let start = state.segments[0].base_offset;
            if offset < start || offset > state.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    topic: self.topic.to_string(),
                    partition: self.id,
                    offset,
                    start,
                    end: state.next_offset,
                });
            }
            let end = state.ends().end(request.isolation);
            let aborted = match request.isolation {
                IsolationLevel::ReadCommitted => state.aborted_between(offset, end),
                IsolationLevel::ReadUncommitted => Vec::new(),
            };
            (end, aborted)
        };
        while offset < end_offset && records.len() < request.max_records {
            let Some(plan) = self.read_plan(offset) else {
                break;
            };
            let next = self.read_segment(
                &plan,
                offset,
                end_offset,
                &aborted,
                &mut budget,
                request.max_records,
                &mut records,
            )?;
            offset = next;
            if budget == 0 {
                break;
            }
        }
        Ok(FetchResponse {
            records,
            next_offset: offset,
            end_offset,
        })
    }

    /// The segment holding `offset` (or the next one, past a gap), under the lock.
    fn read_plan(&self, offset: i64) -> Option<ReadPlan> {
        let state = self.state.lock();
        let index = state
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        let segment = state.segments[index..]
            .iter()
            .find(|s| s.next_offset > offset)?;
        Some(ReadPlan {
            file: segment.file.clone(),
            position: segment.position_for_offset(offset),
            readable_end: segment.size,
            corrupt_at: segment.corrupt_at,
            segment_next_offset: segment.next_offset,
        })
    }

    /// Reads batches from one segment; returns the offset to continue from.
    #[allow(clippy::too_many_arguments)]
    fn read_segment(
        &self,
        plan: &ReadPlan,
        mut offset: i64,
        end_offset: i64,
        aborted: &[AbortedTransaction],
        budget: &mut usize,
        max_records: usize,
        records: &mut Vec<Record>,
    ) -> Result<i64> {
        let mut position = plan.position;
        while position < plan.readable_end && offset < end_offset && records.len() < max_records {
            if plan.corrupt_at.is_some_and(|at| position >= at) {
                return Err(self.corrupt(offset, "unreadable bytes found when the log started"));
            }
            let available = (plan.readable_end - position) as usize;
            let want = available.min((*budget).max(HEADER_LEN));
            let mut chunk = self.read(&plan.file, position, want)?;
            let first = BatchHeader::parse(&chunk).map_err(|d| self.defect(offset, d))?;
            if first.size > chunk.len() {
                chunk = self.read(&plan.file, position, first.size.min(available))?;
            }
            let mut at = 0;
            while at < chunk.len() && offset < end_offset && records.len() < max_records {
                let rest = chunk.slice(at..);
                let header = match BatchHeader::parse(&rest) {
                    Ok(header) if header.size <= rest.len() => header,
                    Ok(_) | Err(BatchDefect::Truncated) if at > 0 => break,
                    Ok(_) | Err(BatchDefect::Truncated) => {
                        return Err(self.defect(offset, BatchDefect::Truncated));
                    }
                    Err(defect) => return Err(self.defect(offset, defect)),
                };
                header
                    .verify(&rest)
                    .map_err(|d| self.defect(header.base_offset, d))?;
                at += header.size;
                if header.last_offset() < offset {
                    continue;
                }
                if header.base_offset >= end_offset {
                    return Ok(offset);
                }
                if !header.control {
                    let skip = header.transactional
                        && aborted.iter().any(|a| {
                            a.producer_id == header.producer_id
                                && a.first_offset <= header.base_offset
                                && header.base_offset <= a.last_offset
                        });
                    let batch_bytes = rest.slice(..header.size);
                    let mut last_returned = None;
                    decode_records(&batch_bytes, &header, |record| {
                        if !skip
                            && record.offset >= offset
                            && record.offset < end_offset
                            && records.len() < max_records
                        {
                            last_returned = Some(record.offset);
                            records.push(record);
                        }
                    })
                    .map_err(|d| self.defect(header.base_offset, d))?;
                    if records.len() >= max_records
                        && let Some(last) = last_returned
                    {
                        return Ok(last + 1);
                    }
                }
                offset = (header.last_offset() + 1).min(end_offset).max(offset);
                *budget = budget.saturating_sub(header.size);
                if *budget == 0 {
                    return Ok(offset);
                }
            }
            position += at as u64;
            if at == 0 {
                break;
            }
        }
        if position >= plan.readable_end && offset < plan.segment_next_offset {
            // Offsets removed by compaction at the end of the segment.
            offset = plan.segment_next_offset.min(end_offset);
        }
        Ok(offset)
    }

    fn read(&self, file: &File, position: u64, len: usize) -> Result<Bytes> {
        segment::map_at(file, position, len).map_err(|e| {
            LogError::io(
                format!("reading topic '{}' partition {}", self.topic, self.id),
                e,
            )
        })
    }

    /// The first offset whose record time is at or after `timestamp`.
    pub fn offset_for_time(&self, timestamp: i64) -> Result<Option<i64>> {
        let plans: Vec<(Arc<File>, u64, u64)> = {
            let state = self.state.lock();
            state
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= timestamp)
                .map(|s| (s.file.clone(), s.position_for_time(timestamp), s.size))
                .collect()
        };
        for (file, mut position, size) in plans {
            while position < size {
                let header_bytes = self.read(&file, position, HEADER_LEN)?;
                let header = BatchHeader::parse(&header_bytes).map_err(|d| self.defect(-1, d))?;
                if header.max_timestamp >= timestamp && !header.control {
                    let bytes = self.read(&file, position, header.size)?;
                    header
                        .verify(&bytes)
                        .map_err(|d| self.defect(header.base_offset, d))?;
                    let mut found = None;
                    decode_records(&bytes, &header, |record| {
                        if found.is_none() && record.timestamp >= timestamp {
                            found = Some(record.offset);
                        }
                    })
                    .map_err(|d| self.defect(header.base_offset, d))?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                position += header.size as u64;
            }
        }
        Ok(None)
    }

    fn defect(&self, offset: i64, defect: BatchDefect) -> LogError {
        let reason = match defect {
            BatchDefect::Truncated => "a batch is cut short",
            BatchDefect::Corrupt(reason) => reason,
        };
        self.corrupt(offset, reason)
    }

    fn corrupt(&self, offset: i64, reason: &str) -> LogError {
        LogError::Corrupt {
            topic: self.topic.to_string(),
            partition: self.id,
            offset,
            reason: reason.to_string(),
        }
    }

    // ---- Cleaner support -------------------------------------------------------------------

    /// Removes whole, inactive segments that `expired` selects (oldest first, stopping at
    /// the first kept one). Returns how many were removed.
    pub fn remove_old_segments(&self, mut expired: impl FnMut(&Segment, u64) -> bool) -> usize {
        let removed: Vec<PathBuf> = {
            let mut state = self.state.lock();
            let mut total: u64 = state.segments.iter().map(|s| s.size).sum();
            let mut count = 0;
            while count + 1 < state.segments.len() && expired(&state.segments[count], total) {
                total -= state.segments[count].size;
                count += 1;
            }
            let removed = state.segments.drain(..count).map(|s| s.path).collect();
            // Offsets below the new start are gone; aborted ranges there are moot.
            let start = state.segments[0].base_offset;
            state.aborted.retain(|a| a.last_offset >= start);
            removed
        };
        for path in &removed {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %error, "could not delete an expired segment");
            }
        }
        removed.len()
    }

    /// The inactive segments below the last stable offset, for compaction: (base offset,
    /// file, size).
    pub fn sealed_segments(&self) -> Vec<(i64, Arc<File>, u64)> {
        let state = self.state.lock();
        let stable = state.ends().last_stable;
        let count = state.segments.len() - 1;
        state.segments[..count]
            .iter()
            .filter(|s| s.next_offset <= stable && s.corrupt_at.is_none())
            .map(|s| (s.base_offset, s.file.clone(), s.size))
            .collect()
    }

    pub fn aborted_ranges(&self) -> Vec<(i64, i64, i64)> {
        let state = self.state.lock();
        state
            .aborted
            .iter()
            .map(|a| (a.producer_id, a.first_offset, a.last_offset))
            .collect()
    }

    pub fn dir(&self) -> PathBuf {
        self.state.lock().dir.clone()
    }

    /// Swaps a compacted copy in for the segment at `base_offset`: the copy at `cleaned` is
    /// scanned first, then renamed over the original under the lock. Readers of the old file
    /// finish on it undisturbed.
    pub fn replace_segment(&self, base_offset: i64, cleaned: &Path) -> Result<()> {
        let context = || format!("compacting topic '{}' partition {}", self.topic, self.id);
        let (mut segment, defect) =
            Segment::open(cleaned.to_path_buf(), base_offset, false, |_| {})
                .map_err(|e| LogError::io(context(), e))?;
        if let Some(defect) = defect {
            let _ = std::fs::remove_file(cleaned);
            return Err(self.defect(base_offset, defect));
        }
        let mut state = self.state.lock();
        let Some(index) = state
            .segments
            .iter()
            .position(|s| s.base_offset == base_offset)
        else {
            // Retention removed it meanwhile.
            let _ = std::fs::remove_file(cleaned);
            return Ok(());
        };
        let path = state.segments[index].path.clone();
        std::fs::rename(cleaned, &path).map_err(|e| LogError::io(context(), e))?;
        sync_dir(&state.dir).map_err(|e| LogError::io(context(), e))?;
        segment.path = path;
        // Compaction keeps a segment's offset range even when its last records go.
        segment.next_offset = segment.next_offset.max(state.segments[index].next_offset);
        state.segments[index] = segment;
        Ok(())
    }
}

impl PartitionState {
    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a partition always has an active segment")
    }

    fn ends(&self) -> PartitionEnds {
        PartitionEnds {
            high_watermark: self.next_offset,
            last_stable: self
                .open_by_offset
                .keys()
                .next()
                .copied()
                .unwrap_or(self.next_offset),
        }
    }

    fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTransaction> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Rebuilds producer and transaction state from one batch found by the start-up scan.
    fn replay(&mut self, scanned: &ScannedBatch<'_>) {
        let header = &scanned.header;
        self.next_offset = header.last_offset() + 1;
        if header.producer_id < 0 {
            return;
        }
        let producer = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch > producer.epoch || producer.recent.is_empty() {
            producer.enter_epoch(header.producer_epoch);
        }
        if header.control {
            let marker = scanned
                .bytes
                .and_then(|bytes| control_marker(bytes, header))
                .unwrap_or(Marker::Abort);
            if let Some(first) = self.open_by_producer.get(&header.producer_id).copied() {
                self.close_transaction(header.producer_id, first, header.base_offset, marker);
            }
            return;
        }
        if header.base_sequence >= 0 {
            let last = header.base_sequence + header.record_count as i32 - 1;
            producer.last_sequence = last;
            producer
                .recent
                .push_back((header.base_sequence, last, header.base_offset));
            if producer.recent.len() > RECENT_BATCHES {
                producer.recent.pop_front();
            }
        }
        if header.transactional && !self.open_by_producer.contains_key(&header.producer_id) {
            self.open_by_producer
                .insert(header.producer_id, header.base_offset);
            self.open_by_offset
                .insert(header.base_offset, header.producer_id);
        }
    }

    fn close_transaction(
        &mut self,
        producer_id: i64,
        first: i64,
        marker_offset: i64,
        marker: Marker,
    ) {
        self.open_by_producer.remove(&producer_id);
        self.open_by_offset.remove(&first);
        if marker == Marker::Abort {
            self.aborted.push(AbortedTransaction {
                producer_id,
                first_offset: first,
                last_offset: marker_offset,
            });
        }
    }

    fn check_epoch(&self, identity: ProducerIdentity) -> Result<()> {
        match self.producers.get(&identity.id) {
            Some(state) if state.epoch > identity.epoch => Err(LogError::ProducerFenced {
                producer_id: identity.id,
                epoch: identity.epoch,
                current: state.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Checks an idempotent batch's epoch and sequence. `Some` for a retried batch that is
    /// already written.
    fn check_sequence(
        &self,
        partition: &Partition,
        identity: ProducerIdentity,
        base_sequence: i32,
        count: usize,
    ) -> Result<Option<Appended>> {
        let Some(state) = self.producers.get(&identity.id) else {
            return if base_sequence == 0 {
                Ok(None)
            } else {
                Err(LogError::OutOfOrderSequence {
                    topic: partition.topic.to_string(),
                    partition: partition.id,
                    producer_id: identity.id,
                    expected: 0,
                    received: base_sequence,
                })
            };
        };
        if identity.epoch < state.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: identity.id,
                epoch: identity.epoch,
                current: state.epoch,
            });
        }
        let expected = if identity.epoch > state.epoch || state.recent.is_empty() {
            0
        } else {
            state.last_sequence.wrapping_add(1)
        };
        if identity.epoch == state.epoch
            && let Some((first, last, base_offset)) = state
                .recent
                .iter()
                .find(|(first, _, _)| *first == base_sequence)
                .copied()
            && (last - first + 1) as usize == count
        {
            return Ok(Some(Appended {
                base_offset,
                end_offset: base_offset + count as i64,
                duplicate: true,
            }));
        }
        if base_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                topic: partition.topic.to_string(),
                partition: partition.id,
                producer_id: identity.id,
                expected,
                received: base_sequence,
            });
        }
        Ok(None)
    }

    /// Encodes records as batches of at most `max_message_bytes` and writes them.
    fn write_records(
        &mut self,
        partition: &Partition,
        records: &[ProducerRecord],
        producer: BatchProducer,
        now: i64,
    ) -> Result<()> {
        let max = self.config.max_message_bytes;
        let mut buffer = std::mem::take(&mut self.encode_buffer);
        buffer.clear();
        let mut start = 0;
        let mut offset = self.next_offset;
        let mut sequence = producer.base_sequence;
        while start < records.len() {
            // Greedy split by estimated size; each batch holds at least one record.
            let mut end = start;
            let mut estimate = HEADER_LEN;
            while end < records.len() {
                let size = estimated_size(&records[end]);
                if end > start && estimate + size > max {
                    break;
                }
                estimate += size;
                end += 1;
            }
            let batch_start = buffer.len();
            let chunk = &records[start..end];
            let base = offset;
            encode_batch(
                &mut buffer,
                base,
                BatchProducer {
                    base_sequence: sequence,
                    ..producer
                },
                false,
                now,
                chunk.iter().enumerate().map(|(i, record)| RecordRef {
                    offset_delta: i as u32,
                    timestamp: record.timestamp.unwrap_or(now),
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    headers: &record.headers,
                }),
            );
            let size = buffer.len() - batch_start;
            if size > max {
                self.encode_buffer = buffer;
                return Err(LogError::RecordTooLarge {
                    topic: partition.topic.to_string(),
                    partition: partition.id,
                    size,
                    max,
                });
            }
            offset += chunk.len() as i64;
            if sequence >= 0 {
                sequence += chunk.len() as i32;
            }
            start = end;
        }
        let result = self.write_encoded(partition, &buffer);
        self.encode_buffer = buffer;
        result
    }

    /// Writes encoded batches to the active segment, starting a new one when it is full.
    fn write_encoded(&mut self, partition: &Partition, bytes: &[u8]) -> Result<()> {
        let mut headers = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..]).expect("batches encoded here parse back");
            at += header.size;
            headers.push(header);
        }
        let context = || {
            format!(
                "writing to topic '{}' partition {}",
                partition.topic, partition.id
            )
        };
        let active = self.active();
        if active.size > 0 && active.size + bytes.len() as u64 > self.config.segment_bytes {
            self.roll().map_err(|e| LogError::io(context(), e))?;
        }
        let segment = self
            .segments
            .last_mut()
            .expect("a partition always has an active segment");
        segment
            .append(bytes, &headers)
            .map_err(|e| LogError::io(context(), e))?;
        self.next_offset = segment.next_offset;
        Ok(())
    }

    /// Seals the active segment (flushing it, so only the newest segment can have a torn
    /// tail, and so that flushing the active segment flushes everything) and starts a new one.
    fn roll(&mut self) -> std::io::Result<()> {
        let active = self
            .segments
            .last_mut()
            .expect("a partition always has an active segment");
        active.seal()?;
        active.file.sync_data()?;
        let segment = Segment::create(&self.dir, self.next_offset)?;
        sync_dir(&self.dir)?;
        self.segments.push(segment);
        Ok(())
    }
}

/// The marker type of a control batch's record key.
fn control_marker(bytes: &[u8], header: &BatchHeader) -> Option<Marker> {
    let bytes = Bytes::copy_from_slice(bytes);
    let mut marker = None;
    decode_records(&bytes, header, |record| {
        marker = record.key.as_deref().and_then(|key| match key.get(3) {
            Some(1) => Some(Marker::Commit),
            Some(0) => Some(Marker::Abort),
            _ => None,
        });
    })
    .ok()?;
    marker
}

fn estimated_size(record: &ProducerRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + 10)
        .sum();
    record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + headers
        + 24
}

/// Makes a directory's entries (new or renamed files) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
