//! Tables end to end on the embedded log: grouped counts per key and per window, `HAVING`,
//! source tables and queries over tables (updates and deletes taken back out of aggregates),
//! and restarts that continue the counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_server::engine::{Engine, Properties};
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use riffle_server::log::{Acks, FetchRequest, Log, ProducerRecord};

fn earliest() -> Properties {
    Properties::from([("auto.offset.reset".to_string(), "earliest".to_string())])
}

/// The embedded log in `dir` (created or reopened) and an engine over it.
async fn open_engine(dir: &std::path::Path) -> (EmbeddedLog, Engine) {
    let log = EmbeddedLog::open(dir, EmbeddedOptions::default()).expect("log opens");
    let engine = Engine::start(Arc::new(log.clone()))
        .await
        .expect("engine starts");
    (log, engine)
}

/// [`earliest`], with ksqlDB's record cache off: every change of an aggregation is emitted.
fn earliest_per_record() -> Properties {
    let mut properties = earliest();
    properties.insert(
        "ksql.streams.cache.max.bytes.buffering".to_string(),
        "0".to_string(),
    );
    properties
}

fn click(user: &str, page: &str, time: i64) -> ProducerRecord {
    ProducerRecord {
        timestamp: Some(time),
        ..ProducerRecord::new(
            Some(user.to_string()),
            Some(format!(r#"{{"page": "{page}"}}"#)),
        )
    }
}

/// The latest value per (key, window start) of a windowed table's topic.
async fn latest_windowed(log: &EmbeddedLog, topic: &str) -> BTreeMap<(String, i64), String> {
    let mut latest = BTreeMap::new();
    let response = log
        .fetch(&FetchRequest::new(topic, 0, 0))
        .await
        .expect("readable");
    for record in response.records {
        let key = record.key.expect("a key");
        let (user, start) = key.split_at(key.len() - 8);
        let start = i64::from_be_bytes(start.try_into().expect("8 bytes"));
        let value = record
            .value
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        latest.insert((String::from_utf8_lossy(user).into_owned(), start), value);
    }
    latest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_count_keeps_counting_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (log, engine) = open_engine(dir.path()).await;
        engine
            .execute(
                "CREATE STREAM clicks (user STRING KEY, page STRING) \
                   WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
                 CREATE TABLE per_minute AS SELECT user, COUNT(*) AS n FROM clicks \
                   WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user;",
                &earliest(),
            )
            .await
            .expect("statements run");
        log.produce(
            "clicks",
            vec![
                click("ann", "/a", 1_000),
                click("bob", "/b", 2_000),
                click("ann", "/c", 59_999),
                click("ann", "/d", 60_000),
            ],
            Acks::All,
        )
        .await
        .expect("produced");
        engine.wait_until_caught_up().await.expect("caught up");
        let counts = latest_windowed(&log, "PER_MINUTE").await;
        assert_eq!(counts[&("ann".to_string(), 0)], r#"{"N":2}"#);
        assert_eq!(counts[&("bob".to_string(), 0)], r#"{"N":1}"#);
        assert_eq!(counts[&("ann".to_string(), 60_000)], r#"{"N":1}"#);
        engine.shutdown().await;
    }
    let (log, engine) = open_engine(dir.path()).await;
    log.produce(
        "clicks",
        vec![click("ann", "/e", 30_000), click("bob", "/f", 61_000)],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let counts = latest_windowed(&log, "PER_MINUTE").await;
    assert_eq!(
        counts[&("ann".to_string(), 0)],
        r#"{"N":3}"#,
        "the count goes on from the state before the restart"
    );
    assert_eq!(counts[&("bob".to_string(), 60_000)], r#"{"N":1}"#);
    engine.shutdown().await;
}

/// An engine over a fresh embedded log in `dir`, with `statements` run.
async fn engine_with(
    dir: &std::path::Path,
    statements: &str,
    properties: &Properties,
) -> (EmbeddedLog, Engine) {
    let (log, engine) = open_engine(dir).await;
    engine
        .execute(statements, properties)
        .await
        .expect("statements run");
    (log, engine)
}

/// Every record of a one-partition topic: key, value (`None`: a tombstone) and time.
async fn all_records(log: &EmbeddedLog, topic: &str) -> Vec<(String, Option<String>, i64)> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    log.fetch(&FetchRequest::new(topic, 0, 0))
        .await
        .expect("readable")
        .records
        .iter()
        .map(|r| {
            (
                text(r.key.as_deref().unwrap_or_default()),
                r.value.as_deref().map(text),
                r.timestamp,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn having_emits_a_tombstone_when_a_group_stops_qualifying() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = engine_with(
        dir.path(),
        "CREATE STREAM clicks (user STRING KEY, page STRING) \
           WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
         CREATE TABLE pairs AS SELECT page, COUNT(*) AS n FROM clicks \
           GROUP BY page HAVING COUNT(*) = 2;",
        &earliest_per_record(),
    )
    .await;
    log.produce(
        "clicks",
        (0..3).map(|i| click("ann", "/home", i)).collect(),
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    assert_eq!(
        all_records(&log, "PAIRS").await,
        [
            ("/home".to_string(), Some(r#"{"N":2}"#.to_string()), 1),
            ("/home".to_string(), None, 2),
        ],
        "nothing while the count is 1, the row at 2, a tombstone at 3"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_that_fails_on_a_group_is_null_and_logged_and_the_count_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = engine_with(
        dir.path(),
        "CREATE STREAM clicks (user STRING KEY, page STRING) \
           WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
         CREATE TABLE per_page AS SELECT page, COUNT(*) AS n, 10 / (COUNT(*) - 2) AS x \
           FROM clicks GROUP BY page;",
        &earliest_per_record(),
    )
    .await;
    log.produce(
        "clicks",
        (0..4).map(|i| click("ann", "/home", i)).collect(),
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let values: Vec<Option<String>> = all_records(&log, "PER_PAGE")
        .await
        .into_iter()
        .map(|(_, value, _)| value)
        .collect();
    assert_eq!(
        values,
        [
            Some(r#"{"N":1,"X":-10}"#.to_string()),
            Some(r#"{"N":2,"X":null}"#.to_string()),
            Some(r#"{"N":3,"X":10}"#.to_string()),
            Some(r#"{"N":4,"X":5}"#.to_string()),
        ],
        "every click counted once; X is NULL where it divides by zero"
    );
    let logged = engine.processing_log().entries();
    assert_eq!(logged.len(), 1, "the second click's failure: {logged:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_query_with_group_by_streams_each_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM clicks (user STRING KEY, page STRING) \
               WITH (kafka_topic='clicks', value_format='JSON', partitions=2);",
            &Properties::new(),
        )
        .await
        .expect("created");
    log.produce(
        "clicks",
        vec![
            click("ann", "/a", 1),
            click("bob", "/b", 2),
            click("ann", "/c", 3),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    let mut query = engine
        .query(
            "SELECT user, COUNT(*) AS n FROM clicks GROUP BY user EMIT CHANGES LIMIT 3;",
            &earliest_per_record(),
        )
        .await
        .expect("the push query starts");
    let mut counts: Vec<(String, i64)> = Vec::new();
    while let Some(batch) = query.next_batch().await {
        use arrow::array::AsArray;
        let users = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .expect("strings");
        let users = users.as_string::<i32>();
        let n = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            counts.push((users.value(row).to_string(), n.value(row)));
        }
    }
    counts.sort();
    assert_eq!(
        counts,
        [
            ("ann".to_string(), 1),
            ("ann".to_string(), 2),
            ("bob".to_string(), 1)
        ],
        "one row per change, then the LIMIT ends the query"
    );
    engine.shutdown().await;
}

fn profile(user: &str, region: Option<&str>, time: i64) -> ProducerRecord {
    ProducerRecord {
        timestamp: Some(time),
        ..ProducerRecord::new(
            Some(user.to_string()),
            region.map(|r| format!(r#"{{"region": "{r}"}}"#)),
        )
    }
}

/// A pull query's rows, each as its columns' text, joined by `|`, sorted.
async fn pull(engine: &Engine, sql: &str) -> Vec<String> {
    let mut query = engine
        .query(sql, &Properties::new())
        .await
        .expect("the pull query runs");
    let mut rows = Vec::new();
    while let Some(batch) = query.next_batch().await {
        let columns: Vec<arrow::array::ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).expect("text"))
            .collect();
        for row in 0..batch.num_rows() {
            use arrow::array::{Array, AsArray};
            let cells: Vec<String> = columns
                .iter()
                .map(|c| {
                    let c = c.as_string::<i32>();
                    if c.is_null(row) {
                        "null".to_string()
                    } else {
                        c.value(row).to_string()
                    }
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_take_updates_and_deletes_back_out_of_their_aggregates_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let statements = "CREATE SOURCE TABLE users (user STRING PRIMARY KEY, region STRING) \
                        WITH (kafka_topic='users', value_format='JSON', partitions=2);
                      CREATE TABLE per_region AS SELECT region, COUNT(*) AS n FROM users \
                        GROUP BY region;
                      CREATE TABLE eu_users AS SELECT user, region FROM users \
                        WHERE region = 'eu';";
    {
        let (log, engine) = open_engine(dir.path()).await;
        engine
            .execute(statements, &earliest())
            .await
            .expect("statements run");
        log.produce(
            "users",
            vec![
                profile("ann", Some("eu"), 1),
                profile("bob", Some("eu"), 2),
                profile("cid", Some("us"), 3),
                // ann moves: out of eu, into us.
                profile("ann", Some("us"), 4),
                // Not JSON: each query over the table logs it once.
                ProducerRecord::new(Some("eve".to_string()), Some("{not json".to_string())),
            ],
            Acks::All,
        )
        .await
        .expect("produced");
        engine.wait_until_caught_up().await.expect("caught up");
        assert_eq!(
            pull(&engine, "SELECT * FROM per_region;").await,
            ["eu|1", "us|2"]
        );
        assert_eq!(pull(&engine, "SELECT * FROM eu_users;").await, ["bob|eu"]);
        assert_eq!(
            pull(&engine, "SELECT * FROM users WHERE user = 'ann';").await,
            ["ann|us"],
            "a source table is materialized for pull queries"
        );
        let Err(error) = engine
            .query(
                "SELECT region, region FROM users WHERE user = 'ann';",
                &Properties::new(),
            )
            .await
        else {
            panic!("a column named twice is refused");
        };
        assert!(
            error
                .to_string()
                .contains("Duplicate value columns found in schema: `REGION` STRING"),
            "{error}"
        );
        assert_eq!(
            engine.processing_log().entries().len(),
            3,
            "the bad record, once per query"
        );
        engine.shutdown().await;
    }
    let (log, engine) = open_engine(dir.path()).await;
    // bob is deleted; cid moves to eu.
    log.produce(
        "users",
        vec![profile("bob", None, 5), profile("cid", Some("eu"), 6)],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    assert!(
        engine.processing_log().entries().is_empty(),
        "rebuilding the tables' rows does not log the bad record again: {:?}",
        engine.processing_log().entries()
    );
    assert_eq!(
        pull(&engine, "SELECT * FROM per_region;").await,
        ["eu|1", "us|1"],
        "the counts go on from the state before the restart"
    );
    assert_eq!(pull(&engine, "SELECT * FROM eu_users;").await, ["cid|eu"]);
    assert_eq!(
        pull(&engine, "SELECT * FROM users;").await,
        ["ann|us", "cid|eu"]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_burst_of_records_gives_one_row_per_group_as_ksqldbs_record_cache_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = engine_with(
        dir.path(),
        "CREATE STREAM clicks (user STRING KEY, page STRING) \
           WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
         CREATE TABLE per_user AS SELECT user, COUNT(*) AS n FROM clicks GROUP BY user;",
        &earliest(),
    )
    .await;
    let burst = (0..5)
        .map(|i| click("ann", "/a", i))
        .chain((5..7).map(|i| click("bob", "/b", i)))
        .collect();
    log.produce("clicks", burst, Acks::All)
        .await
        .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    assert_eq!(
        all_records(&log, "PER_USER").await,
        [
            ("ann".to_string(), Some(r#"{"N":5}"#.to_string()), 4),
            ("bob".to_string(), Some(r#"{"N":2}"#.to_string()), 6),
        ],
        "each group's latest row, once"
    );
    assert_eq!(
        pull(&engine, "SELECT * FROM per_user WHERE user = 'ann';").await,
        ["ann|5"]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_aggregation_reads_its_state_back_from_its_changelog_not_its_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hours_ago = |hours: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        now - hours * 3_600_000
    };
    {
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("opens");
        // Small segments and a retention of an hour: the cleaner drops what is older.
        let config = riffle_server::log::TopicConfig {
            retention_ms: Some(3_600_000),
            segment_bytes: 1024,
            ..riffle_server::log::TopicConfig::new(1)
        };
        log.create_topic("clicks", config).await.expect("creates");
        let engine = Engine::start(Arc::new(log.clone())).await.expect("starts");
        engine
            .execute(
                "CREATE STREAM clicks (user STRING KEY, page STRING) \
                   WITH (kafka_topic='clicks', value_format='JSON');
                 CREATE TABLE per_user AS SELECT user, COUNT(*) AS n FROM clicks GROUP BY user;",
                &earliest(),
            )
            .await
            .expect("statements run");
        let old: Vec<ProducerRecord> = (0..60)
            .map(|i| {
                let user = if i % 3 == 0 { "bob" } else { "ann" };
                click(user, &format!("/page/{i:040}"), hours_ago(2))
            })
            .collect();
        // In several writes: a segment rolls between batches.
        for batch in old.chunks(10) {
            log.produce("clicks", batch.to_vec(), Acks::All)
                .await
                .expect("produced");
        }
        engine.wait_until_caught_up().await.expect("caught up");
        engine.shutdown().await;
    }
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("reopens");
    log.clean_now().expect("cleans");
    let (first, _) = log
        .offsets(
            "clicks",
            0,
            riffle_server::log::IsolationLevel::ReadCommitted,
        )
        .await
        .expect("offsets");
    assert!(first > 0, "retention removed the source's first records");
    let topics = log.list_topics().await.expect("topics");
    assert!(
        topics
            .iter()
            .any(|t| t.ends_with("-Aggregate-Aggregate-Materialize-changelog")),
        "{topics:?}"
    );
    let engine = Engine::start(Arc::new(log.clone()))
        .await
        .expect("restarts");
    log.produce(
        "clicks",
        vec![
            click("ann", "/new", hours_ago(0)),
            click("bob", "/new", hours_ago(0)),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let rows = pull(&engine, "SELECT * FROM per_user;").await;
    assert_eq!(
        rows,
        ["ann|41", "bob|21"],
        "the counts go on from the state before the restart, though its records are gone"
    );
    engine.shutdown().await;
}

/// Every record of a topic's partition 0 as (key, value) text.
async fn topic_records(log: &EmbeddedLog, topic: &str) -> Vec<(String, Option<String>)> {
    all_records(log, topic)
        .await
        .into_iter()
        .map(|(key, value, _)| (key, value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregation_over_joined_rows_counts_them_and_continues_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let order = |user: &str, amount: i64| {
        ProducerRecord::new(
            None::<String>,
            Some(format!(r#"{{"user": "{user}", "amount": {amount}}}"#)),
        )
    };
    let user = |id: &str, region: &str| {
        ProducerRecord::new(
            Some(id.to_string()),
            Some(format!(r#"{{"region": "{region}"}}"#)),
        )
    };
    {
        let (log, engine) = open_engine(dir.path()).await;
        engine
            .execute(
                "CREATE TABLE users (id STRING PRIMARY KEY, region STRING) \
                   WITH (kafka_topic='users', value_format='JSON', partitions=1);
                 CREATE STREAM orders (user STRING, amount BIGINT) \
                   WITH (kafka_topic='orders', value_format='JSON', partitions=1);
                 CREATE TABLE per_region AS SELECT u.region, COUNT(*) AS n, SUM(o.amount) AS total \
                   FROM orders o JOIN users u ON o.user = u.id \
                   WHERE o.amount > 0 GROUP BY u.region HAVING COUNT(*) > 0;",
                &earliest_per_record(),
            )
            .await
            .expect("statements run");
        log.produce(
            "users",
            vec![user("ann", "EU"), user("bob", "US")],
            Acks::All,
        )
        .await
        .expect("users");
        engine.wait_until_caught_up().await.expect("caught up");
        log.produce(
            "orders",
            vec![
                order("ann", 10),
                order("bob", 5),
                order("ann", -1),
                order("eve", 7),
                order("ann", 1),
            ],
            Acks::All,
        )
        .await
        .expect("orders");
        engine.wait_until_caught_up().await.expect("caught up");
        assert_eq!(
            topic_records(&log, "PER_REGION").await,
            [
                ("EU".to_string(), Some(r#"{"N":1,"TOTAL":10}"#.to_string())),
                ("US".to_string(), Some(r#"{"N":1,"TOTAL":5}"#.to_string())),
                ("EU".to_string(), Some(r#"{"N":2,"TOTAL":11}"#.to_string())),
            ],
            "a negative amount is filtered out before the join, eve has no user"
        );
        let explained = engine
            .execute("EXPLAIN CTAS_PER_REGION_0;", &Properties::new())
            .await
            .expect("explained");
        let text = format!("{explained:?}");
        assert!(
            text.contains("[ AGGREGATE ]") && text.contains("JOIN"),
            "{text}"
        );
        engine.shutdown().await;
    }
    let (log, engine) = open_engine(dir.path()).await;
    log.produce("orders", vec![order("bob", 2)], Acks::All)
        .await
        .expect("more orders");
    engine.wait_until_caught_up().await.expect("caught up");
    let records = topic_records(&log, "PER_REGION").await;
    assert_eq!(
        records.last(),
        Some(&("US".to_string(), Some(r#"{"N":2,"TOTAL":7}"#.to_string()))),
        "the count goes on from the state before the restart"
    );
    assert_eq!(
        pull(&engine, "SELECT * FROM per_region WHERE region = 'US';").await,
        ["US|2|7"],
        "the aggregation's table answers pull queries"
    );
    assert_eq!(records.len(), 4, "nothing emitted twice: {records:?}");
    let topics = |log: EmbeddedLog| async move { log.list_topics().await.expect("topics") };
    let repartition =
        "_confluent-ksql-default_query_CTAS_PER_REGION_0-Aggregate-GroupBy-repartition";
    assert!(topics(log.clone()).await.iter().any(|t| t == repartition));
    engine
        .execute("TERMINATE CTAS_PER_REGION_0;", &Properties::new())
        .await
        .expect("terminated");
    assert!(!topics(log.clone()).await.iter().any(|t| t == repartition));
    engine.shutdown().await;
}

#[tokio::test]
async fn count_of_a_literal_counts_rows_beside_count_star() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM clicks (user STRING KEY, page STRING) \
               WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
             CREATE TABLE per_user AS SELECT user, COUNT(1) AS ones, COUNT(*) AS rows, \
                 COUNT(page) AS pages FROM clicks GROUP BY user;",
            &earliest_per_record(),
        )
        .await
        .expect("statements run");
    log.produce(
        "clicks",
        vec![click("ann", "/a", 1), {
            let mut no_page = click("ann", "/b", 2);
            no_page.value = Some(r#"{"page": null}"#.into());
            no_page
        }],
        Acks::All,
    )
    .await
    .expect("clicks");
    engine.wait_until_caught_up().await.expect("caught up");
    assert_eq!(
        topic_records(&log, "PER_USER").await.last(),
        Some(&(
            "ann".to_string(),
            Some(r#"{"ONES":2,"ROWS":2,"PAGES":1}"#.to_string())
        ))
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn an_aggregation_over_joined_rows_reads_one_sides_row_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE TABLE devices (id STRING PRIMARY KEY, name STRING) \
               WITH (kafka_topic='devices', value_format='JSON', partitions=1);
             CREATE STREAM pings (device STRING) \
               WITH (kafka_topic='pings', value_format='JSON', partitions=1);
             CREATE TABLE first_ping AS SELECT d.name, MIN(p.ROWTIME) AS first, \
                 MAX(p.ROWTIME) - MIN(p.ROWTIME) AS span \
               FROM pings p JOIN devices d ON p.device = d.id GROUP BY d.name;",
            &earliest_per_record(),
        )
        .await
        .expect("statements run");
    let record = |key: Option<&str>, value: &str, timestamp: i64| ProducerRecord {
        timestamp: Some(timestamp),
        ..ProducerRecord::new(key.map(str::to_string), Some(value.to_string()))
    };
    log.produce(
        "devices",
        vec![record(Some("d1"), r#"{"name": "router"}"#, 1)],
        Acks::All,
    )
    .await
    .expect("devices");
    engine.wait_until_caught_up().await.expect("caught up");
    log.produce(
        "pings",
        vec![
            record(None, r#"{"device": "d1"}"#, 1000),
            record(None, r#"{"device": "d1"}"#, 4000),
        ],
        Acks::All,
    )
    .await
    .expect("pings");
    engine.wait_until_caught_up().await.expect("caught up");
    assert_eq!(
        topic_records(&log, "FIRST_PING").await,
        [
            (
                "router".to_string(),
                Some(r#"{"FIRST":1000,"SPAN":0}"#.to_string())
            ),
            (
                "router".to_string(),
                Some(r#"{"FIRST":1000,"SPAN":3000}"#.to_string())
            ),
        ]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_query_aggregates_joined_rows_and_removes_its_internal_topic_when_done() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE TABLE users (id STRING PRIMARY KEY, region STRING) \
               WITH (kafka_topic='users', value_format='JSON', partitions=1);
             CREATE STREAM orders (user STRING, amount BIGINT) \
               WITH (kafka_topic='orders', value_format='JSON', partitions=2);",
            &Properties::new(),
        )
        .await
        .expect("created");
    let user = |id: &str, region: &str, time: i64| ProducerRecord {
        timestamp: Some(time),
        ..ProducerRecord::new(
            Some(id.to_string()),
            Some(format!(r#"{{"region": "{region}"}}"#)),
        )
    };
    let order = |user: &str, amount: i64, time: i64| ProducerRecord {
        timestamp: Some(time),
        ..ProducerRecord::new(
            Some(user.to_string()),
            Some(format!(r#"{{"user": "{user}", "amount": {amount}}}"#)),
        )
    };
    log.produce(
        "users",
        vec![user("ann", "EU", 1), user("bob", "US", 2)],
        Acks::All,
    )
    .await
    .expect("users");
    log.produce(
        "orders",
        vec![
            order("ann", 10, 10),
            order("eve", 7, 11),
            order("bob", 5, 12),
            order("ann", 1, 13),
        ],
        Acks::All,
    )
    .await
    .expect("orders");
    let topics_before = log.list_topics().await.expect("topics");
    let mut query = engine
        .query(
            "SELECT u.region, COUNT(*) AS n, SUM(o.amount) AS total \
               FROM orders o JOIN users u ON o.user = u.id \
               GROUP BY u.region EMIT CHANGES LIMIT 3;",
            &earliest_per_record(),
        )
        .await
        .expect("the push query starts");
    let mut rows: Vec<(String, i64, i64)> = Vec::new();
    while let Some(batch) = query.next_batch().await {
        use arrow::array::AsArray;
        use arrow::datatypes::{DataType, Int64Type};
        let regions = arrow::compute::cast(batch.column(0), &DataType::Utf8).expect("strings");
        let regions = regions.as_string::<i32>();
        let (n, total) = (
            batch.column(1).as_primitive::<Int64Type>(),
            batch.column(2).as_primitive::<Int64Type>(),
        );
        for row in 0..batch.num_rows() {
            rows.push((
                regions.value(row).to_string(),
                n.value(row),
                total.value(row),
            ));
        }
    }
    rows.sort();
    assert_eq!(
        rows,
        [
            ("EU".to_string(), 1, 10),
            ("EU".to_string(), 2, 11),
            ("US".to_string(), 1, 5),
        ],
        "eve has no user; then the LIMIT ends the query"
    );
    assert_eq!(
        log.list_topics().await.expect("topics"),
        topics_before,
        "the joined rows' internal topic went with the query"
    );
    engine.shutdown().await;
}

/// Kafka Streams places a windowed record by its key without the window, so that every
/// window of a key lands in the key's partition; Riffle's sinks do the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_of_a_key_lands_in_the_keys_partition() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM clicks (user STRING KEY, page STRING) \
               WITH (kafka_topic='clicks', value_format='json', partitions=4);
             CREATE TABLE per_second AS SELECT user, COUNT(*) AS n FROM clicks \
               WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY user;",
            &earliest(),
        )
        .await
        .expect("created");
    let records = (0..4)
        .flat_map(|second| {
            ["ada", "bob"].map(|user| ProducerRecord {
                timestamp: Some(second * 1000),
                ..ProducerRecord::new(Some(user), Some(r#"{"page": "home"}"#))
            })
        })
        .collect();
    log.produce("clicks", records, Acks::All)
        .await
        .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    for user in ["ada", "bob"] {
        let home = riffle_server::log::partitioner::partition_for_key(user.as_bytes(), 4);
        let mut windows = 0;
        for partition in 0..4 {
            let response = log
                .fetch(&FetchRequest::new("PER_SECOND", partition, 0))
                .await
                .expect("sink readable");
            let of_user = response
                .records
                .iter()
                .filter(|r| {
                    r.key
                        .as_deref()
                        .is_some_and(|k| k.starts_with(user.as_bytes()))
                })
                .count();
            if partition == home {
                windows = of_user;
            } else {
                assert_eq!(of_user, 0, "{user}'s windows in partition {partition}");
            }
        }
        assert_eq!(windows, 4, "{user}'s four windows in partition {home}");
    }
    engine.shutdown().await;
}
