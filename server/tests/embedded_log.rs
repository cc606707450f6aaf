//! Behaviour of the embedded log as a user of the `Log` API observes it: topics, records,
//! partitioning, acks, idempotence, fetch limits, waiting, time lookups, consumer groups,
//! transactions, retention, compaction, crash recovery and bad input.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use riffle_server::log::partitioner::partition_for_key;
use riffle_server::log::{
    Acks, FetchRequest, GroupOffsets, Header, IsolationLevel, Log, LogError, ProducerBatch,
    ProducerRecord, Record, TopicConfig, TopicPartitionOffset,
};

fn open(dir: &std::path::Path) -> EmbeddedLog {
    EmbeddedLog::open(dir, EmbeddedOptions::default()).expect("the log opens")
}

fn record(key: &str, value: &str) -> ProducerRecord {
    ProducerRecord::new(Some(key.to_string()), Some(value.to_string()))
}

fn to_partition(partition: i32, key: &str, value: &str) -> ProducerRecord {
    ProducerRecord {
        partition: Some(partition),
        ..record(key, value)
    }
}

/// Every record of a partition, from its start, for one isolation level.
fn read_all(
    log: &EmbeddedLog,
    topic: &str,
    partition: i32,
    isolation: IsolationLevel,
) -> Vec<Record> {
    let (mut offset, _) = log
        .offsets_blocking(topic, partition, isolation)
        .expect("offsets");
    let mut records = Vec::new();
    loop {
        let response = log
            .fetch_blocking(&FetchRequest::new(topic, partition, offset).with_isolation(isolation))
            .expect("fetch");
        records.extend(response.records);
        if response.next_offset >= response.end_offset {
            return records;
        }
        assert!(
            response.next_offset > offset,
            "fetch made no progress at {offset}"
        );
        offset = response.next_offset;
    }
}

fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r.value {
            Some(v) => String::from_utf8_lossy(v).into_owned(),
            None => "<tombstone>".to_string(),
        })
        .collect()
}

#[test]
fn topics_are_created_described_listed_and_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let config = TopicConfig {
        retention_ms: Some(60_000),
        ..TopicConfig::new(3)
    };
    log.create_topic_blocking("orders", config.clone())
        .expect("created");
    assert!(matches!(
        log.create_topic_blocking("orders", TopicConfig::new(1)),
        Err(LogError::TopicExists(name)) if name == "orders"
    ));
    assert!(log.list_topics_blocking().contains(&"orders".to_string()));
    let description = log.describe_topic_blocking("orders").expect("described");
    assert_eq!(description.config, config);
    assert_eq!(description.partitions.len(), 3);
    assert!(
        description
            .partitions
            .iter()
            .all(|p| p.start_offset == 0 && p.end_offset == 0)
    );

    // The topic and its configuration survive a restart.
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        log.describe_topic_blocking("orders")
            .expect("described")
            .config,
        config
    );

    log.delete_topic_blocking("orders").expect("deleted");
    assert!(matches!(
        log.describe_topic_blocking("orders"),
        Err(LogError::UnknownTopic(_))
    ));
    assert!(!dir.path().join("orders").exists());
    drop(log);
    assert!(
        !open(dir.path())
            .list_topics_blocking()
            .contains(&"orders".to_string())
    );
}

#[test]
fn bad_topic_requests_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let error = log
        .create_topic_blocking("no spaces", TopicConfig::new(1))
        .expect_err("bad name");
    assert!(
        error
            .to_string()
            .contains("'no spaces' is not a valid topic name"),
        "{error}"
    );
    let error = log
        .create_topic_blocking("zero", TopicConfig::new(0))
        .expect_err("no partitions");
    assert!(
        error
            .to_string()
            .contains("partitions must be between 1 and 10000"),
        "{error}"
    );
    assert!(log.delete_topic_blocking("__consumer_offsets").is_err());
    assert!(matches!(
        log.delete_topic_blocking("missing"),
        Err(LogError::UnknownTopic(_))
    ));
    let error = log
        .produce_blocking("missing", vec![record("k", "v")], Acks::Leader)
        .expect_err("missing topic");
    assert_eq!(error.to_string(), "topic 'missing' does not exist");
    log.create_topic_blocking("t", TopicConfig::new(2))
        .expect("created");
    let error = log
        .produce_blocking("t", vec![to_partition(5, "k", "v")], Acks::Leader)
        .expect_err("missing partition");
    assert_eq!(error.to_string(), "topic 't' has no partition 5 (it has 2)");
}

#[test]
fn records_read_back_exactly_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("events", TopicConfig::new(1))
        .expect("created");
    let records = vec![
        ProducerRecord {
            timestamp: Some(1_000),
            headers: vec![
                Header {
                    key: "trace".into(),
                    value: Some(Bytes::from_static(b"t-1")),
                },
                Header {
                    key: "empty".into(),
                    value: None,
                },
            ],
            ..record("k1", "v1")
        },
        ProducerRecord {
            timestamp: Some(500),
            ..ProducerRecord::new(Some("k2"), None::<&str>)
        },
        ProducerRecord {
            timestamp: Some(2_000),
            ..ProducerRecord::new(None::<&str>, Some(""))
        },
    ];
    let positions = log
        .produce_blocking("events", records.clone(), Acks::All)
        .expect("produced");
    assert_eq!(
        positions.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let read = read_all(&log, "events", 0, IsolationLevel::ReadUncommitted);
    assert_eq!(read.len(), 3);
    for (written, read) in records.iter().zip(&read) {
        assert_eq!(read.key, written.key);
        assert_eq!(read.value, written.value);
        assert_eq!(Some(read.timestamp), written.timestamp);
        assert_eq!(read.headers, written.headers);
    }
    // acks=0 does not report offsets.
    let positions = log
        .produce_blocking("events", vec![record("k", "v")], Acks::None)
        .expect("produced");
    assert_eq!(positions[0].offset, -1);
    assert_eq!(
        read_all(&log, "events", 0, IsolationLevel::ReadUncommitted).len(),
        4
    );
}

#[test]
fn keyed_records_follow_kafkas_partitioner_and_keyless_ones_rotate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("keyed", TopicConfig::new(4))
        .expect("created");
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let positions = log
        .produce_blocking(
            "keyed",
            keys.iter().map(|k| record(k, "v")).collect(),
            Acks::Leader,
        )
        .expect("produced");
    for (key, position) in keys.iter().zip(&positions) {
        assert_eq!(
            position.partition,
            partition_for_key(key.as_bytes(), 4),
            "{key}"
        );
    }
    // Keyless records of one call share a partition; successive calls rotate.
    let mut used = Vec::new();
    for _ in 0..4 {
        let positions = log
            .produce_blocking(
                "keyed",
                vec![ProducerRecord::new(None::<&str>, Some("a")); 3],
                Acks::Leader,
            )
            .expect("produced");
        assert!(
            positions
                .iter()
                .all(|p| p.partition == positions[0].partition)
        );
        used.push(positions[0].partition);
    }
    used.sort_unstable();
    assert_eq!(used, [0, 1, 2, 3]);
}

#[test]
fn idempotent_retries_are_written_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("idem", TopicConfig::new(1))
        .expect("created");
    let producer = log.init_producer_blocking(None).expect("producer");
    let batch = |sequence: i32, values: &[&str]| ProducerBatch {
        producer,
        base_sequence: sequence,
        transactional: false,
        records: values.iter().map(|v| record("k", v)).collect(),
    };
    let first = log
        .append_blocking("idem", 0, batch(0, &["a", "b"]), Acks::All)
        .expect("first");
    assert!(!first.duplicate);
    let retry = log
        .append_blocking("idem", 0, batch(0, &["a", "b"]), Acks::All)
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, first.base_offset);
    log.append_blocking("idem", 0, batch(2, &["c"]), Acks::All)
        .expect("next");
    let error = log
        .append_blocking("idem", 0, batch(7, &["x"]), Acks::All)
        .expect_err("gap");
    assert!(matches!(
        error,
        LogError::OutOfOrderSequence {
            expected: 3,
            received: 7,
            ..
        }
    ));
    assert_eq!(
        values(&read_all(&log, "idem", 0, IsolationLevel::ReadUncommitted)),
        ["a", "b", "c"]
    );
    // Producer ids are never reused after a restart.
    drop(log);
    let log = open(dir.path());
    assert!(log.init_producer_blocking(None).expect("producer").id > producer.id);
}

#[test]
fn fetch_respects_byte_and_record_limits_and_ranges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("limits", TopicConfig::new(1))
        .expect("created");
    for batch in 0..10 {
        let records = (0..10)
            .map(|i| record("k", &format!("{batch}-{i}")))
            .collect();
        log.produce_blocking("limits", records, Acks::Leader)
            .expect("produced");
    }
    let response = log
        .fetch_blocking(&FetchRequest::new("limits", 0, 0).with_max_records(15))
        .expect("fetch");
    assert_eq!(response.records.len(), 15);
    assert_eq!(response.next_offset, 15);
    // A budget smaller than a batch still returns that one batch.
    let response = log
        .fetch_blocking(&FetchRequest::new("limits", 0, 3).with_max_bytes(1))
        .expect("fetch");
    assert_eq!(response.records.first().map(|r| r.offset), Some(3));
    assert_eq!(response.next_offset, 10);
    // Reading from the end gives nothing; past it is an error naming the range.
    let response = log
        .fetch_blocking(&FetchRequest::new("limits", 0, 100))
        .expect("fetch at end");
    assert!(response.records.is_empty());
    let error = log
        .fetch_blocking(&FetchRequest::new("limits", 0, 101))
        .expect_err("past the end");
    assert_eq!(
        error.to_string(),
        "offset 101 is out of range for topic 'limits' partition 0 (it holds 0..100)"
    );
}

#[tokio::test]
async fn readers_wait_for_new_records_without_polling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic("live", TopicConfig::new(1))
        .await
        .expect("created");
    let waiting = log
        .wait_for_data(
            "live",
            0,
            0,
            IsolationLevel::ReadUncommitted,
            Duration::from_millis(10),
        )
        .await
        .expect("waited");
    assert!(!waiting, "nothing was written");
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            log.wait_for_data(
                "live",
                0,
                0,
                IsolationLevel::ReadUncommitted,
                Duration::from_secs(60),
            )
            .await
        })
    };
    log.produce("live", vec![record("k", "v")], Acks::Leader)
        .await
        .expect("produced");
    assert!(reader.await.expect("joined").expect("waited"));
}

#[test]
fn offsets_are_found_by_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("timed", TopicConfig::new(1))
        .expect("created");
    let records = [100, 200, 150, 300]
        .iter()
        .map(|ts| ProducerRecord {
            timestamp: Some(*ts),
            ..record("k", &ts.to_string())
        })
        .collect();
    log.produce_blocking("timed", records, Acks::Leader)
        .expect("produced");
    assert_eq!(
        log.offset_for_time_blocking("timed", 0, 0).expect("lookup"),
        Some(0)
    );
    assert_eq!(
        log.offset_for_time_blocking("timed", 0, 150)
            .expect("lookup"),
        Some(1)
    );
    assert_eq!(
        log.offset_for_time_blocking("timed", 0, 250)
            .expect("lookup"),
        Some(3)
    );
    assert_eq!(
        log.offset_for_time_blocking("timed", 0, 301)
            .expect("lookup"),
        None
    );
    assert_eq!(
        log.offsets_blocking("timed", 0, IsolationLevel::ReadUncommitted)
            .expect("offsets"),
        (0, 4)
    );
}

#[test]
fn committed_group_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let offset = |topic: &str, partition, offset| TopicPartitionOffset {
        topic: topic.to_string(),
        partition,
        offset,
    };
    log.commit_offsets_blocking(
        "g1",
        &[offset("a", 0, 5), offset("a", 1, 7), offset("b", 0, 1)],
    )
    .expect("committed");
    log.commit_offsets_blocking("g1", &[offset("a", 0, 9)])
        .expect("committed");
    log.commit_offsets_blocking("g2", &[offset("a", 0, 1)])
        .expect("committed");
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        log.committed_offsets_blocking("g1", "a"),
        BTreeMap::from([(0, 9), (1, 7)])
    );
    assert_eq!(
        log.committed_offsets_blocking("g2", "a"),
        BTreeMap::from([(0, 1)])
    );
    assert!(log.committed_offsets_blocking("g3", "a").is_empty());
}

#[test]
fn read_committed_sees_only_committed_transactions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("tx", TopicConfig::new(2))
        .expect("created");
    let producer = log.init_producer_blocking(Some("app-1")).expect("producer");
    let mut sequence = [0, 0];
    let mut send = |log: &EmbeddedLog, partition: i32, value: &str| {
        let batch = ProducerBatch {
            producer,
            base_sequence: sequence[partition as usize],
            transactional: true,
            records: vec![record("k", value)],
        };
        sequence[partition as usize] += 1;
        log.append_blocking("tx", partition, batch, Acks::Leader)
            .expect("appended");
    };
    log.produce_blocking(
        "tx",
        vec![to_partition(0, "k", "plain-before")],
        Acks::Leader,
    )
    .expect("produced");
    send(&log, 0, "aborted-0");
    send(&log, 1, "aborted-1");
    // While open, read_committed stops before the transaction's first record.
    assert_eq!(
        values(&read_all(&log, "tx", 0, IsolationLevel::ReadCommitted)),
        ["plain-before"]
    );
    log.abort_transaction_blocking(producer).expect("aborted");
    send(&log, 0, "committed-0");
    send(&log, 1, "committed-1");
    log.produce_blocking(
        "tx",
        vec![to_partition(0, "k", "plain-after")],
        Acks::Leader,
    )
    .expect("produced");
    let offsets = GroupOffsets {
        group: "app".into(),
        offsets: vec![TopicPartitionOffset {
            topic: "input".into(),
            partition: 0,
            offset: 42,
        }],
    };
    assert!(log.committed_offsets_blocking("app", "input").is_empty());
    log.commit_transaction_blocking(producer, Some(offsets))
        .expect("committed");
    assert_eq!(
        log.committed_offsets_blocking("app", "input"),
        BTreeMap::from([(0, 42)])
    );
    assert_eq!(
        values(&read_all(&log, "tx", 0, IsolationLevel::ReadCommitted)),
        ["plain-before", "committed-0", "plain-after"]
    );
    assert_eq!(
        values(&read_all(&log, "tx", 1, IsolationLevel::ReadCommitted)),
        ["committed-1"]
    );
    assert_eq!(
        values(&read_all(&log, "tx", 0, IsolationLevel::ReadUncommitted)),
        ["plain-before", "aborted-0", "committed-0", "plain-after"]
    );
    // The same holds after a restart, offsets included.
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        values(&read_all(&log, "tx", 0, IsolationLevel::ReadCommitted)),
        ["plain-before", "committed-0", "plain-after"]
    );
    assert_eq!(
        log.committed_offsets_blocking("app", "input"),
        BTreeMap::from([(0, 42)])
    );
}

#[test]
fn a_new_epoch_fences_the_old_producer_and_aborts_its_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("fence", TopicConfig::new(1))
        .expect("created");
    let old = log.init_producer_blocking(Some("app")).expect("producer");
    let batch = |producer, sequence, value: &str| ProducerBatch {
        producer,
        base_sequence: sequence,
        transactional: true,
        records: vec![record("k", value)],
    };
    log.append_blocking("fence", 0, batch(old, 0, "old"), Acks::Leader)
        .expect("appended");
    let new = log.init_producer_blocking(Some("app")).expect("producer");
    assert_eq!(new.id, old.id);
    assert_eq!(new.epoch, old.epoch + 1);
    assert!(matches!(
        log.append_blocking("fence", 0, batch(old, 1, "zombie"), Acks::Leader),
        Err(LogError::ProducerFenced { .. })
    ));
    assert!(matches!(
        log.commit_transaction_blocking(old, None),
        Err(LogError::ProducerFenced { .. })
    ));
    log.append_blocking("fence", 0, batch(new, 0, "new"), Acks::Leader)
        .expect("appended");
    log.commit_transaction_blocking(new, None)
        .expect("committed");
    assert_eq!(
        values(&read_all(&log, "fence", 0, IsolationLevel::ReadCommitted)),
        ["new"]
    );
}

#[test]
fn transactions_cut_off_by_a_stop_are_aborted_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("cut", TopicConfig::new(1))
        .expect("created");
    let producer = log.init_producer_blocking(Some("app")).expect("producer");
    log.append_blocking(
        "cut",
        0,
        ProducerBatch {
            producer,
            base_sequence: 0,
            transactional: true,
            records: vec![record("k", "in-flight")],
        },
        Acks::All,
    )
    .expect("appended");
    drop(log);
    let log = open(dir.path());
    assert!(read_all(&log, "cut", 0, IsolationLevel::ReadCommitted).is_empty());
    // The partition is stable again: later records are readable.
    log.produce_blocking("cut", vec![record("k", "after")], Acks::Leader)
        .expect("produced");
    assert_eq!(
        values(&read_all(&log, "cut", 0, IsolationLevel::ReadCommitted)),
        ["after"]
    );
    // The transactional id continues with a new epoch.
    let next = log.init_producer_blocking(Some("app")).expect("producer");
    assert_eq!((next.id, next.epoch), (producer.id, producer.epoch + 1));
}

#[test]
fn retention_removes_old_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let config = TopicConfig {
        segment_bytes: 1024,
        retention_ms: Some(60_000),
        ..TopicConfig::new(1)
    };
    log.create_topic_blocking("old", config).expect("created");
    let old_time = riffle_now() - 3_600_000;
    for i in 0..20 {
        let record = ProducerRecord {
            timestamp: Some(old_time),
            ..record("k", &format!("{i:0>200}"))
        };
        log.produce_blocking("old", vec![record], Acks::Leader)
            .expect("produced");
    }
    log.produce_blocking("old", vec![record("k", "fresh")], Acks::Leader)
        .expect("produced");
    log.clean_now().expect("cleaned");
    let description = log.describe_topic_blocking("old").expect("described");
    let partition = description.partitions[0];
    assert!(partition.start_offset > 0, "old segments should be gone");
    assert_eq!(partition.end_offset, 21);
    let remaining = read_all(&log, "old", 0, IsolationLevel::ReadUncommitted);
    assert_eq!(values(&remaining).last().map(String::as_str), Some("fresh"));
    let error = log
        .fetch_blocking(&FetchRequest::new("old", 0, 0))
        .expect_err("deleted offsets");
    assert!(matches!(error, LogError::OffsetOutOfRange { .. }));
}

#[test]
fn compaction_keeps_the_latest_value_per_key_and_drops_old_tombstones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let config = TopicConfig {
        segment_bytes: 1024,
        delete_retention_ms: 0,
        ..TopicConfig::new(1).compacted()
    };
    log.create_topic_blocking("table", config).expect("created");
    for round in 0..10 {
        for key in ["a", "b", "c"] {
            let value = format!("{key}{round}-{}", "x".repeat(100));
            log.produce_blocking("table", vec![record(key, &value)], Acks::Leader)
                .expect("produced");
        }
    }
    log.produce_blocking(
        "table",
        vec![ProducerRecord::new(Some("c"), None::<&str>)],
        Acks::Leader,
    )
    .expect("deleted c");
    // Fill the active segment so that the tombstone's segment is sealed.
    for i in 0..12 {
        log.produce_blocking(
            "table",
            vec![record("d", &format!("{i:0>100}"))],
            Acks::Leader,
        )
        .expect("produced");
    }
    let before = read_all(&log, "table", 0, IsolationLevel::ReadUncommitted);
    log.clean_now().expect("cleaned");
    let after = read_all(&log, "table", 0, IsolationLevel::ReadUncommitted);
    assert!(after.len() < before.len(), "compaction removed nothing");
    // The latest value of every key is still there at its original offset.
    let mut latest: BTreeMap<Bytes, (i64, Option<Bytes>)> = BTreeMap::new();
    for record in &before {
        latest.insert(
            record.key.clone().expect("keyed"),
            (record.offset, record.value.clone()),
        );
    }
    for (key, (offset, value)) in &latest {
        let found = after.iter().find(|r| r.offset == *offset);
        match value {
            Some(_) => assert_eq!(
                found.and_then(|r| r.value.clone()),
                value.clone(),
                "{key:?}"
            ),
            // The tombstone is older than delete_retention_ms (0): it is gone too.
            None => assert!(found.is_none(), "tombstone of {key:?} kept"),
        }
    }
    assert!(after.iter().all(|r| r.key.as_deref() != Some(b"c")));
    // Offsets only grow, and the partition still ends where it did.
    assert!(after.windows(2).all(|w| w[0].offset < w[1].offset));
    let end = log
        .describe_topic_blocking("table")
        .expect("described")
        .partitions[0]
        .end_offset;
    assert_eq!(end, before.last().expect("records").offset + 1);
    // And all of it survives a restart.
    drop(log);
    let log = open(dir.path());
    assert_eq!(
        read_all(&log, "table", 0, IsolationLevel::ReadUncommitted),
        after
    );
}

#[test]
fn a_torn_tail_is_truncated_and_everything_before_it_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    log.create_topic_blocking("torn", TopicConfig::new(1))
        .expect("created");
    for i in 0..5 {
        log.produce_blocking("torn", vec![record("k", &i.to_string())], Acks::All)
            .expect("produced");
    }
    drop(log);
    let segment = dir.path().join("torn/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).expect("segment");
    let whole = bytes.len();
    // Half of a batch header, as a write cut short by a crash leaves it.
    bytes.extend_from_slice(&[7u8; 30]);
    std::fs::write(&segment, &bytes).expect("torn write");
    let log = open(dir.path());
    assert_eq!(
        values(&read_all(&log, "torn", 0, IsolationLevel::ReadUncommitted)),
        ["0", "1", "2", "3", "4"]
    );
    assert_eq!(
        std::fs::metadata(&segment).expect("segment").len() as usize,
        whole
    );
    // Writing continues at the right offset.
    let positions = log
        .produce_blocking("torn", vec![record("k", "5")], Acks::All)
        .expect("produced");
    assert_eq!(positions[0].offset, 5);
}

/// Records whose value is `id` followed by `len` filler bytes derived from it.
fn sized_records(ids: std::ops::Range<u64>, len: usize) -> Vec<ProducerRecord> {
    ids.map(|id| {
        let mut value = id.to_be_bytes().to_vec();
        value.resize(8 + len, (id % 251) as u8);
        ProducerRecord::new(Some(Bytes::copy_from_slice(&id.to_be_bytes())), Some(value))
    })
    .collect()
}

fn sized_ids(records: &[Record]) -> Vec<u64> {
    records
        .iter()
        .map(|record| {
            let value = record.value.as_deref().expect("a value");
            let id = u64::from_be_bytes(value[..8].try_into().expect("8-byte id"));
            assert!(
                value[8..].iter().all(|b| *b == (id % 251) as u8),
                "record {id} came back damaged"
            );
            id
        })
        .collect()
}

#[test]
fn large_and_small_appends_interleave_across_segments_and_restarts() {
    // Large appends bypass the page cache; small ones do not. Unaligned small writes
    // between large ones, segment rolls, and restarts must all read back exactly.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = TopicConfig {
        segment_bytes: 3 * 1024 * 1024,
        ..TopicConfig::new(1)
    };
    let mut next = 0u64;
    let mut expected = Vec::new();
    for round in 0..3 {
        let log = open(dir.path());
        if round == 0 {
            log.create_topic_blocking("mixed", config.clone())
                .expect("created");
        }
        for (count, len) in [(3, 77), (700, 1000), (1, 13), (1200, 501), (5, 999)] {
            let acks = if count > 100 { Acks::All } else { Acks::Leader };
            log.produce_blocking("mixed", sized_records(next..next + count, len), acks)
                .expect("produced");
            expected.extend(next..next + count);
            next += count;
        }
        let ids = sized_ids(&read_all(&log, "mixed", 0, IsolationLevel::ReadUncommitted));
        assert_eq!(ids, expected, "round {round}");
    }
    let log = open(dir.path());
    let ids = sized_ids(&read_all(&log, "mixed", 0, IsolationLevel::ReadUncommitted));
    assert_eq!(ids, expected, "after the last restart");
    let end = log
        .offsets_blocking("mixed", 0, IsolationLevel::ReadUncommitted)
        .expect("offsets")
        .1;
    assert_eq!(end, next as i64);
}

#[test]
fn a_corrupt_sealed_segment_is_reported_not_returned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let config = TopicConfig {
        segment_bytes: 1024,
        ..TopicConfig::new(1)
    };
    log.create_topic_blocking("rot", config).expect("created");
    for i in 0..20 {
        log.produce_blocking("rot", vec![record("k", &format!("{i:0>150}"))], Acks::All)
            .expect("produced");
    }
    drop(log);
    let segment = dir.path().join("rot/0/00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).expect("segment");
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff; // a flipped bit in a record of the sealed segment
    std::fs::write(&segment, &bytes).expect("corrupt");
    let log = open(dir.path());
    let error = log
        .fetch_blocking(&FetchRequest::new("rot", 0, 0))
        .expect_err("corrupt batch");
    let message = error.to_string();
    assert!(
        message.contains("topic 'rot' partition 0 is corrupt"),
        "{message}"
    );
    // Records in the intact, newer segment are still readable.
    let end = log
        .offsets_blocking("rot", 0, IsolationLevel::ReadUncommitted)
        .expect("offsets")
        .1;
    let response = log
        .fetch_blocking(&FetchRequest::new("rot", 0, end - 1))
        .expect("intact records");
    assert_eq!(response.records.len(), 1);
}

#[test]
fn an_oversized_record_is_refused_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open(dir.path());
    let config = TopicConfig {
        max_message_bytes: 2048,
        ..TopicConfig::new(1)
    };
    log.create_topic_blocking("small", config).expect("created");
    log.produce_blocking("small", vec![record("k", "before")], Acks::All)
        .expect("produced");
    let error = log
        .produce_blocking("small", vec![record("k", &"x".repeat(5000))], Acks::All)
        .expect_err("too large");
    assert!(
        error
            .to_string()
            .contains("exceeds the topic's max.message.bytes of 2048"),
        "{error}"
    );
    // Many small records larger than the limit together are split into batches.
    let many = (0..100)
        .map(|i| record("k", &format!("{i:0>50}")))
        .collect();
    log.produce_blocking("small", many, Acks::All)
        .expect("split into batches");
    let all = read_all(&log, "small", 0, IsolationLevel::ReadUncommitted);
    assert_eq!(all.len(), 101);
    assert_eq!(values(&all)[0], "before");
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _log = open(dir.path());
    let error = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect_err("locked");
    assert!(
        error
            .to_string()
            .contains("another process has this data directory open"),
        "{error}"
    );
}

fn riffle_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[tokio::test]
async fn the_background_cleaner_applies_retention_by_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EmbeddedOptions {
        cleaner_interval: Duration::from_millis(5),
    };
    let log = EmbeddedLog::open(dir.path(), options).expect("opens");
    let config = TopicConfig {
        segment_bytes: 1024,
        retention_ms: Some(1_000),
        ..TopicConfig::new(1)
    };
    log.create_topic("aging", config).await.expect("created");
    let old = ProducerRecord {
        timestamp: Some(riffle_now() - 3_600_000),
        ..record("k", &"x".repeat(600))
    };
    for _ in 0..6 {
        log.produce("aging", vec![old.clone()], Acks::Leader)
            .await
            .expect("produced");
    }
    log.produce("aging", vec![record("k", "new")], Acks::Leader)
        .await
        .expect("produced");
    // Two passes completed after the writes means at least one saw all of them.
    let mut passes = log.cleaner_passes();
    let seen = *passes.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(30), passes.wait_for(|p| *p >= seen + 2))
        .await
        .expect("the cleaner ran")
        .expect("the cleaner is alive");
    let (start, end) = log
        .offsets("aging", 0, IsolationLevel::ReadUncommitted)
        .await
        .expect("offsets");
    assert!(start > 0, "old segments are still there");
    assert_eq!(end, 7);
}
