//! Crash safety: a producer in a child process writes with `acks=all` and is killed with
//! SIGKILL at random moments, many times. After each kill the log is reopened and every
//! acknowledged record must be readable exactly once, in order, with nothing corrupt.
//!
//! The child is this test binary run again with `--ignored --exact crash_child_producer`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use riffle_server::log::{Acks, FetchRequest, IsolationLevel, ProducerRecord, TopicConfig};

const CHILD_DIR: &str = "RIFFLE_CRASH_CHILD_DIR";
const TOPIC: &str = "crash";
const PARTITIONS: i32 = 2;

/// Every record id in the log, by partition, in offset order.
fn read_ids(log: &EmbeddedLog) -> BTreeMap<i32, Vec<u64>> {
    let mut ids = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let mut offset = 0;
        let list: &mut Vec<u64> = ids.entry(partition).or_default();
        loop {
            let response = log
                .fetch_blocking(&FetchRequest::new(TOPIC, partition, offset))
                .unwrap_or_else(|e| panic!("partition {partition} is unreadable at {offset}: {e}"));
            for record in &response.records {
                let value = record.value.as_deref().expect("every record has a value");
                let id = u64::from_be_bytes(value[..8].try_into().expect("8-byte id"));
                assert!(
                    value[8..].iter().all(|b| *b == (id % 251) as u8),
                    "record {id} has damaged padding"
                );
                list.push(id);
            }
            if response.next_offset >= response.end_offset {
                break;
            }
            offset = response.next_offset;
        }
    }
    ids
}

/// Run by the parent test in a child process: produce until killed.
#[test]
#[ignore = "the child half of acknowledged_records_survive_sigkill"]
fn crash_child_producer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        panic!("run only by acknowledged_records_survive_sigkill");
    };
    let log = EmbeddedLog::open(&dir, EmbeddedOptions::default()).expect("the log opens");
    if log.describe_topic_blocking(TOPIC).is_err() {
        let config = TopicConfig {
            segment_bytes: 1024 * 1024,
            ..TopicConfig::new(PARTITIONS)
        };
        log.create_topic_blocking(TOPIC, config).expect("created");
    }
    let mut next = read_ids(&log)
        .values()
        .flatten()
        .max()
        .map_or(0, |max| max + 1);
    let mut rng = fastrand::Rng::new();
    let stdout = std::io::stdout();
    loop {
        // Every fourth batch is large enough for direct writes to the disk.
        let count = if rng.u8(0..4) == 0 {
            rng.u64(600..2000)
        } else {
            rng.u64(1..50)
        };
        let records = (next..next + count)
            .map(|id| {
                let mut value = id.to_be_bytes().to_vec();
                value.resize(8 + rng.usize(0..2000), (id % 251) as u8);
                ProducerRecord::new(Some(Bytes::copy_from_slice(&id.to_be_bytes())), Some(value))
            })
            .collect();
        log.produce_blocking(TOPIC, records, Acks::All)
            .expect("produced");
        let mut out = stdout.lock();
        writeln!(out, "acked {next} {}", next + count - 1).expect("stdout");
        out.flush().expect("stdout");
        next += count;
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let rounds: usize = std::env::var("RIFFLE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(40);
    let seed = fastrand::u64(..);
    println!("crash test seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut acknowledged: Vec<(u64, u64)> = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_producer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let acks_before_kill = rng.usize(0..8);
        let mut seen = 0;
        while seen < acks_before_kill {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(range) = line.strip_prefix("acked ") {
                let (first, last) = range.split_once(' ').expect("acked FIRST LAST");
                acknowledged.push((
                    first.parse().expect("first id"),
                    last.parse().expect("last id"),
                ));
                seen += 1;
            }
        }
        // Let the child get some way into its next write before the kill.
        std::thread::sleep(Duration::from_micros(rng.u64(0..3000)));
        child.kill().expect("SIGKILL");
        child.wait().expect("child reaped");
        // Acknowledgements printed before the kill landed still count.
        for line in lines.map_while(Result::ok) {
            if let Some((first, last)) = line.strip_prefix("acked ").and_then(|r| r.split_once(' '))
            {
                acknowledged.push((first.parse().expect("id"), last.parse().expect("id")));
            }
        }

        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: the log does not reopen: {e}"));
        if log.describe_topic_blocking(TOPIC).is_err() {
            assert!(
                acknowledged.is_empty(),
                "round {round}: acknowledged records but no topic"
            );
            continue;
        }
        let by_partition = read_ids(&log);
        let mut present = HashSet::new();
        for (partition, ids) in &by_partition {
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "round {round}: partition {partition} is out of order or has duplicates"
            );
            for id in ids {
                assert!(
                    present.insert(*id),
                    "round {round}: record {id} is stored twice"
                );
            }
        }
        for (first, last) in &acknowledged {
            for id in *first..=*last {
                assert!(
                    present.contains(&id),
                    "round {round}: acknowledged record {id} is lost"
                );
            }
        }
        // Nothing corrupt is readable: read_ids checked every checksum and payload.
        let end: i64 = (0..PARTITIONS)
            .map(|p| {
                log.offsets_blocking(TOPIC, p, IsolationLevel::ReadUncommitted)
                    .expect("offsets")
                    .1
            })
            .sum();
        assert_eq!(
            end as usize,
            present.len(),
            "round {round}: offsets without records"
        );
    }
    let total: u64 = acknowledged.iter().map(|(f, l)| l - f + 1).sum();
    println!("{rounds} kills, {total} acknowledged records, all intact");
    assert!(total > 0, "the child never acknowledged anything");
}
