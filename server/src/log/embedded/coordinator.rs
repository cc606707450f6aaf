//! The transaction coordinator: producer ids and epochs, the partitions each open
//! transaction wrote to, and the two-phase end of a transaction.
//!
//! A commit first records `PrepareCommit` with its partitions in `__transaction_state`
//! (flushed), then writes a commit marker to each partition, then records `Complete`. If
//! the process stops in between, start-up finds the `PrepareCommit` and writes the missing
//! markers; any other transaction left open is aborted. Entry points: [`init_producer`],
//! [`end_transaction`], [`recover`].

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::partition::Marker;
use super::{
    CONSUMER_OFFSETS_TOPIC, EmbeddedLog, TRANSACTION_STATE_TOPIC, group_offset_record, now_millis,
};
use crate::log::{
    Acks, FetchRequest, GroupOffsets, LogError, ProducerIdentity, ProducerRecord, Result,
};

#[derive(Debug, Default)]
pub struct Coordinator {
    next_producer_id: i64,
    by_transactional_id: HashMap<String, ProducerIdentity>,
    transactional_ids: HashMap<i64, String>,
    /// Partitions written by each open transaction, by producer id.
    open: HashMap<i64, BTreeSet<(String, i32)>>,
}

impl Coordinator {
    /// A transactional write must come from the current epoch of a registered producer.
    pub fn check_transactional(&self, producer: ProducerIdentity) -> Result<()> {
        let Some(transactional_id) = self.transactional_ids.get(&producer.id) else {
            return Err(LogError::InvalidTransactionState(format!(
                "producer {} was not registered with a transactional id",
                producer.id
            )));
        };
        let current = self.by_transactional_id[transactional_id];
        if current.epoch != producer.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: producer.id,
                epoch: producer.epoch,
                current: current.epoch,
            });
        }
        Ok(())
    }

    pub fn add_partition(&mut self, producer: ProducerIdentity, topic: &str, partition: i32) {
        self.open
            .entry(producer.id)
            .or_default()
            .insert((topic.to_string(), partition));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum TransactionState {
    Empty,
    PrepareCommit,
    CompleteCommit,
    CompleteAbort,
}

/// A `__transaction_state` record's value; the key is the transactional id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TransactionEntry {
    producer_id: i64,
    epoch: i16,
    state: TransactionState,
    partitions: Vec<(String, i32)>,
}

fn write_entry(
    log: &EmbeddedLog,
    transactional_id: &str,
    entry: &TransactionEntry,
    acks: Acks,
) -> Result<()> {
    let value = serde_json::to_vec(entry).expect("a transaction entry serializes");
    let record = ProducerRecord {
        partition: Some(0),
        key: Some(Bytes::copy_from_slice(transactional_id.as_bytes())),
        value: Some(Bytes::from(value)),
        ..ProducerRecord::default()
    };
    log.produce_blocking(TRANSACTION_STATE_TOPIC, vec![record], acks)?;
    Ok(())
}

/// Registers a producer; see [`crate::log::Log::init_producer`].
pub fn init_producer(
    log: &EmbeddedLog,
    transactional_id: Option<&str>,
) -> Result<ProducerIdentity> {
    let mut coordinator = log.inner.coordinator.lock();
    let Some(transactional_id) = transactional_id else {
        let id = coordinator.next_producer_id;
        coordinator.next_producer_id += 1;
        return Ok(ProducerIdentity { id, epoch: 0 });
    };
    let identity = match coordinator
        .by_transactional_id
        .get(transactional_id)
        .copied()
    {
        Some(previous) => {
            let epoch = previous.epoch.checked_add(1).ok_or_else(|| {
                LogError::InvalidTransactionState(format!(
                    "transactional id '{transactional_id}' has used every epoch"
                ))
            })?;
            let identity = ProducerIdentity {
                id: previous.id,
                epoch,
            };
            // The new epoch aborts what the old one left open, and fences it.
            let partitions = coordinator.open.remove(&previous.id).unwrap_or_default();
            write_markers(log, identity, &partitions, Marker::Abort)?;
            identity
        }
        None => {
            let id = coordinator.next_producer_id;
            coordinator.next_producer_id += 1;
            ProducerIdentity { id, epoch: 0 }
        }
    };
    let entry = TransactionEntry {
        producer_id: identity.id,
        epoch: identity.epoch,
        state: TransactionState::Empty,
        partitions: Vec::new(),
    };
    write_entry(log, transactional_id, &entry, Acks::All)?;
    coordinator
        .by_transactional_id
        .insert(transactional_id.to_string(), identity);
    coordinator
        .transactional_ids
        .insert(identity.id, transactional_id.to_string());
    Ok(identity)
}

/// Commits (with `offsets`) or aborts the producer's open transaction.
pub fn end_transaction(
    log: &EmbeddedLog,
    producer: ProducerIdentity,
    offsets: Option<GroupOffsets>,
    commit: bool,
) -> Result<()> {
    let mut coordinator = log.inner.coordinator.lock();
    coordinator.check_transactional(producer)?;
    let transactional_id = coordinator.transactional_ids[&producer.id].clone();
    let mut partitions = coordinator.open.remove(&producer.id).unwrap_or_default();
    let offsets = offsets.filter(|_| commit);
    if let Some(group_offsets) = &offsets {
        let records: Vec<ProducerRecord> = group_offsets
            .offsets
            .iter()
            .map(|o| group_offset_record(&group_offsets.group, o))
            .collect();
        let partition = log.partition(CONSUMER_OFFSETS_TOPIC, 0)?;
        partition.append(&records, Some((producer, -1, true)), now_millis())?;
        partitions.insert((CONSUMER_OFFSETS_TOPIC.to_string(), 0));
    }
    if commit {
        let entry = TransactionEntry {
            producer_id: producer.id,
            epoch: producer.epoch,
            state: TransactionState::PrepareCommit,
            partitions: partitions.iter().cloned().collect(),
        };
        write_entry(log, &transactional_id, &entry, Acks::All)?;
    }
    let marker = if commit {
        Marker::Commit
    } else {
        Marker::Abort
    };
    write_markers(log, producer, &partitions, marker)?;
    let entry = TransactionEntry {
        producer_id: producer.id,
        epoch: producer.epoch,
        state: if commit {
            TransactionState::CompleteCommit
        } else {
            TransactionState::CompleteAbort
        },
        partitions: Vec::new(),
    };
    write_entry(log, &transactional_id, &entry, Acks::Leader)?;
    if let Some(group_offsets) = offsets {
        log.apply_group_offsets(&group_offsets.group, &group_offsets.offsets);
    }
    Ok(())
}

/// Writes a marker to each partition and flushes it.
fn write_markers(
    log: &EmbeddedLog,
    producer: ProducerIdentity,
    partitions: &BTreeSet<(String, i32)>,
    marker: Marker,
) -> Result<()> {
    let now = now_millis();
    for (topic, partition_id) in partitions {
        let partition = match log.partition(topic, *partition_id) {
            Ok(partition) => partition,
            // A topic deleted while the transaction was open: nothing left to mark.
            Err(LogError::UnknownTopic(_)) => continue,
            Err(error) => return Err(error),
        };
        partition.write_marker(producer, marker, now)?;
        partition.flush_to(partition.ends().high_watermark)?;
    }
    Ok(())
}

/// Rebuilds the coordinator at start-up and ends the transactions a stop interrupted.
pub fn recover(log: &EmbeddedLog) -> Result<()> {
    let mut entries: HashMap<String, TransactionEntry> = HashMap::new();
    let mut offset = 0;
    loop {
        let response =
            log.fetch_blocking(&FetchRequest::new(TRANSACTION_STATE_TOPIC, 0, offset))?;
        for record in &response.records {
            let (Some(key), Some(value)) = (&record.key, &record.value) else {
                continue;
            };
            match (
                std::str::from_utf8(key),
                serde_json::from_slice::<TransactionEntry>(value),
            ) {
                (Ok(id), Ok(entry)) => {
                    entries.insert(id.to_string(), entry);
                }
                _ => tracing::warn!(
                    offset = record.offset,
                    "skipping an unreadable transaction entry"
                ),
            }
        }
        if response.next_offset >= response.end_offset || response.next_offset == offset {
            break;
        }
        offset = response.next_offset;
    }
    let partitions = log.all_partitions();
    let max_seen = partitions
        .iter()
        .map(|(_, p)| p.max_producer_id())
        .chain(entries.values().map(|e| e.producer_id))
        .max()
        .unwrap_or(-1);
    {
        let mut coordinator = log.inner.coordinator.lock();
        coordinator.next_producer_id = max_seen + 1;
        for (id, entry) in &entries {
            let identity = ProducerIdentity {
                id: entry.producer_id,
                epoch: entry.epoch,
            };
            coordinator.by_transactional_id.insert(id.clone(), identity);
            coordinator
                .transactional_ids
                .insert(identity.id, id.clone());
        }
    }
    for (id, entry) in &entries {
        if entry.state == TransactionState::PrepareCommit {
            let identity = ProducerIdentity {
                id: entry.producer_id,
                epoch: entry.epoch,
            };
            let partitions = entry.partitions.iter().cloned().collect();
            write_markers(log, identity, &partitions, Marker::Commit)?;
            let complete = TransactionEntry {
                state: TransactionState::CompleteCommit,
                partitions: Vec::new(),
                ..entry.clone()
            };
            write_entry(log, id, &complete, Acks::All)?;
            tracing::info!(transactional_id = %id, "completed a transaction committed before the stop");
        }
    }
    for (_, partition) in partitions {
        for producer in partition.open_transactions() {
            partition.write_marker(producer, Marker::Abort, now_millis())?;
            partition.flush_to(partition.ends().high_watermark)?;
            tracing::info!(
                topic = %partition.topic, partition = partition.id, producer = producer.id,
                "aborted a transaction left open by the stop"
            );
        }
    }
    Ok(())
}
