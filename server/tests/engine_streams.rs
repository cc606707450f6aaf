//! Statements end to end on the embedded log: declare a stream, derive another with a
//! persistent query, feed records, read the sink.

use std::sync::Arc;

use riffle_server::engine::{Engine, Properties, StatementResult};
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

async fn sink_values(log: &EmbeddedLog, topic: &str) -> Vec<(Option<String>, Option<String>, i64)> {
    let response = log
        .fetch(&FetchRequest::new(topic, 0, 0))
        .await
        .expect("sink readable");
    response
        .records
        .iter()
        .map(|r| {
            (
                r.key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                r.value
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                r.timestamp,
            )
        })
        .collect()
}

fn json(key: &str, value: &str, timestamp: i64) -> ProducerRecord {
    ProducerRecord {
        timestamp: Some(timestamp),
        ..ProducerRecord::new(Some(key.to_string()), Some(value.to_string()))
    }
}

/// The values of a sink's records, in order.
async fn sink_payloads(log: &EmbeddedLog, topic: &str) -> Vec<Option<String>> {
    let rows = sink_values(log, topic).await;
    rows.into_iter().map(|(_, value, _)| value).collect()
}

/// Writes `{"n": i}` keyed `ki` at time `i` to `numbers`, for `i` in `from..to`.
async fn produce_numbers(log: &EmbeddedLog, from: i64, to: i64) {
    let records = (from..to)
        .map(|i| json(&format!("k{i}"), &format!(r#"{{"n": {i}}}"#), i))
        .collect();
    log.produce("numbers", records, Acks::All)
        .await
        .expect("produced");
}

/// An engine over `dir` with the stream `numbers` and the query `evens` reading it from
/// the earliest offset.
async fn start_evens(dir: &std::path::Path, partitions: i32) -> (EmbeddedLog, Engine) {
    let (log, engine) = open_engine(dir).await;
    engine
        .execute(
            &format!(
                "CREATE STREAM numbers (k STRING KEY, n BIGINT) \
                   WITH (kafka_topic='numbers', value_format='json', partitions={partitions});
                 CREATE STREAM evens AS SELECT k, n FROM numbers WHERE n % 2 = 0;"
            ),
            &earliest(),
        )
        .await
        .expect("statements run");
    (log, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_query_filters_and_projects_into_its_sink() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    let results = engine
        .execute(
            "CREATE STREAM clicks (user_id STRING KEY, page STRING, dwell BIGINT) \
               WITH (kafka_topic='clicks', value_format='json', partitions=1);
             CREATE STREAM long_clicks AS
               SELECT user_id, UCASE(page) AS page, dwell * 1000 AS dwell_ms
               FROM clicks WHERE dwell > 5;",
            &earliest(),
        )
        .await
        .expect("statements run");
    assert!(
        matches!(&results[0], StatementResult::Done { message, .. } if message == "Stream created")
    );
    assert!(matches!(
        &results[1],
        StatementResult::Done { query_id: Some(id), .. } if id == "CSAS_LONG_CLICKS_0"
    ));
    log.produce(
        "clicks",
        vec![
            json("u1", r#"{"page": "home", "dwell": 3}"#, 1000),
            json("u2", r#"{"PAGE": "cart", "DWELL": 9}"#, 2000),
            json("u3", "{not json", 3000),
            json("u4", r#"{"page": "pay", "dwell": 12}"#, 4000),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    assert_eq!(
        sink_values(&log, "LONG_CLICKS").await,
        [
            (
                Some("u2".to_string()),
                Some(r#"{"PAGE":"CART","DWELL_MS":9000}"#.to_string()),
                2000
            ),
            (
                Some("u4".to_string()),
                Some(r#"{"PAGE":"PAY","DWELL_MS":12000}"#.to_string()),
                4000
            ),
        ]
    );
    // The malformed record went to the processing log; the query kept running.
    let entries = engine.processing_log().entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].error.offset, 2);
    assert!(
        entries[0]
            .error
            .message
            .contains("Failed to deserialize value"),
        "{entries:?}"
    );
    // The processing log is also a stream.
    let written = log
        .wait_for_data(
            riffle_server::engine::PROCESSING_LOG_TOPIC,
            0,
            0,
            riffle_server::log::IsolationLevel::ReadCommitted,
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("waited");
    assert!(written, "the entry reached the processing log topic");
    let mut pull = engine
        .query(
            "SELECT message->topic, message->`OFFSET` FROM ksql_processing_log;",
            &Properties::new(),
        )
        .await
        .expect("pull query");
    let batch = pull.next_batch().await.expect("one entry");
    {
        use arrow::array::AsArray;
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "clicks");
        assert_eq!(
            batch
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            2
        );
    }
    let sink = engine.source("LONG_CLICKS").await.expect("registered");
    assert_eq!(
        sink.schema.to_string(),
        "`USER_ID` STRING KEY, `PAGE` STRING, `DWELL_MS` BIGINT"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, engine) = open_engine(dir.path()).await;
    let error = engine
        .execute(
            "CREATE STREAM s (v INT) WITH (kafka_topic='nope', value_format='json');",
            &earliest(),
        )
        .await
        .expect_err("no topic");
    assert!(
        error
            .to_string()
            .starts_with("Topic 'nope' does not exist."),
        "{error}"
    );
    // A schema name is for the Schema Registry's formats.
    let error = engine
        .execute(
            "CREATE STREAM s (v INT) WITH (kafka_topic='s', value_format='json', \
             VALUE_AVRO_SCHEMA_FULL_NAME='com.custom.schema');",
            &earliest(),
        )
        .await
        .expect_err("no schema to name");
    assert!(
        error
            .to_string()
            .contains("JSON does not support the following configs: [fullSchemaName]"),
        "{error}"
    );
    engine
        .execute(
            "CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='json', partitions=1);",
            &earliest(),
        )
        .await
        .expect("created");
    let error = engine
        .execute("CREATE STREAM o AS SELECT missing FROM s;", &earliest())
        .await
        .expect_err("unknown column");
    assert!(error.to_string().contains("MISSING"), "{error}");
    // A function refused its argument types, in ksqlDB's words whoever implements it.
    for (call, words) in [
        (
            "COS(k)",
            "Function 'cos' does not accept parameters (STRING).",
        ),
        (
            "ARRAY_MAX(v)",
            "Function 'array_max' does not accept parameters (INTEGER).",
        ),
        (
            "ARRAY_JOIN(v)",
            "Function 'array_join' does not accept parameters (INTEGER).",
        ),
        // DataFusion's CONCAT_WS and COALESCE would turn the number into text.
        (
            "CONCAT_WS(v, k)",
            "Function 'concat_ws' does not accept parameters (INTEGER, STRING).",
        ),
        (
            "COALESCE(v, k)",
            "Function 'coalesce' does not accept parameters (INTEGER, STRING).",
        ),
    ] {
        let error = engine
            .execute(
                &format!("CREATE STREAM o AS SELECT {call} FROM s;"),
                &earliest(),
            )
            .await
            .expect_err("refused");
        assert!(error.to_string().contains(words), "{call}: {error}");
        assert!(!error.to_string().contains("coercion"), "{call}: {error}");
    }
    // Two columns under one name: the later one is named with its type.
    for (query, words) in [
        (
            "CREATE STREAM o AS SELECT v AS x, k AS x FROM s;",
            "Duplicate value columns found in schema: `X` STRING",
        ),
        (
            "CREATE TABLE o AS SELECT k AS c, COUNT(*) AS c FROM s GROUP BY k;",
            "Duplicate value columns found in schema: `C` BIGINT",
        ),
        // A column selected twice is named twice.
        (
            "CREATE STREAM o AS SELECT k, v, v FROM s;",
            "Duplicate value columns found in schema: `V` INTEGER",
        ),
    ] {
        let error = engine
            .execute(query, &earliest())
            .await
            .expect_err("duplicate");
        assert!(error.to_string().contains(words), "{query}: {error}");
    }
    let error = engine
        .execute("CREATE STREAM o AS SELECT ROWTIME FROM s;", &earliest())
        .await
        .expect_err("reserved");
    assert!(
        error
            .to_string()
            .contains("Reserved column name in select: `ROWTIME`"),
        "{error}"
    );
    let error = engine
        .execute(
            "CREATE STREAM s (v INT) WITH (kafka_topic='s', value_format='json');",
            &earliest(),
        )
        .await
        .expect_err("exists");
    assert!(error.to_string().contains("already exists"), "{error}");
    engine
        .execute("CREATE STREAM o AS SELECT * FROM s;", &earliest())
        .await
        .expect("created");
    let error = engine
        .execute("DROP STREAM s;", &earliest())
        .await
        .expect_err("in use");
    assert!(
        error
            .to_string()
            .contains("The following queries read from this source: [CSAS_O_0]"),
        "{error}"
    );
    engine
        .execute("TERMINATE CSAS_O_0; DROP STREAM s;", &earliest())
        .await
        .expect("dropped");
    engine.shutdown().await;
}

/// Stop the engine and the log, start them again on the same directory: the streams and the
/// query come back from the command topic and resume where they stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_resumes_its_queries_without_losing_or_repeating_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = || EmbeddedOptions::default();
    {
        let (log, engine) = start_evens(dir.path(), 2).await;
        produce_numbers(&log, 0, 50).await;
        engine.wait_until_caught_up().await.expect("caught up");
        engine.shutdown().await;
    }
    let log = EmbeddedLog::open(dir.path(), options()).expect("reopens");
    let engine = Engine::start(Arc::new(log.clone()))
        .await
        .expect("restarts");
    assert!(
        engine.source("EVENS").await.is_some(),
        "the sink stream is back"
    );
    produce_numbers(&log, 50, 100).await;
    engine.wait_until_caught_up().await.expect("caught up");
    let mut seen = Vec::new();
    for partition in 0..2 {
        let response = log
            .fetch(&FetchRequest::new("EVENS", partition, 0))
            .await
            .expect("sink readable");
        for record in response.records {
            let value: serde_json::Value =
                serde_json::from_slice(record.value.as_deref().expect("a value")).expect("JSON");
            seen.push(value["N"].as_i64().expect("N"));
        }
    }
    seen.sort_unstable();
    let expected: Vec<i64> = (0..100).filter(|n| n % 2 == 0).collect();
    assert_eq!(seen, expected, "every even number exactly once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_values_writes_one_record_and_types_alias_structs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE TYPE address AS STRUCT<street STRING, zip INT>;
             CREATE STREAM people (id INT KEY, name STRING, home ADDRESS, score DECIMAL(4, 1)) \
               WITH (kafka_topic='people', value_format='json', partitions=1);
             INSERT INTO people (ROWTIME, id, name, home, score) \
               VALUES (1234, 7, UCASE('ada'), STRUCT(street := 'Main', zip := 10 + 1), 9.5);",
            &earliest(),
        )
        .await
        .expect("statements run");
    let response = log
        .fetch(&FetchRequest::new("people", 0, 0))
        .await
        .expect("readable");
    assert_eq!(response.records.len(), 1);
    let record = &response.records[0];
    assert_eq!(record.timestamp, 1234);
    assert_eq!(record.key.as_deref(), Some(&7i32.to_be_bytes()[..]));
    assert_eq!(
        record.value.as_deref(),
        Some(&br#"{"NAME":"ADA","HOME":{"STREET":"Main","ZIP":11},"SCORE":9.5}"#[..])
    );
    // A STRUCT naming some of the fields leaves the others NULL; `STRUCT()` names none.
    engine
        .execute(
            "INSERT INTO people (id, home) VALUES (8, STRUCT(zip := 12));
             INSERT INTO people (id, home) VALUES (9, STRUCT());",
            &earliest(),
        )
        .await
        .expect("partial structs inserted");
    let response = log
        .fetch(&FetchRequest::new("people", 0, 1))
        .await
        .expect("readable");
    let values: Vec<&[u8]> = response
        .records
        .iter()
        .map(|r| r.value.as_deref().expect("a value"))
        .collect();
    assert_eq!(
        values,
        [
            &br#"{"NAME":null,"HOME":{"STREET":null,"ZIP":12},"SCORE":null}"#[..],
            &br#"{"NAME":null,"HOME":{"STREET":null,"ZIP":null},"SCORE":null}"#[..],
        ]
    );
    let error = engine
        .execute(
            "INSERT INTO people (id, home) VALUES (10, STRUCT(city := 'Oslo'));",
            &earliest(),
        )
        .await
        .expect_err("a field the column lacks");
    assert!(
        error.to_string().contains(
            "Expected type STRUCT<`STREET` STRING, `ZIP` INTEGER> for field HOME but got \
             STRUCT<`CITY` STRING>"
        ),
        "{error}"
    );
    let error = engine
        .execute("INSERT INTO nobody VALUES (1);", &earliest())
        .await
        .expect_err("unknown target");
    assert!(
        error
            .to_string()
            .contains("Cannot insert values into an unknown stream/table: `NOBODY`")
    );
    let error = engine
        .execute("INSERT INTO people (nope) VALUES (1);", &earliest())
        .await
        .expect_err("unknown column");
    assert!(
        error
            .to_string()
            .contains("Column name NOPE does not exist."),
        "{error}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_queries_stream_new_rows_and_pull_queries_read_what_is_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM readings (sensor STRING KEY, temp DOUBLE) \
               WITH (kafka_topic='readings', value_format='json', partitions=1);",
            &earliest(),
        )
        .await
        .expect("created");
    log.produce(
        "readings",
        vec![json("s1", r#"{"temp": 20.5}"#, 1)],
        Acks::All,
    )
    .await
    .expect("produced");
    // A push query starts at the end (ksqlDB's default `auto.offset.reset`).
    let mut push = engine
        .query(
            "SELECT sensor, temp FROM readings WHERE temp > 30 EMIT CHANGES LIMIT 2;",
            &Properties::new(),
        )
        .await
        .expect("push query starts");
    let names: Vec<&str> = push
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["SENSOR", "TEMP"]);
    log.produce(
        "readings",
        vec![
            json("s2", r#"{"temp": 31.0}"#, 2),
            json("s3", r#"{"temp": 10.0}"#, 3),
            json("s4", r#"{"temp": 35.0}"#, 4),
            json("s5", r#"{"temp": 40.0}"#, 5),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    let mut sensors = Vec::new();
    while let Some(batch) = push.next_batch().await {
        use arrow::array::AsArray;
        let column = batch.column(0).as_string::<i32>();
        sensors.extend((0..batch.num_rows()).map(|i| column.value(i).to_string()));
    }
    assert_eq!(
        sensors,
        ["s2", "s4"],
        "rows as they arrive, stopping at LIMIT 2"
    );
    // A pull query over a stream reads everything there now, then ends.
    let mut pull = engine
        .query("SELECT * FROM readings;", &Properties::new())
        .await
        .expect("pull query starts");
    let mut rows = 0;
    while let Some(batch) = pull.next_batch().await {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 5);
    let error = engine
        .query("SHOW STREAMS;", &Properties::new())
        .await
        .expect_err("not a query");
    assert!(
        error.to_string().contains("Only SELECT statements"),
        "{error}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_set_properties_define_variables_and_describe_sources() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, engine) = open_engine(dir.path()).await;
    let results = engine
        .execute(
            "DEFINE topic = 'orders';
             SET 'auto.offset.reset' = 'earliest';
             CREATE STREAM orders (id INT KEY, amount DOUBLE) \
               WITH (kafka_topic='${topic}', value_format='json', partitions=2);
             CREATE STREAM big AS SELECT id, amount FROM orders WHERE amount > 100;
             SHOW VARIABLES;
             SHOW PROPERTIES;
             SHOW TOPICS;
             DESCRIBE orders;",
            &Properties::new(),
        )
        .await
        .expect("script runs");
    let StatementResult::Variables(variables) = &results[4] else {
        panic!("{:?}", results[4])
    };
    assert_eq!(variables.get("TOPIC").map(String::as_str), Some("orders"));
    let StatementResult::Properties(properties) = &results[5] else {
        panic!("{:?}", results[5])
    };
    assert_eq!(
        properties.get("auto.offset.reset").map(String::as_str),
        Some("earliest")
    );
    let StatementResult::Topics(topics) = &results[6] else {
        panic!("{:?}", results[6])
    };
    assert!(topics.contains(&("orders".to_string(), 2)), "{topics:?}");
    assert!(
        topics.iter().all(|(name, _)| !name.starts_with('_')),
        "internal topics hidden"
    );
    let StatementResult::Description(description) = &results[7] else {
        panic!("{:?}", results[7])
    };
    assert_eq!(description.source.topic, "orders");
    let readers: Vec<&str> = description.read_by.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(readers, ["CSAS_BIG_0"]);
    let error = engine
        .execute("SELECT * FROM ${missing};", &Properties::new())
        .await
        .expect_err("undefined variable");
    assert!(
        error.to_string().contains("'${missing}' is not defined"),
        "{error}"
    );
    engine.shutdown().await;
}

/// Records the query with `id` has committed, over all partitions of `topic`.
async fn committed(log: &EmbeddedLog, id: &str, topic: &str) -> i64 {
    log.committed_offsets(id, topic)
        .await
        .expect("offsets readable")
        .values()
        .sum()
}

fn query_states(result: &StatementResult) -> Vec<(String, &'static str)> {
    let StatementResult::Queries(queries) = result else {
        panic!("{result:?}")
    };
    queries
        .iter()
        .map(|q| (q.id.clone(), q.state.name()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_query_keeps_its_position_across_a_restart_until_resumed() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (log, engine) = start_evens(dir.path(), 1).await;
        produce_numbers(&log, 0, 10).await;
        engine.wait_until_caught_up().await.expect("caught up");
        let results = engine
            .execute("PAUSE CSAS_EVENS_0; SHOW QUERIES;", &Properties::new())
            .await
            .expect("paused");
        assert_eq!(
            results[0],
            StatementResult::Done {
                message: "Query paused.".into(),
                query_id: None
            }
        );
        assert_eq!(
            query_states(&results[1]),
            [("CSAS_EVENS_0".to_string(), "PAUSED")]
        );
        engine.shutdown().await;
    }
    let (log, engine) = open_engine(dir.path()).await;
    produce_numbers(&log, 10, 20).await;
    let results = engine
        .execute("SHOW QUERIES;", &Properties::new())
        .await
        .expect("listed");
    assert_eq!(
        query_states(&results[0]),
        [("CSAS_EVENS_0".to_string(), "PAUSED")],
        "still paused after the restart"
    );
    assert_eq!(committed(&log, "CSAS_EVENS_0", "numbers").await, 10);
    let error = engine
        .execute("RESUME no_such_query;", &Properties::new())
        .await
        .expect_err("unknown query");
    assert!(error.to_string().contains("Unknown queryId"), "{error}");
    engine
        .execute("RESUME ALL;", &Properties::new())
        .await
        .expect("resumed");
    engine.wait_until_caught_up().await.expect("caught up");
    assert_eq!(committed(&log, "CSAS_EVENS_0", "numbers").await, 20);
    let evens: Vec<i64> = sink_values(&log, "EVENS")
        .await
        .iter()
        .map(|(_, value, _)| {
            let value: serde_json::Value =
                serde_json::from_str(value.as_deref().expect("a value")).expect("JSON");
            value["N"].as_i64().expect("N")
        })
        .collect();
    assert_eq!(evens, (0..20).filter(|n| n % 2 == 0).collect::<Vec<_>>());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_describe_tell_what_queries_sources_and_functions_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM orders (id INT KEY, amount DOUBLE) \
               WITH (kafka_topic='orders', value_format='json', partitions=2);
             CREATE STREAM big AS SELECT id, amount * 2 AS doubled FROM orders WHERE amount > 100;",
            &Properties::new(),
        )
        .await
        .expect("statements run");
    log.produce(
        "orders",
        vec![
            json("1", r#"{"amount": 5}"#, 1),
            json("2", r#"{"amount": 500}"#, 2),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    let results = engine
        .execute(
            "EXPLAIN CSAS_BIG_0;
             EXPLAIN SELECT id FROM orders WHERE amount < 3 EMIT CHANGES;
             DESCRIBE orders EXTENDED;
             DESCRIBE STREAMS;
             DESCRIBE FUNCTION ucase;",
            &Properties::new(),
        )
        .await
        .expect("statements run");
    let StatementResult::Explanation(running) = &results[0] else {
        panic!("{:?}", results[0])
    };
    assert_eq!(running.id, "CSAS_BIG_0");
    assert_eq!(
        (running.sources.as_slice(), running.sinks.as_slice()),
        (&["ORDERS".to_string()][..], &["BIG".to_string()][..])
    );
    assert_eq!(
        running.fields.to_string(),
        "`ID` INTEGER KEY, `DOUBLED` DOUBLE"
    );
    assert!(
        running.statement.starts_with("CREATE STREAM big AS SELECT"),
        "{}",
        running.statement
    );
    assert!(
        running.execution_plan.contains("[ SINK ]"),
        "{}",
        running.execution_plan
    );
    assert!(
        running.execution_plan.contains("[ FILTER ]"),
        "{}",
        running.execution_plan
    );
    assert_eq!(running.state.map(|s| s.name()), Some("RUNNING"));
    let StatementResult::Explanation(planned) = &results[1] else {
        panic!("{:?}", results[1])
    };
    assert_eq!(planned.id, "");
    assert_eq!(planned.fields.to_string(), "`ID` INTEGER KEY");
    assert!(planned.state.is_none() && planned.sinks.is_empty());
    let StatementResult::Description(orders) = &results[2] else {
        panic!("{:?}", results[2])
    };
    let figures = orders.extended.as_ref().expect("extended figures");
    assert_eq!((figures.partitions, figures.messages), (2, 2));
    assert!(
        orders.source.statement.starts_with("CREATE STREAM orders"),
        "{}",
        orders.source.statement
    );
    let StatementResult::Descriptions(streams) = &results[3] else {
        panic!("{:?}", results[3])
    };
    let mut names: Vec<&str> = streams.iter().map(|d| d.source.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["BIG", "KSQL_PROCESSING_LOG", "ORDERS"]);
    let StatementResult::Function(function) = &results[4] else {
        panic!("{:?}", results[4])
    };
    assert_eq!((function.name.as_str(), function.kind), ("UCASE", "SCALAR"));
    assert_eq!(function.variants.len(), 1);
    assert_eq!(function.variants[0].arguments, ["STRING"]);
    assert_eq!(function.variants[0].return_type, "STRING");
    // Every form a function takes, with its arguments' names and types.
    let described = engine
        .execute(
            "DESCRIBE FUNCTION lpad; DESCRIBE FUNCTION explode; DESCRIBE FUNCTION concat;",
            &Properties::new(),
        )
        .await
        .expect("described");
    let StatementResult::Function(lpad) = &described[0] else {
        panic!("{:?}", described[0])
    };
    let forms: Vec<(Vec<&str>, &str)> = lpad
        .variants
        .iter()
        .map(|v| {
            (
                v.arguments.iter().map(String::as_str).collect(),
                v.return_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        forms,
        [
            (vec!["STRING", "INT", "STRING"], "STRING"),
            (vec!["BYTES", "INT", "BYTES"], "BYTES")
        ]
    );
    assert_eq!(
        lpad.variants[0].argument_names,
        ["input", "length", "padding"]
    );
    let StatementResult::Function(explode) = &described[1] else {
        panic!("{:?}", described[1])
    };
    assert_eq!(explode.kind, "TABLE");
    let StatementResult::Function(concat) = &described[2] else {
        panic!("{:?}", described[2])
    };
    assert!(concat.variants.iter().all(|v| v.variadic));
    let listed = engine
        .execute("SHOW FUNCTIONS;", &Properties::new())
        .await
        .expect("listed");
    let [StatementResult::Functions(names)] = listed.as_slice() else {
        panic!("a list of functions: {listed:?}");
    };
    for name in ["SUBSTRING", "TRANSFORM", "TOPK", "EXPLODE"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    // What the planner writes for ksqlDB's syntax is not listed.
    for name in ["ARRAY_OF", "LAMBDA_OPERAND", "EMPTY_STRUCT"] {
        assert!(!names.iter().any(|n| n == name), "{name} listed");
    }
    let error = engine
        .execute("DESCRIBE FUNCTION no_such_function;", &Properties::new())
        .await
        .expect_err("unknown function");
    assert!(
        error
            .to_string()
            .contains("Can't find any functions with the name 'NO_SUCH_FUNCTION'"),
        "{error}"
    );
    let error = engine
        .execute("EXPLAIN CSAS_NOPE_9;", &Properties::new())
        .await
        .expect_err("unknown query");
    assert!(
        error
            .to_string()
            .contains("Query with id:CSAS_NOPE_9 does not exist"),
        "{error}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_explained_with_its_sources_keys_and_window_and_keeps_them_from_being_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM orders (id STRING KEY, amount DOUBLE) \
               WITH (kafka_topic='orders', value_format='json', partitions=1);
             CREATE STREAM payments (id STRING KEY, paid DOUBLE) \
               WITH (kafka_topic='payments', value_format='json', partitions=1);
             CREATE STREAM paid AS SELECT o.id, amount, paid FROM orders o \
               LEFT JOIN payments p WITHIN 1 MINUTE GRACE PERIOD 10 SECONDS ON o.id = p.id;",
            &Properties::new(),
        )
        .await
        .expect("statements run");
    let results = engine
        .execute("EXPLAIN CSAS_PAID_0;", &Properties::new())
        .await
        .expect("explains");
    let StatementResult::Explanation(join) = &results[0] else {
        panic!("{:?}", results[0])
    };
    assert_eq!(join.sources, ["ORDERS", "PAYMENTS"]);
    assert_eq!(
        join.fields.to_string(),
        "`O_ID` STRING KEY, `AMOUNT` DOUBLE, `PAID` DOUBLE"
    );
    let plan = &join.execution_plan;
    assert!(
        plan.contains("[ JOIN ] | STREAM-STREAM LEFT")
            && plan.contains("before 60000 ms, after 60000 ms, grace 10000 ms")
            && plan.matches("[ SOURCE ]").count() == 2,
        "{plan}"
    );
    let refused = engine
        .execute("DROP STREAM payments;", &Properties::new())
        .await
        .expect_err("a source a query reads cannot be dropped");
    assert!(refused.to_string().contains("CSAS_PAID_0"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_timestamp_is_skipped_unless_the_query_must_throw_on_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM readings (id BIGINT, ts STRING) WITH (kafka_topic='readings', \
               value_format='json', partitions=1, timestamp='ts', \
               timestamp_format='yyyy-MM-dd HH:mm:ss');
             CREATE STREAM lenient AS SELECT id FROM readings;",
            &earliest(),
        )
        .await
        .expect("statements run");
    let mut strict = earliest();
    strict.insert(
        "ksql.timestamp.throw.on.invalid".to_string(),
        "true".to_string(),
    );
    engine
        .execute(
            "CREATE STREAM strict AS SELECT id FROM readings;
             CREATE TABLE strict_counts AS SELECT id, COUNT(*) AS n FROM readings GROUP BY id;",
            &strict,
        )
        .await
        .expect("strict queries created");
    log.produce(
        "readings",
        vec![
            ProducerRecord::new(
                None::<String>,
                Some(r#"{"id": 1, "ts": "2026-11-26 10:00:00"}"#),
            ),
            ProducerRecord::new(None::<String>, Some(r#"{"id": 2, "ts": "not a time"}"#)),
            ProducerRecord::new(
                None::<String>,
                Some(r#"{"id": 3, "ts": "2026-11-26 10:00:01"}"#),
            ),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    let error = engine
        .wait_until_caught_up()
        .await
        .expect_err("the strict query stops");
    assert!(
        error
            .to_string()
            .contains("Fatal user code error in TimestampExtractor callback for record"),
        "{error}"
    );
    // The lenient query skips the record and logs it; the strict one writes what came
    // before it, then stops there (its position stays at the record).
    assert_eq!(
        sink_payloads(&log, "LENIENT").await,
        [
            Some(r#"{"ID":1}"#.to_string()),
            Some(r#"{"ID":3}"#.to_string())
        ]
    );
    assert!(
        engine
            .processing_log()
            .entries()
            .iter()
            .any(|entry| entry.error.offset == 1 && entry.query_id == "CSAS_LENIENT_0")
    );
    assert_eq!(
        sink_payloads(&log, "STRICT").await,
        [Some(r#"{"ID":1}"#.to_string())]
    );
    assert_eq!(committed(&log, "CSAS_STRICT_1", "readings").await, 1);
    assert_eq!(
        sink_payloads(&log, "STRICT_COUNTS").await,
        [Some(r#"{"N":1}"#.to_string())],
        "the aggregation counts the record before the bad one, then stops"
    );
    let results = engine
        .execute("SHOW QUERIES;", &Properties::new())
        .await
        .expect("listed");
    assert_eq!(
        query_states(&results[0]),
        [
            ("CSAS_LENIENT_0".to_string(), "RUNNING"),
            ("CSAS_STRICT_1".to_string(), "ERROR"),
            ("CTAS_STRICT_COUNTS_2".to_string(), "ERROR")
        ]
    );
    engine.shutdown().await;
}

/// Orders and payments, a partition each.
const ORDERS_AND_PAYMENTS: &str = "CREATE STREAM orders (id STRING KEY, amount DOUBLE) \
    WITH (kafka_topic='orders', value_format='json', partitions=1);
    CREATE STREAM payments (id STRING KEY, paid DOUBLE) \
    WITH (kafka_topic='payments', value_format='json', partitions=1);";

/// An engine over the log in `dir` with [`ORDERS_AND_PAYMENTS`] declared.
async fn open_orders_and_payments(dir: &std::path::Path) -> (EmbeddedLog, Engine) {
    let (log, engine) = open_engine(dir).await;
    engine
        .execute(ORDERS_AND_PAYMENTS, &Properties::new())
        .await
        .expect("statements run");
    (log, engine)
}

/// Each order with its payment, within a second.
const PAID: &str = "CREATE STREAM paid AS SELECT o.id, amount, paid FROM orders o \
    JOIN payments p WITHIN 1 SECOND GRACE PERIOD 1 SECOND ON o.id = p.id;";

/// Three minutes of records, one a second, keyed `o0`, `o1`, …: `value` at each second
/// plus `offset` ms.
fn each_second(value: &str, offset: i64) -> Vec<ProducerRecord> {
    (0..180)
        .map(|i| json(&format!("o{i}"), value, i * 1000 + offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_started_over_written_records_pairs_them_in_event_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_orders_and_payments(dir.path()).await;
    // Three minutes of orders, then the payments of the same three minutes, each half a
    // second after its order: read input by input, the join would see every order before
    // the first payment, when the first orders' windows have long expired.
    for (topic, records) in [
        ("orders", each_second(r#"{"amount": 1.0}"#, 0)),
        ("payments", each_second(r#"{"paid": 1.0}"#, 500)),
    ] {
        log.produce(topic, records, Acks::All)
            .await
            .expect("produced");
    }
    engine
        .execute(PAID, &earliest())
        .await
        .expect("the join starts");
    engine.wait_until_caught_up().await.expect("caught up");
    let paid = sink_values(&log, "PAID").await;
    assert_eq!(paid.len(), 180, "every order meets its payment: {paid:?}");
    assert_eq!(paid[0].0.as_deref(), Some("o0"));
    assert_eq!(paid[179].2, 179_500, "a pair has its later row's time");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_max_task_idle_waits_for_the_input_that_has_nothing_yet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_orders_and_payments(dir.path()).await;
    let mut idle = earliest();
    idle.insert("max.task.idle.ms".to_string(), "soon".to_string());
    let refused = engine.execute(PAID, &idle).await.expect_err("not a number");
    assert!(
        refused
            .to_string()
            .contains("Invalid value soon for configuration max.task.idle.ms"),
        "{refused}"
    );
    log.produce("orders", each_second(r#"{"amount": 1.0}"#, 0), Acks::All)
        .await
        .expect("produced");
    idle.insert("max.task.idle.ms".to_string(), "5000".to_string());
    engine.execute(PAID, &idle).await.expect("the join starts");
    // The orders wait for the payments (written after the join started), rather than
    // expiring before their payments come. (The last payment then waits up to the idle
    // time for an order after it, as Kafka Streams' tasks wait.)
    log.produce("payments", each_second(r#"{"paid": 1.0}"#, 500), Acks::All)
        .await
        .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let paid = sink_values(&log, "PAID").await;
    assert_eq!(paid.len(), 180, "every order meets its payment: {paid:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_join_loads_its_state_from_its_changelog_not_from_its_sources() {
    let dir = tempfile::tempdir().expect("temp dir");
    let changelog = "_confluent-ksql-default_query_CSAS_PAID_0-Join-state-changelog";
    {
        let (log, engine) = open_orders_and_payments(dir.path()).await;
        log.produce("orders", each_second(r#"{"amount": 1.0}"#, 0), Acks::All)
            .await
            .expect("produced");
        // Every payment but the last order's.
        let mut payments = each_second(r#"{"paid": 1.0}"#, 500);
        payments.pop();
        log.produce("payments", payments, Acks::All)
            .await
            .expect("produced");
        let mut properties = earliest();
        properties.insert("riffle.join.snapshot.min.rows".into(), "1".into());
        engine
            .execute(PAID, &properties)
            .await
            .expect("the join starts");
        engine.wait_until_caught_up().await.expect("caught up");
        assert_eq!(sink_values(&log, "PAID").await.len(), 179);
        assert!(
            log.list_topics()
                .await
                .expect("topics")
                .contains(&changelog.to_string()),
            "the join keeps a changelog"
        );
        engine.shutdown().await;
        // Where the query first started moves to the sources' ends: the last order (still
        // waiting for its payment) can only come back from the changelog.
        let mut ends = Vec::new();
        for topic in ["orders", "payments"] {
            let (_, end) = log
                .offsets(topic, 0, riffle_server::log::IsolationLevel::ReadCommitted)
                .await
                .expect("offsets");
            ends.push(riffle_server::log::TopicPartitionOffset {
                topic: topic.to_string(),
                partition: 0,
                offset: end,
            });
        }
        log.commit_offsets("CSAS_PAID_0-origin", &ends)
            .await
            .expect("committed");
    }
    let (log, engine) = open_engine(dir.path()).await;
    log.produce(
        "payments",
        vec![json("o179", r#"{"paid": 1.0}"#, 179_500)],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let paid = sink_values(&log, "PAID").await;
    assert_eq!(paid.len(), 180, "the last order meets its payment");
    assert_eq!(paid[179].0.as_deref(), Some("o179"));
    engine
        .execute("TERMINATE CSAS_PAID_0;", &Properties::new())
        .await
        .expect("terminated");
    assert!(
        !log.list_topics()
            .await
            .expect("topics")
            .contains(&changelog.to_string()),
        "TERMINATE deletes the changelog"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_functions_make_a_row_per_item_and_lambdas_reshape_arrays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM orders (id STRING KEY, items ARRAY<INT>, tags ARRAY<STRING>, \
                 prices MAP<STRING, INT>) \
               WITH (kafka_topic='orders', value_format='json', partitions=1);
             CREATE STREAM order_items AS
               SELECT id, EXPLODE(items) AS item, EXPLODE(TRANSFORM(tags, t => UCASE(t))) AS tag,
                      REDUCE(items, 0, (s, x) => s + x) AS total,
                      FILTER(prices, (k, v) => v > 2) AS dear
               FROM orders WHERE id <> 'skip';",
            &earliest(),
        )
        .await
        .expect("statements run");
    log.produce(
        "orders",
        vec![
            json(
                "o1",
                r#"{"items": [1, 2, 3], "tags": ["a"], "prices": {"x": 1, "y": 5}}"#,
                1,
            ),
            json("skip", r#"{"items": [9], "tags": ["z"]}"#, 2),
            json("o2", r#"{"items": [], "tags": null}"#, 3),
            json("o3", r#"{"items": [4], "tags": ["b", "c"]}"#, 4),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let rows: Vec<(Option<String>, Option<String>, i64)> = sink_values(&log, "ORDER_ITEMS").await;
    let expected = [
        ("o1", r#"{"ITEM":1,"TAG":"A","TOTAL":6,"DEAR":{"y":5}}"#, 1),
        ("o1", r#"{"ITEM":2,"TAG":null,"TOTAL":6,"DEAR":{"y":5}}"#, 1),
        ("o1", r#"{"ITEM":3,"TAG":null,"TOTAL":6,"DEAR":{"y":5}}"#, 1),
        ("o3", r#"{"ITEM":4,"TAG":"B","TOTAL":4,"DEAR":null}"#, 4),
        ("o3", r#"{"ITEM":null,"TAG":"C","TOTAL":4,"DEAR":null}"#, 4),
    ];
    let expected: Vec<(Option<String>, Option<String>, i64)> = expected
        .iter()
        .map(|(k, v, t)| (Some(k.to_string()), Some(v.to_string()), *t))
        .collect();
    assert_eq!(rows, expected);

    let refused = engine
        .execute(
            "CREATE TABLE counts AS SELECT id, EXPLODE(items), COUNT(*) FROM orders GROUP BY id;",
            &earliest(),
        )
        .await
        .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("Table functions cannot be used with aggregations."),
        "{refused}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn substring_counts_positions_as_ksqldb_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM words (id STRING KEY, s STRING) \
               WITH (kafka_topic='words', value_format='json', partitions=1);
             CREATE STREAM parts AS
               SELECT id, SUBSTRING(s, 0, 2) AS head, SUBSTRING(s, -3) AS tail,
                      SUBSTRING(s, 20) AS past
               FROM words;",
            &earliest(),
        )
        .await
        .expect("statements run");
    log.produce(
        "words",
        vec![json("w", r#"{"s": "some string"}"#, 1)],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let rows = sink_values(&log, "PARTS").await;
    assert_eq!(
        rows[0].1.as_deref(),
        Some(r#"{"HEAD":"so","TAIL":"ing","PAST":""}"#)
    );
    engine.shutdown().await;
}

/// A DECIMAL wider than 38 digits keeps every digit from its topic to its sink, through
/// arithmetic, comparisons, GREATEST and SUM; a DOUBLE cast to a DECIMAL rounds its shortest
/// digits HALF_UP, as ksqlDB's `BigDecimal.valueOf` does (1.005 is 1.01, not 1.00).
#[tokio::test]
async fn decimals_wider_than_38_digits_keep_every_digit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM amounts (id STRING KEY, a DECIMAL(50, 30), b DECIMAL(40, 0)) \
               WITH (kafka_topic='amounts', value_format='json', partitions=1);
             CREATE STREAM totals AS
               SELECT id, a, a + a AS twice, GREATEST(a, b) AS top, a > b AS bigger,
                      CAST(a AS STRING) AS text,
                      CAST(CAST(1.005 AS DOUBLE) AS DECIMAL(3, 2)) AS half_up
               FROM amounts WHERE a IS NOT NULL;
             CREATE TABLE sums AS SELECT id, SUM(a) AS total FROM amounts GROUP BY id;",
            &earliest(),
        )
        .await
        .expect("statements run");
    let sink = engine.source("TOTALS").await.expect("registered");
    assert_eq!(
        sink.schema.to_string(),
        "`ID` STRING KEY, `A` DECIMAL(50, 30), `TWICE` DECIMAL(51, 30), \
         `TOP` DECIMAL(70, 30), `BIGGER` BOOLEAN, `TEXT` STRING, `HALF_UP` DECIMAL(3, 2)"
    );
    log.produce(
        "amounts",
        vec![json(
            "x",
            r#"{"a": 12345678901234567890.123456789012345678901234567890, "b": 7}"#,
            1,
        )],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let rows = sink_values(&log, "TOTALS").await;
    assert_eq!(
        rows[0].1.as_deref(),
        Some(
            r#"{"A":12345678901234567890.123456789012345678901234567890,"TWICE":24691357802469135780.246913578024691357802469135780,"TOP":12345678901234567890.123456789012345678901234567890,"BIGGER":true,"TEXT":"12345678901234567890.123456789012345678901234567890","HALF_UP":1.01}"#
        )
    );
    let sums = sink_values(&log, "SUMS").await;
    assert_eq!(
        sums.last().and_then(|row| row.1.as_deref()),
        Some(r#"{"TOTAL":12345678901234567890.123456789012345678901234567890}"#)
    );
    let error = engine
        .execute(
            "CREATE STREAM bad (id STRING KEY, a DECIMAL(77, 2)) \
               WITH (kafka_topic='amounts', value_format='json');",
            &earliest(),
        )
        .await
        .expect_err("too wide");
    assert!(
        error
            .to_string()
            .contains("DECIMAL precision must be between 1 and 76: 77"),
        "{error}"
    );
    engine.shutdown().await;
}

/// GREATEST and LEAST take one argument's own value, so a DECIMAL answer keeps that
/// argument's scale (ksqlDB's `BigDecimal`s do) although the column's type has the widest:
/// JSON and DELIMITED sinks write `1234567.89`, not `1234567.890000`. Of equal values the
/// first argument's is taken; arithmetic on the answer has the type's scale again.
#[tokio::test]
async fn greatest_and_least_keep_the_scale_of_the_decimal_they_take() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM amounts (id STRING KEY, a DECIMAL(9, 2), b DECIMAL(7, 6)) \
               WITH (kafka_topic='amounts', value_format='json', partitions=1);
             CREATE STREAM extremes AS
               SELECT id, GREATEST(a, b) AS top, LEAST(a, b, NULL) AS bottom,
                      GREATEST(a, b) + 0 AS sum
               FROM amounts;
             CREATE STREAM extremes_csv WITH (value_format='delimited') AS
               SELECT id, GREATEST(b, a) AS top FROM amounts;",
            &earliest(),
        )
        .await
        .expect("statements run");
    let sink = engine.source("EXTREMES").await.expect("registered");
    assert_eq!(
        sink.schema.to_string(),
        "`ID` STRING KEY, `TOP` DECIMAL(13, 6), `BOTTOM` DECIMAL(13, 6), `SUM` DECIMAL(17, 6)"
    );
    log.produce(
        "amounts",
        vec![
            json("x", r#"{"a": 1234567.89, "b": 0.123456}"#, 1),
            json("y", r#"{"a": 0.5, "b": 0.5}"#, 2),
            json("z", r#"{"a": null, "b": 0.25}"#, 3),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    assert_eq!(
        sink_payloads(&log, "EXTREMES").await,
        [
            Some(r#"{"TOP":1234567.89,"BOTTOM":0.123456,"SUM":1234567.890000}"#.to_string()),
            Some(r#"{"TOP":0.50,"BOTTOM":0.50,"SUM":0.500000}"#.to_string()),
            Some(r#"{"TOP":0.250000,"BOTTOM":0.250000,"SUM":0.250000}"#.to_string()),
        ]
    );
    assert_eq!(
        sink_payloads(&log, "EXTREMES_CSV").await,
        [
            Some("1234567.89".to_string()),
            Some("0.500000".to_string()),
            Some("0.250000".to_string()),
        ]
    );
    engine.shutdown().await;
}

/// Functions take what ksqlDB takes: an INT for TRUNC's places, numbers of two types
/// (IFNULL), INSTR's positions; the results are ksqlDB's.
#[tokio::test]
async fn functions_take_ksqldbs_argument_types_and_answer_its_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM readings (id STRING KEY, v DOUBLE, n BIGINT, s STRING) \
               WITH (kafka_topic='readings', value_format='json', partitions=1);
             CREATE STREAM shaped AS
               SELECT id, TRUNC(v, 2) AS t, TRUNC(v, -1) AS tens, POWER(n, 2) AS sq,
                      IFNULL(n, 0) AS n0, COALESCE(s, 'none') AS s0,
                      INSTR(s, 'OR', -3, 2) AS second_last, CONCAT_WS('-', s, 'x') AS joined,
                      CAST(v AS DECIMAL(8, 2)) AS cents
               FROM readings;",
            &earliest(),
        )
        .await
        .expect("statements run");
    log.produce(
        "readings",
        vec![
            json("a", r#"{"v": 123.4567, "n": 3, "s": "CORPORATE FLOOR"}"#, 1),
            json("b", r#"{"v": -18.999, "n": null, "s": null}"#, 2),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let rows = sink_values(&log, "SHAPED").await;
    let values: Vec<&str> = rows.iter().filter_map(|r| r.1.as_deref()).collect();
    assert_eq!(
        values,
        [
            r#"{"T":123.45,"TENS":120.0,"SQ":9.0,"N0":3,"S0":"CORPORATE FLOOR","SECOND_LAST":2,"JOINED":"CORPORATE FLOOR-x","CENTS":123.46}"#,
            r#"{"T":-18.99,"TENS":-10.0,"SQ":null,"N0":0,"S0":"none","SECOND_LAST":null,"JOINED":"x","CENTS":-19.00}"#,
        ]
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_null_number_in_a_lambdas_arithmetic_makes_the_call_null_and_arrays_see_lambda_parameters()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM readings (id STRING KEY, n ARRAY<INT>, a INT) \
               WITH (kafka_topic='readings', value_format='json', partitions=1);
             CREATE STREAM shaped AS
               SELECT id, TRANSFORM(n, x => x + 5) AS plus, FILTER(n, x => x * 2 > 4) AS big,
                      REDUCE(n, 0, (s, x) => s + x) AS total,
                      TRANSFORM(n, x => ARRAY[x, a]) AS pairs,
                      TRANSFORM(n, x => ARRAY[STRUCT(x := x), STRUCT(y := a)]) AS merged
               FROM readings;",
            &earliest(),
        )
        .await
        .expect("statements run");
    log.produce(
        "readings",
        vec![
            json("r1", r#"{"n": [3, 6], "a": 1}"#, 1),
            json("r2", r#"{"n": [5, null], "a": 2}"#, 2),
            json("r3", r#"{"n": null, "a": 3}"#, 3),
            json("r4", r#"{"n": [], "a": null}"#, 4),
        ],
        Acks::All,
    )
    .await
    .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let rows: Vec<String> = sink_values(&log, "SHAPED")
        .await
        .into_iter()
        .map(|(key, value, _)| {
            format!("{}: {}", key.unwrap_or_default(), value.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        rows,
        [
            r#"r1: {"PLUS":[8,11],"BIG":[3,6],"TOTAL":9,"PAIRS":[[3,1],[6,1]],"MERGED":[[{"X":3,"Y":null},{"X":null,"Y":1}],[{"X":6,"Y":null},{"X":null,"Y":1}]]}"#,
            r#"r2: {"PLUS":null,"BIG":null,"TOTAL":null,"PAIRS":[[5,2],[null,2]],"MERGED":[[{"X":5,"Y":null},{"X":null,"Y":2}],[{"X":null,"Y":null},{"X":null,"Y":2}]]}"#,
            r#"r3: {"PLUS":null,"BIG":null,"TOTAL":0,"PAIRS":null,"MERGED":null}"#,
            r#"r4: {"PLUS":[],"BIG":[],"TOTAL":0,"PAIRS":[],"MERGED":[]}"#,
        ]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_a_key_keeps_none_unless_partition_by_makes_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, engine) = open_engine(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM pairs (a STRING KEY, b STRING KEY, v INT) \
               WITH (kafka_topic='pairs', format='DELIMITED', partitions=1);
             CREATE STREAM copied WITH (key_format='JSON') AS SELECT * FROM pairs;
             CREATE STREAM rekeyed WITH (key_format='JSON') AS SELECT * FROM pairs \
               PARTITION BY b, a;",
            &earliest(),
        )
        .await
        .expect("created");
    let keyless = ProducerRecord {
        timestamp: Some(2),
        ..ProducerRecord::new(None::<String>, Some("7".to_string()))
    };
    log.produce("pairs", vec![json("x,y", "6", 1), keyless], Acks::All)
        .await
        .expect("produced");
    engine.wait_until_caught_up().await.expect("caught up");
    let keys = |records: Vec<(Option<String>, Option<String>, i64)>| {
        records
            .into_iter()
            .map(|(key, _, _)| key)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(sink_values(&log, "COPIED").await),
        [Some(r#"{"A":"x","B":"y"}"#.to_string()), None]
    );
    assert_eq!(
        keys(sink_values(&log, "REKEYED").await),
        [
            Some(r#"{"B":"y","A":"x"}"#.to_string()),
            Some(r#"{"B":null,"A":null}"#.to_string())
        ]
    );
    engine.shutdown().await;
}
