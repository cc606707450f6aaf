//! Nexmark q0, q1, q2, tumble, q5 and q7 as persistent queries, from a `bid` topic in the
//! embedded log to a sink topic, with throughput, CPU time and a check of the output against
//! the reference answers of `../shared/bench/README.md` (q5 and q7: against the answer
//! computed here from the generator's files).
//!
//! q5 and q7 are pipelines of persistent queries, as a ksqlDB user writes them: windowed
//! aggregations with `EMIT FINAL` whose results are read back as streams and joined. Their
//! joins wait for the input that is behind (`max.task.idle.ms`), so that rows meet in event
//! time order however the stages are scheduled.
//!
//! ```text
//! python3 ../shared/bench/nexmark_gen.py --events 10000000 --out /tmp/nexmark-10m --seed 42
//! cargo run --release -p riffle-tests --bin nexmark -- --data /tmp/nexmark-10m [--queries q0,q1,q2,tumble,q5,q7]
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use riffle_server::engine::{Engine, Properties};
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use riffle_server::log::{Acks, FetchRequest, Log, ProducerRecord, TopicConfig};
use riffle_tests::measure::{cpu_seconds, peak_memory_mib, reset_peak_memory, resident_memory_mib};
use serde_json::Value;

const BID_STREAM: &str = "CREATE STREAM bid (auction BIGINT, bidder BIGINT, price BIGINT, \
    channel STRING, url STRING, date_time STRING, extra STRING) \
    WITH (kafka_topic='bid', value_format='JSON');";

/// The auctions as a table keyed by id (loaded with keys for the join query).
const AUCTION_TABLE: &str = "CREATE TABLE auction (id BIGINT PRIMARY KEY, item_name STRING, \
    description STRING, initial_bid BIGINT, reserve BIGINT, date_time STRING, expires STRING, \
    seller BIGINT, category BIGINT, extra STRING) WITH (kafka_topic='auction', \
    value_format='JSON', timestamp='date_time', \
    timestamp_format='yyyy-MM-dd''T''HH:mm:ss.SSS');";

/// The bids in event time (`date_time`), for the windowed queries.
const BID_TIMED_STREAM: &str = "CREATE STREAM bid_timed (auction BIGINT, bidder BIGINT, \
    price BIGINT, channel STRING, url STRING, date_time STRING, extra STRING) \
    WITH (kafka_topic='bid', value_format='JSON', timestamp='date_time', \
    timestamp_format='yyyy-MM-dd''T''HH:mm:ss.SSS');";

fn query_sql(name: &str) -> Option<&'static str> {
    Some(match name {
        "q0" => "CREATE STREAM q0 AS SELECT auction, bidder, price, date_time, extra FROM bid;",
        "q1" => {
            "CREATE STREAM q1 AS SELECT auction, bidder, 0.908 * price AS price, date_time, \
             extra FROM bid;"
        }
        "q2" => "CREATE STREAM q2 AS SELECT auction, price FROM bid WHERE auction % 123 = 0;",
        "enrich" => {
            "CREATE STREAM enrich AS SELECT b.auction, b.price, a.seller, a.category FROM bid_timed b \
             LEFT JOIN auction a ON b.auction = a.id;"
        }
        "tumble" => {
            "CREATE TABLE tumble AS SELECT auction, COUNT(*) AS n FROM bid_timed \
             WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY auction;"
        }
        // Hot items: the bid count of each auction per hopping window (10 s, every 2 s),
        // the largest count of each window, and the auctions that reach it.
        "q5" => {
            "CREATE TABLE q5_counts AS SELECT auction, AS_VALUE(auction) AS a, COUNT(*) AS num, \
             WINDOWSTART AS ws FROM bid_timed WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY \
             2 SECONDS, RETENTION 1 MINUTE, GRACE PERIOD 5 SECONDS) GROUP BY auction EMIT FINAL;
             CREATE STREAM q5_counts_s (a BIGINT, num BIGINT, ws BIGINT) WITH \
             (kafka_topic='Q5_COUNTS', value_format='JSON', timestamp='ws');
             CREATE TABLE q5_max AS SELECT ws, AS_VALUE(ws) AS w, MAX(num) AS maxn \
             FROM q5_counts_s WINDOW TUMBLING (SIZE 2 SECONDS, RETENTION 2 MINUTES, \
             GRACE PERIOD 60 SECONDS) GROUP BY ws EMIT FINAL;
             CREATE STREAM q5_max_s (w BIGINT, maxn BIGINT) WITH (kafka_topic='Q5_MAX', \
             value_format='JSON', timestamp='w');
             CREATE STREAM q5 AS SELECT c.a AS auction, c.num AS num, c.ws AS ws \
             FROM q5_counts_s c JOIN q5_max_s m WITHIN 0 SECONDS GRACE PERIOD 30 SECONDS \
             ON c.ws = m.w WHERE c.num >= m.maxn;"
        }
        // Highest bid: the largest price of each tumbling 10-second window, and the bids
        // of the window at that price.
        "q7" => {
            "CREATE TABLE q7_max AS SELECT auction * 0 AS k, MAX(price) AS maxprice, \
             WINDOWSTART AS ws FROM bid_timed WINDOW TUMBLING (SIZE 10 SECONDS, \
             RETENTION 1 MINUTE, GRACE PERIOD 5 SECONDS) GROUP BY auction * 0 EMIT FINAL;
             CREATE STREAM q7_max_s (ws BIGINT, maxprice BIGINT) WITH \
             (kafka_topic='Q7_MAX', value_format='JSON');
             CREATE STREAM q7 AS SELECT b.auction AS auction, b.price AS price, \
             b.bidder AS bidder, b.date_time AS date_time, m.ws AS ws \
             FROM q7_max_s m JOIN bid_timed b WITHIN (10 SECONDS, 0 SECONDS) \
             GRACE PERIOD 10 SECONDS ON m.ws = b.ROWTIME - (b.ROWTIME % 10000) \
             WHERE b.price = m.maxprice;"
        }
        _ => return None,
    })
}

fn main() -> Result<()> {
    let mut data: Option<PathBuf> = None;
    let mut queries = vec!["q0".to_string(), "q1".to_string(), "q2".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = Some(PathBuf::from(args.next().context("--data needs a folder")?)),
            "--queries" => {
                queries = args
                    .next()
                    .context("--queries needs a list")?
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let data = data.context("--data is required (see nexmark_gen.py)")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(data, queries))
}

async fn run(data: PathBuf, queries: Vec<String>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The bids' times are from 2024: no retention cleaning while the benchmark runs.
    let options = EmbeddedOptions {
        cleaner_interval: std::time::Duration::from_secs(24 * 3600),
    };
    let log = EmbeddedLog::open(dir.path(), options)?;
    let started = Instant::now();
    // Bids go to partitions by shard, without keys.
    let bids = load_topic(&log, &data.join("bid"), "bid", |_| Ok(None)).await?;
    if queries.iter().any(|q| q == "enrich") {
        let auctions = load_auctions(&log, &data.join("auction")).await?;
        println!("loaded {auctions} auctions, keyed by id");
    }
    println!(
        "loaded {bids} bids into the embedded log in {:.1} s (peak memory {:.0} MiB)",
        started.elapsed().as_secs_f64(),
        peak_memory_mib()
    );
    // The log writes large appends past the page cache; read it once, so that every query
    // starts from page-cached input, as the engines compared with read theirs.
    let warmed = warm_page_cache(dir.path())?;
    println!(
        "read the log once into the page cache ({} MiB)",
        warmed >> 20
    );
    for name in queries {
        let sql = query_sql(&name).with_context(|| format!("unknown query {name}"))?;
        let mut properties =
            Properties::from([("auto.offset.reset".to_string(), "earliest".to_string())]);
        let stages = sql.matches(" AS SELECT ").count();
        if stages > 1 {
            // A pipeline: each stage hands its windows on promptly, and a join waits for
            // the input that is behind rather than reading ahead in the other.
            properties.insert("commit.interval.ms".to_string(), "100".to_string());
            properties.insert("max.task.idle.ms".to_string(), "2000".to_string());
        }
        let engine = Engine::start(Arc::new(log.clone())).await?;
        engine.execute(BID_STREAM, &properties).await.ok();
        engine.execute(BID_TIMED_STREAM, &properties).await.ok();
        engine.execute(AUCTION_TABLE, &properties).await.ok();
        // Each query's peak is its own: memory is measured from here.
        let resident_before = resident_memory_mib();
        reset_peak_memory();
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        engine.execute(sql, &properties).await?;
        engine.wait_until_caught_up().await?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        // Before the output check, which reads the input again for q5's and q7's answers.
        let peak = peak_memory_mib();
        // The next query's engine reads the same catalog: it must not run this one again.
        engine.execute("TERMINATE ALL;", &properties).await?;
        engine.shutdown().await;
        let check = match name.as_str() {
            "q5" | "q7" => check_against_batch_answer(&log, &data.join("bid"), &name).await?,
            _ => check_output(&log, &name).await?,
        };
        println!(
            "{name}: {bids} bids in {wall:.2} s = {:.2} M bids/s; {cpu:.2} CPU-s = {:.2} M bids \
             per CPU-second; peak memory {peak:.0} MiB ({resident_before:.0} MiB before the \
             query); output: {check}",
            bids as f64 / wall / 1e6,
            bids as f64 / cpu / 1e6,
        );
    }
    Ok(())
}

/// Writes the auctions to a topic of their own, each keyed by its id (a BIGINT in the KAFKA
/// key format: eight bytes, big-endian); answers how many.
async fn load_auctions(log: &EmbeddedLog, folder: &std::path::Path) -> Result<u64> {
    load_topic(log, folder, "auction", |line| {
        let id = serde_json::from_str::<Value>(line)?["id"]
            .as_i64()
            .context("an auction without id")?;
        Ok(Some(Bytes::copy_from_slice(&id.to_be_bytes())))
    })
    .await
}

/// Writes the `.ndjson` shards of `folder` to a new topic with a partition per shard, a
/// record per line keyed by `key_of`; answers how many records.
async fn load_topic(
    log: &EmbeddedLog,
    folder: &std::path::Path,
    topic: &str,
    key_of: impl Fn(&str) -> Result<Option<Bytes>>,
) -> Result<u64> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    shards.sort();
    log.create_topic(topic, TopicConfig::new(shards.len() as i32))
        .await?;
    let mut count = 0u64;
    for (partition, shard) in shards.iter().enumerate() {
        let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(shard)?);
        let mut batch = Vec::with_capacity(10_000);
        for line in reader.lines() {
            let line = line?;
            batch.push(ProducerRecord {
                partition: Some(partition as i32),
                key: key_of(&line)?,
                value: Some(Bytes::from(line)),
                ..ProducerRecord::default()
            });
            if batch.len() == 10_000 {
                count += batch.len() as u64;
                log.produce(topic, std::mem::take(&mut batch), Acks::Leader)
                    .await?;
            }
        }
        count += batch.len() as u64;
        log.produce(topic, batch, Acks::Leader).await?;
    }
    Ok(count)
}

/// Aggregates of the sink, in the form of the README's reference answers.
async fn check_output(log: &EmbeddedLog, query: &str) -> Result<String> {
    if query == "tumble" {
        return check_windowed_counts(log, "TUMBLE").await;
    }
    let topic = query.to_uppercase();
    let (mut rows, mut auction, mut bidder, mut price, mut extra) =
        (0u64, 0i128, 0i128, 0i128, 0u64);
    let mut decimal_price = 0i128; // q1: thousandths
    let mut matched = 0u64; // enrich: bids that found their auction
    let mut max_time = String::new();
    each_record(log, &topic, |record| {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap_or(b"null"))?;
        rows += 1;
        matched += u64::from(!value["SELLER"].is_null());
        auction += i128::from(value["AUCTION"].as_i64().unwrap_or(0));
        bidder += i128::from(value["BIDDER"].as_i64().unwrap_or(0));
        if let Some(p) = value["PRICE"].as_i64() {
            price += i128::from(p);
        } else if let Value::Number(n) = &value["PRICE"] {
            decimal_price +=
                riffle_server::types::decimal::parse_decimal(&n.to_string(), 38, 3).unwrap_or(0);
        }
        extra += value["EXTRA"]
            .as_str()
            .map_or(0, |s| s.chars().count() as u64);
        if let Some(time) = value["DATE_TIME"].as_str()
            && time > max_time.as_str()
        {
            max_time = time.to_string();
        }
        Ok(())
    })
    .await?;
    Ok(match query {
        "q0" => format!(
            "sum(auction) {auction}; sum(bidder) {bidder}; sum(price) {price}; max(date_time) \
             {max_time}; sum(length(extra)) {extra}"
        ),
        "q1" => format!(
            "rows {rows}; sum(0.908 * price) {}",
            riffle_server::types::decimal::format_decimal(decimal_price, 3)
        ),
        // The auction is the result's key (not in the value).
        "enrich" => format!("rows {rows}; with their auction {matched}; sum(price) {price}"),
        _ => format!("rows {rows}; sum(auction) {auction}; sum(price) {price}"),
    })
}

/// A windowed count's final state: the number of (key, window) groups and the sum of their
/// last counts.
async fn check_windowed_counts(log: &EmbeddedLog, topic: &str) -> Result<String> {
    let mut latest: std::collections::HashMap<Bytes, i64> = std::collections::HashMap::new();
    each_record(log, topic, |record| {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap_or(b"null"))?;
        latest.insert(
            record.key.clone().unwrap_or_default(),
            value["N"].as_i64().unwrap_or(0),
        );
        Ok(())
    })
    .await?;
    Ok(format!(
        "groups {}; sum of counts {}",
        latest.len(),
        latest.values().sum::<i64>()
    ))
}

/// Hands every record of every partition of `topic` to `visit`, in order.
async fn each_record(
    log: &EmbeddedLog,
    topic: &str,
    mut visit: impl FnMut(&riffle_server::log::Record) -> Result<()>,
) -> Result<()> {
    for partition in log.describe_topic(topic).await?.partitions {
        let mut offset = partition.start_offset;
        while offset < partition.end_offset {
            let request =
                FetchRequest::new(topic, partition.partition, offset).with_max_bytes(8 << 20);
            let response = log.fetch(&request).await?;
            for record in &response.records {
                visit(record)?;
            }
            offset = response.next_offset;
        }
    }
    Ok(())
}

/// Reads every file under `dir` (so the operating system caches it); answers the bytes read.
fn warm_page_cache(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        total += if path.is_dir() {
            warm_page_cache(&path)?
        } else {
            std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())?
        };
    }
    Ok(total)
}

/// q5's and q7's sinks against the answer computed from the generator's files: the number
/// of rows and the sums of two of their columns; says whether they agree.
async fn check_against_batch_answer(
    log: &EmbeddedLog,
    bids: &std::path::Path,
    query: &str,
) -> Result<String> {
    let read = batch_answer::read_bids(bids)?;
    let (second, expected) = match query {
        "q5" => ("NUM", batch_answer::hot_items(&read)),
        _ => ("PRICE", batch_answer::highest_bids(&read)),
    };
    let mut found = batch_answer::Totals::default();
    each_record(log, &query.to_uppercase(), |record| {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap_or(b"null"))?;
        found.add(
            value["AUCTION"].as_i64().unwrap_or(0),
            value[second].as_i64().unwrap_or(0),
        );
        Ok(())
    })
    .await?;
    let second = second.to_lowercase();
    let verdict = if found == expected {
        "equal to the batch answer".to_string()
    } else {
        format!(
            "DIFFERS from the batch answer: rows {}; sum(auction) {}; sum({second}) {}",
            expected.rows, expected.auctions, expected.second
        )
    };
    Ok(format!(
        "rows {}; sum(auction) {}; sum({second}) {}, {verdict}",
        found.rows, found.auctions, found.second
    ))
}

/// q5 and q7 computed over the whole input at once, with the windows the pipelines close:
/// `EMIT FINAL` emits a window once stream time (the latest time read) reaches its end plus
/// its grace period, so the last windows of the input are never emitted.
mod batch_answer {
    use std::collections::HashMap;
    use std::io::BufRead;

    use anyhow::{Context, Result};

    /// What a query's rows add up to.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Totals {
        pub rows: u64,
        pub auctions: i128,
        pub second: i128,
    }

    impl Totals {
        pub fn add(&mut self, auction: i64, second: i64) {
            self.rows += 1;
            self.auctions += i128::from(auction);
            self.second += i128::from(second);
        }
    }

    /// A bid's event time (ms since the epoch), auction and price.
    pub struct Bid {
        time: i64,
        auction: i64,
        price: i64,
    }

    pub fn read_bids(folder: &std::path::Path) -> Result<Vec<Bid>> {
        let mut bids = Vec::new();
        for entry in std::fs::read_dir(folder)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "ndjson") {
                continue;
            }
            let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
            for line in reader.lines() {
                let bid: serde_json::Value = serde_json::from_str(&line?)?;
                let time = bid["date_time"]
                    .as_str()
                    .context("a bid without date_time")?;
                bids.push(Bid {
                    time: event_millis(time).with_context(|| format!("a bad time {time}"))?,
                    auction: bid["auction"].as_i64().context("a bid without auction")?,
                    price: bid["price"].as_i64().context("a bid without price")?,
                });
            }
        }
        Ok(bids)
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmm` (UTC) in ms since the epoch.
    fn event_millis(text: &str) -> Option<i64> {
        let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second, milli) = (
            number(11..13)?,
            number(14..16)?,
            number(17..19)?,
            number(20..23)?,
        );
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + milli)
    }

    /// q7: the bids at the highest price of each tumbling 10-second window, for the windows
    /// `EMIT FINAL` closes (grace 5 s).
    pub fn highest_bids(bids: &[Bid]) -> Totals {
        const SIZE: i64 = 10_000;
        const GRACE: i64 = 5_000;
        let stream_time = bids.iter().map(|b| b.time).max().unwrap_or(i64::MIN);
        let mut highest: HashMap<i64, i64> = HashMap::new();
        for bid in bids {
            let price = highest.entry(bid.time.div_euclid(SIZE)).or_insert(i64::MIN);
            *price = (*price).max(bid.price);
        }
        let mut totals = Totals::default();
        for bid in bids {
            let window = bid.time.div_euclid(SIZE);
            if (window + 1) * SIZE + GRACE <= stream_time && highest[&window] == bid.price {
                totals.add(bid.auction, bid.price);
            }
        }
        totals
    }

    /// q5: per hopping window (10 s every 2 s, grace 5 s) the auctions whose bid count is
    /// the window's largest; the largest counts come from a 2-second tumbling window over
    /// the window starts with a 60-second grace, which closes windows later still.
    pub fn hot_items(bids: &[Bid]) -> Totals {
        const SIZE: i64 = 10_000;
        const ADVANCE: i64 = 2_000;
        const GRACE: i64 = 5_000;
        const MAX_SIZE: i64 = 2_000;
        const MAX_GRACE: i64 = 60_000;
        let stream_time = bids.iter().map(|b| b.time).max().unwrap_or(i64::MIN);
        let mut counts: HashMap<(i64, i64), i64> = HashMap::new();
        for bid in bids {
            let last = bid.time.div_euclid(ADVANCE) * ADVANCE;
            let mut start = last;
            while start > bid.time - SIZE {
                *counts.entry((start, bid.auction)).or_default() += 1;
                start -= ADVANCE;
            }
        }
        counts.retain(|(start, _), _| start + SIZE + GRACE <= stream_time);
        // The second stage's stream time: the latest window start it reads.
        let start_time = counts
            .keys()
            .map(|(start, _)| *start)
            .max()
            .unwrap_or(i64::MIN);
        let mut largest: HashMap<i64, i64> = HashMap::new();
        for (&(start, _), &count) in &counts {
            let max = largest.entry(start).or_default();
            *max = (*max).max(count);
        }
        let mut totals = Totals::default();
        for (&(start, auction), &count) in &counts {
            let closes = start.div_euclid(MAX_SIZE) * MAX_SIZE + MAX_SIZE + MAX_GRACE;
            if closes <= start_time && count == largest[&start] {
                totals.add(auction, count);
            }
        }
        totals
    }
}
