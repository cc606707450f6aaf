//! A windowed aggregation survives a crash: the server is killed with SIGKILL while clicks
//! are being inserted and counted, restarted over the same data directory, and fed more.
//! The table's final counts (its topic's latest record per window) and the pull query over
//! it must equal the counts of the clicks the stream's topic holds, which is what an
//! uninterrupted run over that topic produces.

mod common;

use common::{ksql, rows};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const USERS: usize = 7;
const FIRST_PART: usize = 20_000;
const SECOND_PART: usize = 5_000;
/// The pull query over the table: `(user, window start, count)` rows.
const PULL: &str = "SELECT user, WINDOWSTART, n FROM per_window;";

/// The `i`-th click: its user and its event time.
fn click(i: usize) -> (String, i64) {
    (format!("u{}", i % USERS), 1_000_000 + i as i64 * 37)
}

/// What an uninterrupted run counts: clicks `(user, time)` per (user, 10-second window).
fn expected_counts(clicks: &[Vec<Value>]) -> BTreeMap<(String, i64), i64> {
    let mut counts = BTreeMap::new();
    for click in clicks {
        let user = click[0].as_str().expect("a user").to_string();
        let time = click[1].as_i64().expect("a time");
        *counts.entry((user, time - time % 10_000)).or_insert(0) += 1;
    }
    counts
}

/// Sends clicks `range` in one `/inserts-stream` request; every row must be acknowledged.
async fn insert(client: &reqwest::Client, port: u16, range: std::ops::Range<usize>) {
    let acks = try_insert(client, port, range.clone())
        .await
        .expect("the server answers");
    assert_eq!(
        acks.matches("\"status\":\"ok\"").count(),
        range.len(),
        "every row is acknowledged"
    );
}

/// Sends clicks `range` in one `/inserts-stream` request; answers the acknowledgements.
async fn try_insert(
    client: &reqwest::Client,
    port: u16,
    range: std::ops::Range<usize>,
) -> Result<String, reqwest::Error> {
    let clicks = range.map(|i| {
        let (user, time) = click(i);
        json!({"USER": user, "PAGE": "/", "TS": time})
    });
    common::try_insert_rows(client, port, "CLICKS", clicks).await
}

/// `(user, window start, count)` rows as a map.
fn counts_of(rows: &[Vec<Value>]) -> BTreeMap<(String, i64), i64> {
    rows.iter()
        .map(|row| {
            let user = row[0].as_str().expect("a user").to_string();
            let start = row[1].as_i64().expect("a window start");
            let count = row[2].as_i64().expect("a count");
            ((user, start), count)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_count_killed_mid_stream_ends_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    {
        let (server, port) = common::start_on(dir.path());
        ksql(
            &client,
            port,
            "CREATE STREAM clicks (user STRING KEY, page STRING, ts BIGINT) WITH \
             (kafka_topic='clicks', partitions=2, value_format='JSON', timestamp='ts');
             CREATE TABLE per_window AS SELECT user, COUNT(*) AS n FROM clicks \
             WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY user EMIT CHANGES;",
        )
        .await;
        // Clicks go in while the query counts them; once it has counted some, SIGKILL.
        let inserting = tokio::spawn({
            let client = client.clone();
            async move { try_insert(&client, port, 0..FIRST_PART).await }
        });
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let counted: i64 = counts_of(&rows(&client, port, PULL).await).values().sum();
            if counted >= 2_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server counted {counted} of the 2000 clicks wanted before the kill in 240 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(server);
        // The request breaks with the server; what it wrote before is in the topic.
        let _ = inserting.await;
    }
    let (_server, port) = common::start_on(dir.path());
    insert(&client, port, FIRST_PART..FIRST_PART + SECOND_PART).await;
    let clicks = rows(&client, port, "SELECT user, ts FROM clicks;").await;
    assert!(
        clicks.len() > SECOND_PART,
        "some clicks of the first part were written before the crash"
    );
    let expected = expected_counts(&clicks);
    let total: i64 = expected.values().sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    let pulled = loop {
        let pulled = counts_of(&rows(&client, port, PULL).await);
        if pulled.values().sum::<i64>() >= total || Instant::now() > deadline {
            break pulled;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pulled, expected, "the pull query counts every click once");
    // The table's topic: its latest record per window holds the same counts.
    ksql(
        &client,
        port,
        "CREATE STREAM per_window_changes (user STRING KEY, n BIGINT) WITH \
         (kafka_topic='PER_WINDOW', value_format='JSON', window_type='Tumbling', \
         window_size='10 SECONDS');",
    )
    .await;
    let changes = rows(
        &client,
        port,
        "SELECT user, WINDOWSTART, n FROM per_window_changes;",
    )
    .await;
    assert_eq!(
        counts_of(&changes),
        expected,
        "the last change of each window is its final count"
    );
}
