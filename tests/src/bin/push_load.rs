//! The push-query load check: many subscribers on one stream, rows written through
//! `/inserts-stream`, every subscriber must receive every row; reports the end-to-end
//! latency (insert sent → row received by a subscriber) over all deliveries.
//!
//! ```text
//! push_load [--subscribers 200] [--rows 2000] [--rate 1000]
//! ```
//! Each row carries the time it was sent (microseconds); a subscriber's latency for a row is
//! the time it read the row minus that. Rows are sent at `--rate` rows per second.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use riffle_tests::measure::{cpu_seconds, peak_memory_mib};
use riffle_tests::server::TestServer;
use serde_json::{Value, json};

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One subscriber: a push query on `/query-stream`; answers the latencies (µs) of the rows
/// it read, in order, after checking the ids arrive as 0, 1, 2…
async fn subscribe(
    client: reqwest::Client,
    url: String,
    rows: usize,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Vec<i64>> {
    let response = client
        .post(format!("{url}/query-stream"))
        .json(&json!({"sql": "SELECT id, sent FROM events EMIT CHANGES;", "properties": {}}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("the push query was refused: {}", response.text().await?);
    }
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    let mut header_seen = false;
    let mut latencies = Vec::with_capacity(rows);
    while latencies.len() < rows {
        let chunk = body.next().await.context("the push query ended early")??;
        let received = now_micros();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if !header_seen {
                header_seen = true;
                // The query has fixed where it starts: inserts may begin.
                let _ = ready.send(()).await;
                continue;
            }
            let row: Value = serde_json::from_slice(&line)?;
            let id = row[0].as_i64().context("an id")?;
            if id != latencies.len() as i64 {
                bail!("expected row {}, got row {id}", latencies.len());
            }
            latencies.push(received - row[1].as_i64().context("a time")?);
        }
    }
    Ok(latencies)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn main() -> Result<()> {
    let mut subscribers = 200usize;
    let mut rows = 2000usize;
    let mut rate = 1000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("a value after the flag");
        match arg.as_str() {
            "--subscribers" => subscribers = value()?.parse()?,
            "--rows" => rows = value()?.parse()?,
            "--rate" => rate = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(subscribers, rows, rate))
}

async fn run(subscribers: usize, rows: usize, rate: u64) -> Result<()> {
    let server = TestServer::start("push_load_")
        .await
        .map_err(anyhow::Error::msg)?;
    let created = server
        .client
        .post(format!("{}/ksql", server.url))
        .json(
            &json!({"ksql": "CREATE STREAM events (id BIGINT, sent BIGINT) \
            WITH (kafka_topic='events', partitions=1, value_format='JSON');"}),
        )
        .send()
        .await?;
    if !created.status().is_success() {
        bail!("CREATE STREAM failed: {}", created.text().await?);
    }
    let (ready_sender, mut ready) = tokio::sync::mpsc::channel(subscribers);
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        // A client per subscriber: a connection each, as separate applications would have.
        let client = reqwest::Client::new();
        tasks.push(tokio::spawn(subscribe(
            client,
            server.url.clone(),
            rows,
            ready_sender.clone(),
        )));
    }
    drop(ready_sender);
    for _ in 0..subscribers {
        ready.recv().await.context("a subscriber failed to start")?;
    }

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (lines, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    let body = reqwest::Body::wrap_stream(tokio_stream(receiver));
    let inserts = server
        .client
        .post(format!("{}/inserts-stream", server.url))
        .body(body)
        .send();
    let sender = tokio::spawn(async move {
        lines
            .send(Ok("{\"target\": \"EVENTS\"}\n".to_string()))
            .await
            .ok();
        let interval = Duration::from_micros(1_000_000 / rate.max(1));
        let mut next = tokio::time::Instant::now();
        for id in 0..rows {
            next += interval;
            tokio::time::sleep_until(next).await;
            let line = format!("{{\"ID\": {id}, \"SENT\": {}}}\n", now_micros());
            if lines.send(Ok(line)).await.is_err() {
                break;
            }
        }
    });
    let response = inserts.await?;
    let mut acks = response.bytes_stream();
    let mut acked = 0;
    let mut text = Vec::new();
    while acked < rows {
        let chunk = acks
            .next()
            .await
            .context("the inserts stream ended early")??;
        text.extend_from_slice(&chunk);
        acked = text.iter().filter(|b| **b == b'\n').count();
    }
    if text
        .split(|b| *b == b'\n')
        .any(|line| !line.is_empty() && !String::from_utf8_lossy(line).contains("\"ok\""))
    {
        bail!("an insert was refused: {}", String::from_utf8_lossy(&text));
    }
    sender.await?;
    let mut latencies = Vec::with_capacity(subscribers * rows);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort_unstable();
    println!(
        "{subscribers} subscribers × {rows} rows at {rate} rows/s: all {} deliveries arrived, \
         in order, in {elapsed:.2} s ({:.0} deliveries/s, {cpu:.2} CPU-s)",
        latencies.len(),
        latencies.len() as f64 / elapsed
    );
    println!(
        "end-to-end latency (insert sent → row read): p50 {:.2} ms, p90 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms; peak memory {:.0} MiB",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        peak_memory_mib()
    );
    server.stop().await;
    Ok(())
}

/// A receiver as a stream of request-body chunks.
fn tokio_stream(
    receiver: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
