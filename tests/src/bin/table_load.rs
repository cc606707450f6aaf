//! The table benchmark: an upsert load on a source table with an aggregation over it (each
//! update takes the key's earlier row back out of its group), then point lookups over HTTP
//! (pull queries by primary key).
//!
//! ```text
//! table_load [--upserts 1000000] [--keys 100000] [--lookups 2000]
//! ```
//! Upserts are written straight to the embedded log of an in-process server (in batches of
//! 1000, the way a producer batches), so the figures are the engine's: upserts per second
//! and per CPU-second until the aggregation has caught up, and peak memory. The totals per
//! region are checked against the latest value of each key. Lookups go one at a time
//! through `/query`; each answer is checked against the key's latest value.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use riffle_server::log::{Acks, Log, ProducerRecord};
use riffle_tests::measure::{cpu_seconds, peak_memory_mib};
use riffle_tests::server::TestServer;
use serde_json::{Value, json};

const REGIONS: usize = 16;

/// The `i`-th upsert: its key, region and score.
fn upsert(i: usize, keys: usize) -> (String, String, i64) {
    let key = (i.wrapping_mul(2_654_435_761)) % keys;
    (
        format!("k{key}"),
        format!("r{}", (i * 7919) % REGIONS),
        (i % 1000) as i64,
    )
}

fn main() -> Result<()> {
    let (mut upserts, mut keys, mut lookups) = (1_000_000usize, 100_000usize, 2000usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("a value after the flag");
        match arg.as_str() {
            "--upserts" => upserts = value()?.parse()?,
            "--keys" => keys = value()?.parse()?,
            "--lookups" => lookups = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; usage: table_load [--upserts N] [--keys N] [--lookups N]"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(upserts, keys.max(1), lookups))
}

async fn ksql(server: &TestServer, sql: &str) -> Result<()> {
    let response = server
        .client
        .post(format!("{}/ksql", server.url))
        .json(&json!({"ksql": sql}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("{sql} failed: {}", response.text().await?);
    }
    Ok(())
}

async fn query_rows(server: &TestServer, sql: &str) -> Result<Vec<Vec<Value>>> {
    let body: Value = server
        .client
        .post(format!("{}/query", server.url))
        .json(&json!({"ksql": sql}))
        .send()
        .await?
        .json()
        .await?;
    Ok(body
        .as_array()
        .context("a JSON array")?
        .iter()
        .filter_map(|entry| entry["row"]["columns"].as_array().cloned())
        .collect())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(upserts: usize, keys: usize, lookups: usize) -> Result<()> {
    let server = TestServer::start("table_load_")
        .await
        .map_err(anyhow::Error::msg)?;
    ksql(
        &server,
        "CREATE SOURCE TABLE users (id STRING PRIMARY KEY, region STRING, score BIGINT) \
         WITH (kafka_topic='users', partitions=2, value_format='JSON');
         CREATE TABLE per_region AS SELECT region, SUM(score) AS total, COUNT(*) AS n \
         FROM users GROUP BY region;",
    )
    .await?;

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut latest: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for from in (0..upserts).step_by(1000) {
        let records: Vec<ProducerRecord> = (from..(from + 1000).min(upserts))
            .map(|i| {
                let (key, region, score) = upsert(i, keys);
                let value = json!({"REGION": region, "SCORE": score}).to_string();
                latest.insert(key.clone(), (region, score));
                ProducerRecord::new(Some(key), Some(value))
            })
            .collect();
        server.log.produce("users", records, Acks::All).await?;
    }
    server.engine.wait_until_caught_up().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;

    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (region, score) in latest.values() {
        let entry = expected.entry(region.clone()).or_default();
        entry.0 += score;
        entry.1 += 1;
    }
    let mut found: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in query_rows(&server, "SELECT region, total, n FROM per_region;").await? {
        let region = row[0].as_str().context("a region")?.to_string();
        found.insert(
            region,
            (
                row[1].as_i64().context("a total")?,
                row[2].as_i64().context("a count")?,
            ),
        );
    }
    found.retain(|_, (_, n)| *n > 0);
    if found != expected {
        bail!("the totals per region are wrong:\n expected {expected:?}\n found {found:?}");
    }
    println!(
        "{upserts} upserts over {} keys into a source table and a GROUP BY over it: {elapsed:.2} s, \
         {:.0} upserts/s, {:.0} upserts per CPU-second, peak memory {:.0} MiB; totals per region \
         match the latest value of every key",
        latest.len(),
        upserts as f64 / elapsed,
        upserts as f64 / cpu,
        peak_memory_mib()
    );

    let mut latencies = Vec::with_capacity(lookups);
    let started = Instant::now();
    for i in 0..lookups {
        let (key, _, _) = upsert(i * 31, keys);
        let Some((region, score)) = latest.get(&key) else {
            continue;
        };
        let asked = Instant::now();
        let rows = query_rows(&server, &format!("SELECT * FROM users WHERE id = '{key}';")).await?;
        latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
        let answer = rows.first().context("a row for the key")?;
        if answer[1].as_str() != Some(region.as_str()) || answer[2].as_i64() != Some(*score) {
            bail!("the lookup of {key} answered {answer:?}, not ({region}, {score})");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!(
        "{} point lookups over HTTP (one at a time): {:.0} lookups/s, p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms; every answer is the key's latest value",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    server.stop().await;
    Ok(())
}
