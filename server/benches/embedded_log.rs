//! Produce and fetch throughput of the embedded log: 100-byte and 1 KiB records, 1 and 8
//! partitions, acks=1 and acks=all, batches of 1000 records from one thread; and 4 MiB
//! batches at acks=all, to compare with the disk's sequential write speed.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use riffle_server::log::{Acks, FetchRequest, ProducerRecord, TopicConfig};

const BATCH: usize = 1000;

fn records(size: usize, partitions: i32) -> Vec<ProducerRecord> {
    records_n(size, partitions, BATCH)
}

fn records_n(size: usize, partitions: i32, count: usize) -> Vec<ProducerRecord> {
    let value = Bytes::from(vec![b'v'; size]);
    (0..count)
        .map(|i| ProducerRecord {
            // Spread over the partitions without the cost of hashing keys.
            partition: Some(i as i32 % partitions),
            key: Some(Bytes::from(format!("key-{i:06}"))),
            value: Some(value.clone()),
            ..ProducerRecord::default()
        })
        .collect()
}

fn produce(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (size, partitions, acks) in [
        (100, 1, Acks::Leader),
        (100, 8, Acks::Leader),
        (1024, 1, Acks::Leader),
        (1024, 8, Acks::Leader),
        (100, 1, Acks::All),
        (100, 8, Acks::All),
        (1024, 1, Acks::All),
        (1024, 8, Acks::All),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("opens");
        log.create_topic_blocking("bench", TopicConfig::new(partitions))
            .expect("created");
        let batch = records(size, partitions);
        let id = BenchmarkId::new(format!("{size}B/{partitions}p"), format!("{acks:?}"));
        group.bench_function(id, |b| {
            b.iter(|| {
                log.produce_blocking("bench", batch.clone(), acks)
                    .expect("produced")
            })
        });
    }
    // Large batches: the flush per call is amortised as a large sequential write.
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("opens");
    log.create_topic_blocking("bench", TopicConfig::new(1))
        .expect("created");
    let batch = records_n(1024, 1, 4096);
    group.throughput(Throughput::Bytes((batch.len() * 1024) as u64));
    for acks in [Acks::Leader, Acks::All] {
        group.bench_function(format!("1024B/1p/{acks:?}/4MiB-batches"), |b| {
            b.iter(|| {
                log.produce_blocking("bench", batch.clone(), acks)
                    .expect("produced")
            })
        });
    }
    group.finish();
}

fn fetch(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch");
    for size in [100, 1024] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("opens");
        log.create_topic_blocking("bench", TopicConfig::new(1))
            .expect("created");
        let total = if size == 100 { 200_000 } else { 50_000 };
        for _ in 0..total / BATCH {
            log.produce_blocking("bench", records(size, 1), Acks::Leader)
                .expect("produced");
        }
        group.throughput(Throughput::Elements(total as u64));
        group.bench_function(format!("{size}B/whole-partition"), |b| {
            b.iter(|| {
                let mut offset = 0;
                let mut count = 0;
                while (offset as usize) < total {
                    let response = log
                        .fetch_blocking(
                            &FetchRequest::new("bench", 0, offset).with_max_bytes(4 * 1024 * 1024),
                        )
                        .expect("fetched");
                    count += response.records.len();
                    offset = response.next_offset;
                }
                assert_eq!(count, total);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, produce, fetch);
criterion_main!(benches);
