//! Joins survive a crash: the server is killed with SIGKILL while rows are being inserted
//! and joined, restarted over the same data directory, and fed more. Each join's sink must
//! then hold exactly what an uninterrupted run over its sources' topics produces: every
//! joined row once, none lost, none twice. A stream–table join reads its table again at the
//! restart; a stream–stream join with a grace period snapshots its state every few thousand
//! rows, and the restart loads the latest snapshot and reads the records after it again.

mod common;

use std::time::{Duration, Instant};

use common::{ksql, rows, try_insert_rows};
use serde_json::{Value, json};

const USERS: usize = 13;
const FIRST_PART: usize = 20_000;
const SECOND_PART: usize = 3_000;

/// How long the tests wait for a server to get somewhere before they fail.
const PATIENCE: Duration = Duration::from_secs(240);

/// Polls `sql` until it gives at least as many rows as `expected` (or [`PATIENCE`] passed),
/// then asserts its rows (each made a `T` by `row`), sorted, equal `expected` (sorted).
async fn assert_sink_holds<T: Ord + std::fmt::Debug>(
    client: &reqwest::Client,
    port: u16,
    sql: &str,
    mut expected: Vec<T>,
    row: impl Fn(&[Value]) -> T,
    what: &str,
) {
    expected.sort();
    let deadline = Instant::now() + PATIENCE;
    let found = loop {
        let found = rows(client, port, sql).await;
        if found.len() >= expected.len() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut actual: Vec<T> = found.iter().map(|r| row(r)).collect();
    actual.sort();
    assert_same(&actual, &expected, what);
}

/// Runs `insert` while the server works, kills the server (SIGKILL) once `progress` gives
/// at least `enough` rows, and answers the restarted server's port.
async fn kill_while_inserting<F>(
    dir: &std::path::Path,
    client: &reqwest::Client,
    setup: &str,
    insert: impl FnOnce(reqwest::Client, u16) -> F,
    progress: &str,
    enough: usize,
) -> (common::Running, u16)
where
    F: std::future::Future<Output = Result<String, reqwest::Error>> + Send + 'static,
{
    {
        let (server, port) = common::start_on(dir);
        ksql(client, port, setup).await;
        let inserting = tokio::spawn(insert(client.clone(), port));
        // Each look reads the whole sink: looking often slows the server it waits for (a
        // debug build, beside the other tests' servers on two cores).
        let deadline = Instant::now() + PATIENCE;
        loop {
            let done = rows(client, port, progress).await.len();
            if done >= enough {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server wrote {done} of the {enough} rows wanted before the kill in {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        drop(server);
        // The request breaks with the server; what it wrote before is in the topic.
        let _ = inserting.await;
    }
    common::start_on(dir)
}

/// Asserts two sorted row lists are equal, showing their sizes and first difference.
fn assert_same<T: PartialEq + std::fmt::Debug>(actual: &[T], expected: &[T], what: &str) {
    let first_difference = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .map(|i| (&actual[i], &expected[i]));
    assert!(
        actual.len() == expected.len() && first_difference.is_none(),
        "{what}: {} rows, expected {}; first difference (got, expected): {first_difference:?}",
        actual.len(),
        expected.len()
    );
}

fn click(n: usize) -> Value {
    json!({"USER": format!("u{}", n % USERS), "N": n})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_table_join_killed_mid_stream_joins_every_record_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let setup = "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH \
                 (kafka_topic='users', partitions=2, value_format='JSON');
                 CREATE STREAM clicks (user STRING KEY, n BIGINT) WITH \
                 (kafka_topic='clicks', partitions=2, value_format='JSON');";
    let users: String = (0..USERS)
        .map(|u| format!("INSERT INTO users (id, name) VALUES ('u{u}', 'name {u}');"))
        .collect();
    let (_server, port) = kill_while_inserting(
        dir.path(),
        &client,
        setup,
        |client, port| async move {
            ksql(&client, port, &users).await;
            ksql(
                &client,
                port,
                "CREATE STREAM enriched AS SELECT c.user, u.name, c.n FROM clicks c \
                     JOIN users u ON c.user = u.id;",
            )
            .await;
            try_insert_rows(&client, port, "CLICKS", (0..FIRST_PART).map(click)).await
        },
        "SELECT n FROM enriched;",
        2_000,
    )
    .await;
    let second = FIRST_PART..FIRST_PART + SECOND_PART;
    let acks = try_insert_rows(&client, port, "CLICKS", second.map(click))
        .await
        .expect("the restarted server answers");
    assert_eq!(acks.matches("\"status\":\"ok\"").count(), SECOND_PART);
    // An uninterrupted run joins every click the topic holds with its user's name.
    let clicks = rows(&client, port, "SELECT n FROM clicks;").await;
    assert!(clicks.len() > SECOND_PART, "some early clicks were written");
    let expected: Vec<(i64, String)> = clicks
        .iter()
        .map(|row| {
            let n = row[0].as_i64().expect("a click number");
            (n, format!("name {}", n as usize % USERS))
        })
        .collect();
    let name_of = |row: &[Value]| {
        let n = row[0].as_i64().expect("a click number");
        (n, row[1].as_str().expect("a name").to_string())
    };
    let query = "SELECT n, name FROM enriched;";
    assert_sink_holds(
        &client,
        port,
        query,
        expected,
        name_of,
        "every click is joined once",
    )
    .await;
}

fn order(n: usize) -> Value {
    json!({"ID": format!("o{n}"), "AMOUNT": n, "TS": 1_000_000 + n as i64 * 10})
}

fn payment(n: usize) -> Value {
    json!({"ID": format!("o{n}"), "PAID": n * 2, "TS": 1_000_005 + n as i64 * 10})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stream_join_killed_mid_stream_joins_every_pair_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let setup = "CREATE STREAM orders (id STRING KEY, amount BIGINT, ts BIGINT) WITH \
                 (kafka_topic='orders', partitions=2, value_format='JSON', timestamp='ts');
                 CREATE STREAM payments (id STRING KEY, paid BIGINT, ts BIGINT) WITH \
                 (kafka_topic='payments', partitions=2, value_format='JSON', timestamp='ts');
                 CREATE STREAM paid AS SELECT o.id, o.amount, p.paid FROM orders o \
                 JOIN payments p WITHIN 1 MINUTE ON o.id = p.id;";
    let (_server, port) = kill_while_inserting(
        dir.path(),
        &client,
        setup,
        |client, port| async move {
            try_insert_rows(&client, port, "ORDERS", (0..FIRST_PART).map(order)).await?;
            try_insert_rows(&client, port, "PAYMENTS", (0..FIRST_PART).map(payment)).await
        },
        "SELECT amount FROM paid;",
        2_000,
    )
    .await;
    let second = FIRST_PART..FIRST_PART + SECOND_PART;
    for (target, rows) in [
        ("PAYMENTS", second.clone().map(payment).collect::<Vec<_>>()),
        ("ORDERS", second.clone().map(order).collect()),
    ] {
        let acks = try_insert_rows(&client, port, target, rows)
            .await
            .expect("the restarted server answers");
        assert_eq!(acks.matches("\"status\":\"ok\"").count(), SECOND_PART);
    }
    assert_paid_holds_every_pair(&client, port, SECOND_PART + 1).await;
}

/// Asserts the sink `paid` holds what an uninterrupted run writes: each order paired with
/// the payment of its id (both in their topics, five milliseconds apart), once; and that
/// there are at least `at_least` pairs.
async fn assert_paid_holds_every_pair(client: &reqwest::Client, port: u16, at_least: usize) {
    let ids = |rows: Vec<Vec<Value>>| -> std::collections::BTreeSet<i64> {
        rows.iter()
            .map(|r| r[0].as_i64().expect("an amount"))
            .collect()
    };
    let orders = ids(rows(client, port, "SELECT amount FROM orders;").await);
    let payments = ids(rows(client, port, "SELECT paid / 2 FROM payments;").await);
    let expected: Vec<(i64, i64)> = orders
        .intersection(&payments)
        .map(|&n| (n, n * 2))
        .collect();
    assert!(
        expected.len() >= at_least,
        "the pairs before the kill were written: {} pairs, {} orders, {} payments",
        expected.len(),
        orders.len(),
        payments.len()
    );
    let pair_of = |row: &[Value]| {
        let amount = row[0].as_i64().expect("an amount");
        (amount, row[1].as_i64().expect("a payment"))
    };
    let query = "SELECT amount, paid FROM paid;";
    assert_sink_holds(
        client,
        port,
        query,
        expected,
        pair_of,
        "every pair is joined once",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stream_join_restored_from_a_snapshot_joins_every_pair_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    // A short window and grace: the state holds a few thousand rows, and is snapshotted
    // each time twice that many were joined.
    let setup = "CREATE STREAM orders (id STRING KEY, amount BIGINT, ts BIGINT) WITH \
                 (kafka_topic='orders', partitions=2, value_format='JSON', timestamp='ts');
                 CREATE STREAM payments (id STRING KEY, paid BIGINT, ts BIGINT) WITH \
                 (kafka_topic='payments', partitions=2, value_format='JSON', timestamp='ts');
                 SET 'riffle.join.snapshot.min.rows'='1000';
                 CREATE STREAM paid AS SELECT o.id, o.amount, p.paid FROM orders o \
                 JOIN payments p WITHIN 1 SECOND GRACE PERIOD 20 SECONDS ON o.id = p.id;";
    // Orders and payments in turns of 500 (five seconds of event time, within the grace).
    const TURN: usize = 500;
    let (_server, port) = kill_while_inserting(
        dir.path(),
        &client,
        setup,
        |client, port| async move {
            let mut last = String::new();
            for from in (0..FIRST_PART).step_by(TURN) {
                let turn = from..from + TURN;
                try_insert_rows(&client, port, "ORDERS", turn.clone().map(order)).await?;
                last = try_insert_rows(&client, port, "PAYMENTS", turn.map(payment)).await?;
            }
            Ok(last)
        },
        "SELECT amount FROM paid;",
        8_000,
    )
    .await;
    // More, in the same turns.
    for from in (FIRST_PART..FIRST_PART + SECOND_PART).step_by(TURN) {
        let turn = from..from + TURN;
        for (target, rows) in [
            ("ORDERS", turn.clone().map(order).collect::<Vec<_>>()),
            ("PAYMENTS", turn.map(payment).collect()),
        ] {
            try_insert_rows(&client, port, target, rows)
                .await
                .expect("the restarted server answers");
        }
    }
    assert_paid_holds_every_pair(&client, port, SECOND_PART + 8_000).await;
}
