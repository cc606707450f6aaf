//! Several producers and consumers on one topic at once: every consumer sees every record
//! exactly once, and each producer's records in the order it wrote them.

use std::collections::HashMap;
use std::time::Duration;

use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use riffle_server::log::{Acks, FetchRequest, IsolationLevel, Log, ProducerRecord, TopicConfig};

const PRODUCERS: u32 = 6;
const BATCHES: u32 = 200;
const BATCH: u32 = 25;
const CONSUMERS: usize = 3;
const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_producers_and_consumers_lose_and_duplicate_nothing() {
    // A stall (a deadlock, a lost wake-up) fails the test instead of hanging it.
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("producers and consumers finished within 120 s");
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("opens");
    let config = TopicConfig {
        segment_bytes: 256 * 1024,
        ..TopicConfig::new(PARTITIONS)
    };
    log.create_topic("shared", config).await.expect("created");
    let total = (PRODUCERS * BATCHES * BATCH) as usize;

    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut offsets = [0i64; PARTITIONS as usize];
                let mut seen: Vec<(u32, u32)> = Vec::with_capacity(total);
                while seen.len() < total {
                    let mut progressed = false;
                    for partition in 0..PARTITIONS {
                        let request =
                            FetchRequest::new("shared", partition, offsets[partition as usize]);
                        let response = log.fetch(&request).await.expect("fetch");
                        progressed |= !response.records.is_empty();
                        for record in &response.records {
                            let value = record.value.as_deref().expect("value");
                            let producer = u32::from_be_bytes(value[..4].try_into().expect("id"));
                            let sequence = u32::from_be_bytes(value[4..8].try_into().expect("seq"));
                            seen.push((producer, sequence));
                        }
                        offsets[partition as usize] = response.next_offset;
                    }
                    if !progressed {
                        // Wait for any partition to grow rather than spinning.
                        let waits = (0..PARTITIONS).map(|p| {
                            let log = log.clone();
                            let offset = offsets[p as usize];
                            Box::pin(async move {
                                log.wait_for_data(
                                    "shared",
                                    p,
                                    offset,
                                    IsolationLevel::ReadUncommitted,
                                    Duration::from_secs(30),
                                )
                                .await
                            })
                        });
                        let arrived = first_of(waits).await;
                        assert!(arrived, "no records arrived for 30 s");
                    }
                }
                seen
            })
        })
        .collect();

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let log = log.clone();
            tokio::spawn(async move {
                for batch in 0..BATCHES {
                    let records = (0..BATCH)
                        .map(|i| {
                            let sequence = batch * BATCH + i;
                            let mut value = producer.to_be_bytes().to_vec();
                            value.extend_from_slice(&sequence.to_be_bytes());
                            ProducerRecord::new(Some(producer.to_be_bytes().to_vec()), Some(value))
                        })
                        .collect();
                    let acks = if batch % 10 == 0 {
                        Acks::All
                    } else {
                        Acks::Leader
                    };
                    log.produce("shared", records, acks)
                        .await
                        .expect("produced");
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.expect("producer finished");
    }
    for consumer in consumers {
        let seen = consumer.await.expect("consumer finished");
        assert_eq!(
            seen.len(),
            total,
            "a consumer saw the wrong number of records"
        );
        let mut next: HashMap<u32, u32> = HashMap::new();
        for (producer, sequence) in seen {
            let expected = next.entry(producer).or_insert(0);
            assert_eq!(
                sequence, *expected,
                "producer {producer}'s records arrived out of order or twice"
            );
            *expected += 1;
        }
        assert!(next.values().all(|n| *n == BATCHES * BATCH));
    }
}

/// Waits for the first of several futures to finish and returns its output.
async fn first_of<F, T>(futures: impl Iterator<Item = F>) -> T
where
    F: std::future::Future<Output = riffle_server::log::Result<T>> + Unpin,
{
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for future in &mut futures {
            if let std::task::Poll::Ready(output) = std::pin::Pin::new(future).poll(cx) {
                return std::task::Poll::Ready(output.expect("waited"));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
