//! `PRINT topic`: a topic's records as text lines, as ksqlDB's `PRINT` shows them:
//!
//! ```text
//! Key format: KAFKA_STRING
//! Value format: JSON
//! rowtime: 2021/05/05 10:12:34.000 Z, key: k1, value: {"a":1}, partition: 0
//! ```
//!
//! The formats are guessed from the bytes (no schema is involved); the first lines name
//! the guesses for the first record printed. Entry point: [`TopicPrint::start`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};

use super::{Read, read_for_subscriber};
use crate::log::{Log, LogError, Record};

/// What to print: `FROM BEGINNING`, every `interval`-th record, at most `limit` records.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrintOptions {
    pub from_beginning: bool,
    pub interval: Option<u64>,
    pub limit: Option<u64>,
}

/// A running `PRINT`: chunks of lines arrive on [`TopicPrint::next_lines`].
#[derive(Debug)]
pub struct TopicPrint {
    pub id: String,
    lines: mpsc::Receiver<String>,
    stop: watch::Sender<bool>,
}

impl TopicPrint {
    pub async fn start(
        log: Arc<dyn Log>,
        id: String,
        topic: &str,
        options: PrintOptions,
    ) -> Result<TopicPrint, LogError> {
        let partitions = log.describe_topic(topic).await?.partitions;
        let (sender, lines) = mpsc::channel(16);
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            seen: AtomicU64::new(0),
            printed: AtomicU64::new(0),
            header_written: std::sync::atomic::AtomicBool::new(false),
            options,
        });
        for partition in partitions {
            let task = PrintTask {
                log: log.clone(),
                topic: topic.to_string(),
                partition: partition.partition,
                offset: if options.from_beginning {
                    partition.start_offset
                } else {
                    partition.end_offset
                },
                sender: sender.clone(),
                stopped: stopped.clone(),
                shared: shared.clone(),
            };
            tokio::spawn(async move {
                if let Err(error) = task.run().await {
                    tracing::warn!(%error, "PRINT stopped reading a partition");
                }
            });
        }
        Ok(TopicPrint { id, lines, stop })
    }

    /// The next lines (each ending in `\n`); `None` once the `LIMIT` is reached.
    pub async fn next_lines(&mut self) -> Option<String> {
        self.lines.recv().await
    }
}

impl Drop for TopicPrint {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Counters all partitions share: `INTERVAL` and `LIMIT` count over the whole topic.
struct Shared {
    seen: AtomicU64,
    printed: AtomicU64,
    header_written: std::sync::atomic::AtomicBool,
    options: PrintOptions,
}

impl Shared {
    fn limit_reached(&self) -> bool {
        self.options
            .limit
            .is_some_and(|limit| self.printed.load(Ordering::Acquire) >= limit)
    }

    /// Whether this record is printed: every `interval`-th one, while the limit allows.
    fn take(&self) -> bool {
        let seen = self.seen.fetch_add(1, Ordering::AcqRel);
        if !seen.is_multiple_of(self.options.interval.unwrap_or(1).max(1)) {
            return false;
        }
        let limit = self.options.limit.unwrap_or(u64::MAX);
        self.printed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
}

struct PrintTask {
    log: Arc<dyn Log>,
    topic: String,
    partition: i32,
    offset: i64,
    sender: mpsc::Sender<String>,
    stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

impl PrintTask {
    async fn run(mut self) -> Result<(), LogError> {
        loop {
            if *self.stopped.borrow() || self.shared.limit_reached() {
                return Ok(());
            }
            let at = (self.topic.as_str(), self.partition, self.offset);
            let response =
                match read_for_subscriber(&*self.log, at, &mut self.stopped, &self.sender).await? {
                    Read::Records(response) => response,
                    Read::Nothing => continue,
                    Read::Cancelled => return Ok(()),
                };
            self.offset = response.next_offset;
            let mut chunk = String::new();
            for record in &response.records {
                if !self.shared.take() {
                    if self.shared.limit_reached() {
                        break;
                    }
                    continue;
                }
                if !self.shared.header_written.swap(true, Ordering::AcqRel) {
                    chunk.push_str(&format!(
                        "Key format: {}\nValue format: {}\n",
                        guess_format(record.key.as_deref()),
                        guess_format(record.value.as_deref()),
                    ));
                }
                chunk.push_str(&print_line(record, self.partition));
            }
            if !chunk.is_empty() && self.sender.send(chunk).await.is_err() {
                return Ok(());
            }
            if self.shared.limit_reached() {
                // The last printer to finish closes the channel by dropping its sender.
                return Ok(());
            }
        }
    }
}

/// `rowtime: 2021/05/05 10:12:34.000 Z, key: k1, value: {"a":1}, partition: 0`.
fn print_line(record: &Record, partition: i32) -> String {
    let rowtime = arrow::temporal_conversions::timestamp_ms_to_datetime(record.timestamp)
        .map_or_else(
            || record.timestamp.to_string(),
            |time| time.format("%Y/%m/%d %H:%M:%S%.3f Z").to_string(),
        );
    let mut line = format!(
        "rowtime: {rowtime}, key: {}, value: {}, partition: {}",
        render(record.key.as_deref()),
        render(record.value.as_deref()),
        partition
    );
    if !record.headers.is_empty() {
        let headers: Vec<String> = record
            .headers
            .iter()
            .map(|header| format!("{}={}", header.key, render(header.value.as_deref())))
            .collect();
        line.push_str(&format!(", headers: [{}]", headers.join(", ")));
    }
    line.push('\n');
    line
}

/// What the bytes most likely are: JSON, text, a big-endian INT or BIGINT, or unknown.
fn guess_format(bytes: Option<&[u8]>) -> &'static str {
    match bytes {
        None => "¯\\_(ツ)_/¯ - no data processed",
        Some(bytes) => match printable(bytes) {
            Some(text)
                if serde_json::from_str::<serde_json::Value>(text)
                    .is_ok_and(|v| v.is_object() || v.is_array()) =>
            {
                "JSON"
            }
            Some(_) => "KAFKA_STRING",
            None if bytes.len() == 4 => "KAFKA_INT",
            None if bytes.len() == 8 => "KAFKA_BIGINT",
            None => "KAFKA_BYTES",
        },
    }
}

fn render(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "<null>".to_string(),
        Some(bytes) => match printable(bytes) {
            Some(text) => text.to_string(),
            None => match <[u8; 4]>::try_from(bytes) {
                Ok(int) => i32::from_be_bytes(int).to_string(),
                Err(_) => match <[u8; 8]>::try_from(bytes) {
                    Ok(long) => i64::from_be_bytes(long).to_string(),
                    Err(_) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
                },
            },
        },
    }
}

/// The bytes as text, when they are UTF-8 without control characters.
fn printable(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().filter(|text| {
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_guessed_from_the_bytes() {
        assert_eq!(guess_format(Some(br#"{"a":1}"#)), "JSON");
        assert_eq!(guess_format(Some(b"k1")), "KAFKA_STRING");
        assert_eq!(guess_format(Some(&7i32.to_be_bytes())), "KAFKA_INT");
        assert_eq!(guess_format(Some(&7i64.to_be_bytes())), "KAFKA_BIGINT");
        assert_eq!(render(Some(&(-3i32).to_be_bytes())), "-3");
        assert_eq!(render(None), "<null>");
    }

    #[test]
    fn a_line_shows_time_key_value_and_partition() {
        let record = Record {
            offset: 0,
            timestamp: 1_620_209_554_000,
            key: Some(b"k1".to_vec().into()),
            value: Some(br#"{"a":1}"#.to_vec().into()),
            headers: Vec::new(),
        };
        assert_eq!(
            print_line(&record, 1),
            "rowtime: 2021/05/05 10:12:34.000 Z, key: k1, value: {\"a\":1}, partition: 1\n"
        );
    }
}
