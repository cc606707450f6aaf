//! The REST API over real HTTP, as a ksqlDB client sees it: statements on `/ksql`, pull and
//! push queries on `/query-stream` and `/query`, error entities, `/info`.

use std::sync::Arc;

use riffle_server::api::{ApiState, router};
use riffle_server::engine::Engine;
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use serde_json::{Value, json};

struct Server {
    url: String,
    client: reqwest::Client,
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    start_over(tempfile::tempdir().expect("temp dir")).await
}

/// A server over the data in `dir` (empty, or left by an earlier engine).
async fn start_over(dir: tempfile::TempDir) -> Server {
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("log opens");
    let engine = Arc::new(Engine::start(Arc::new(log)).await.expect("engine starts"));
    let state = Arc::new(ApiState::new(engine.clone(), "test_".into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Server {
        url,
        client: reqwest::Client::new(),
        engine,
        _dir: dir,
    }
}

impl Server {
    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn ksql(&self, sql: &str) -> (u16, Value) {
        let (status, body) = self.post("/ksql", json!({"ksql": sql})).await;
        (status, serde_json::from_str(&body).expect("a JSON body"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_and_queries_work_as_in_ksqldb() {
    let server = start().await;
    let (status, entities) = server
        .ksql(
            "CREATE STREAM clicks (id STRING KEY, page STRING, ms BIGINT) \
             WITH (kafka_topic='clicks', partitions=2, value_format='JSON');
             INSERT INTO clicks (id, page, ms) VALUES ('a', '/home', 1);
             INSERT INTO clicks (id, page, ms) VALUES ('b', '/cart', 2);
             SHOW STREAMS;",
        )
        .await;
    assert_eq!(status, 200, "{entities}");
    // INSERT … VALUES answers with no entity.
    assert_eq!(entities.as_array().map(Vec::len), Some(2));
    assert_eq!(entities[0]["@type"], "currentStatus");
    assert_eq!(entities[0]["commandStatus"]["message"], "Stream created");
    assert_eq!(entities[0]["commandId"], "stream/`CLICKS`/create");
    assert_eq!(entities[1]["@type"], "streams");
    let names: Vec<&str> = entities[1]["streams"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&"CLICKS"), "{names:?}");

    // Pull query over a stream: a header line, then one JSON array per row.
    let (status, body) = server
        .post(
            "/query-stream",
            json!({"sql": "SELECT id, ms FROM clicks;", "properties": {}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut lines = body.lines();
    let header: Value = serde_json::from_str(lines.next().expect("a header")).expect("JSON");
    assert_eq!(header["columnNames"], json!(["ID", "MS"]));
    assert_eq!(header["columnTypes"], json!(["STRING", "BIGINT"]));
    let mut rows: Vec<Value> = lines
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    rows.sort_by_key(|r| r[1].as_i64());
    assert_eq!(rows, vec![json!(["a", 1]), json!(["b", 2])]);

    // Push query from the earliest offset with a LIMIT: the legacy /query shape.
    let (status, body) = server
        .post(
            "/query",
            json!({
                "ksql": "SELECT page FROM clicks WHERE ms > 1 EMIT CHANGES LIMIT 1;",
                "streamsProperties": {"auto.offset.reset": "earliest"},
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let streamed: Value = serde_json::from_str(&body).expect("one JSON array");
    assert_eq!(streamed[0]["header"]["schema"], "`PAGE` STRING");
    assert_eq!(streamed[1]["row"]["columns"], json!(["/cart"]));
    assert_eq!(streamed[2]["finalMessage"], "Limit Reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_ksqldb_error_entities() {
    let server = start().await;
    let (status, error) = server.ksql("CREATE STREAM s (id INT) WITH (;").await;
    assert_eq!(status, 400);
    assert_eq!(error["@type"], "statement_error");
    assert_eq!(error["error_code"], 40001);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 1:")),
        "{error}"
    );

    // A failing statement is named, with the entities of those that ran before it.
    let (status, error) = server
        .ksql(
            "CREATE STREAM ok (n INT) WITH (kafka_topic='ok', partitions=1, value_format='JSON');
             DROP STREAM missing;",
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["statementText"], "DROP STREAM missing;");
    assert_eq!(
        error["entities"][0]["commandStatus"]["message"],
        "Stream created"
    );

    let (status, error) = server.ksql("SELECT * FROM s;").await;
    assert_eq!(status, 400);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("'/query'")),
        "{error}"
    );

    let (status, body) = server.post("/ksql", json!({"sql": "SHOW STREAMS;"})).await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(error["@type"], "generic_error");

    let (status, body) = server
        .post(
            "/query-stream",
            json!({"sql": "SELECT * FROM missing;", "properties": {}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MISSING does not exist"), "{body}");

    let response = server
        .client
        .get(format!("{}/nowhere", server.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 404);

    let info: Value = server
        .client
        .get(format!("{}/info", server.url))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(info["KsqlServerInfo"]["ksqlServiceId"], "test_");
    assert_eq!(info["KsqlServerInfo"]["serverStatus"], "RUNNING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_query_ends_an_endless_push_query() {
    let server = start().await;
    let (status, body) = server
        .ksql(
            "CREATE STREAM ticks (n INT) WITH (kafka_topic='ticks', partitions=1, \
             value_format='JSON');",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut response = server
        .client
        .post(format!("{}/query-stream", server.url))
        .json(&json!({"sql": "SELECT n FROM ticks EMIT CHANGES;", "properties": {}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let header_line = response
        .chunk()
        .await
        .expect("a chunk")
        .expect("the header");
    let header: Value = serde_json::from_slice(&header_line).expect("JSON header");
    let id = header["queryId"].as_str().expect("a query id").to_string();

    // Rows inserted while the query runs reach it.
    let (status, _) = server.ksql("INSERT INTO ticks (n) VALUES (7);").await;
    assert_eq!(status, 200);
    let row = response.chunk().await.expect("a chunk").expect("a row");
    assert_eq!(String::from_utf8_lossy(&row).trim(), "[7]");

    let (status, body) = server.post("/close-query", json!({"queryId": id})).await;
    assert_eq!(status, 200, "{body}");
    // The response ends once the query is closed.
    while let Some(chunk) = response.chunk().await.expect("reads") {
        assert!(chunk.iter().all(u8::is_ascii_whitespace), "{chunk:?}");
    }
    let (status, _) = server.post("/close-query", json!({"queryId": id})).await;
    assert_eq!(status, 400, "a closed query is gone");
}

/// A push query writes a DECIMAL that GREATEST or LEAST took from an argument at that
/// argument's scale, in both protocols, as a persistent query's sink does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_queries_write_decimals_at_the_scale_they_keep() {
    let server = start().await;
    let (status, body) = server
        .ksql(
            "CREATE STREAM amounts (a DECIMAL(9, 2), b DECIMAL(7, 6)) \
             WITH (kafka_topic='amounts', partitions=1, value_format='JSON');
             INSERT INTO amounts (a, b) VALUES (1234567.89, 0.123456);
             INSERT INTO amounts (a, b) VALUES (NULL, 0.25);",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sql = "SELECT GREATEST(a, b) AS top, LEAST(a, b) AS bottom FROM amounts \
               EMIT CHANGES LIMIT 2;";
    let earliest = json!({"auto.offset.reset": "earliest"});
    let (status, body) = server
        .post("/query-stream", json!({"sql": sql, "properties": earliest}))
        .await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<&str> = body.lines().skip(1).collect();
    assert_eq!(rows, ["[1234567.89,0.123456]", "[0.250000,0.250000]"]);
    let (status, body) = server
        .post(
            "/query",
            json!({"ksql": sql, "streamsProperties": earliest}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#"{"row":{"columns":[1234567.89,0.123456]}}"#),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assert_topic_answers_with_the_topic_or_a_417() {
    let server = start().await;
    let (status, body) = server
        .ksql(
            "CREATE STREAM s (n INT) WITH (kafka_topic='present', partitions=3, \
             value_format='JSON');
             ASSERT TOPIC present WITH (PARTITIONS=3);
             ASSERT NOT EXISTS TOPIC absent TIMEOUT 10 MILLISECONDS;",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[1]["@type"], "assert_topic");
    // An unquoted name finds the topic whatever its case.
    assert_eq!(body[1]["topicName"], "present");
    assert_eq!(body[1]["exists"], true);
    assert_eq!(body[2]["exists"], false);

    let (status, error) = server
        .ksql("ASSERT TOPIC absent TIMEOUT 10 MILLISECONDS;")
        .await;
    assert_eq!(status, 417, "{error}");
    assert_eq!(error["error_code"], 41700);
    assert_eq!(error["message"], "Topic ABSENT does not exist");

    let (status, error) = server
        .ksql("ASSERT TOPIC present WITH (PARTITIONS=1) TIMEOUT 10 MILLISECONDS;")
        .await;
    assert_eq!(status, 417, "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("expected 1 got 3")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_stream_acknowledges_each_row() {
    let server = start().await;
    let (status, body) = server
        .ksql(
            "CREATE STREAM readings (sensor STRING KEY, celsius DOUBLE) \
             WITH (kafka_topic='readings', partitions=1, value_format='JSON');",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let request = concat!(
        "{\"target\": \"readings\"}\n",
        "{\"SENSOR\": \"a\", \"CELSIUS\": 21.5}\n",
        "{\"sensor\": \"b\", \"celsius\": \"warm\"}\n",
        "not json\n",
        "{\"sensor\": \"c\", \"celsius\": -3, \"ROWTIME\": 1000}\n",
    );
    let response = server
        .client
        .post(format!("{}/inserts-stream", server.url))
        .body(request)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("acks");
    let acks: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON ack"))
        .collect();
    assert_eq!(acks.len(), 4, "{text}");
    assert_eq!(acks[0], json!({"status": "ok", "seq": 0}));
    assert_eq!(acks[1]["status"], "error");
    assert_eq!(acks[1]["seq"], 1);
    assert_eq!(acks[2]["status"], "error");
    assert_eq!(acks[3], json!({"status": "ok", "seq": 3}));

    // The accepted rows are in the stream, nothing else.
    let (status, body) = server
        .post(
            "/query-stream",
            json!({"sql": "SELECT sensor, celsius FROM readings;", "properties": {}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<Value> = body
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).expect("a row"))
        .collect();
    assert_eq!(rows, vec![json!(["a", 21.5]), json!(["c", -3.0])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_pause_explain_and_describe_answer_as_ksqldb_does() {
    let server = start().await;
    let (status, entities) = server
        .ksql(
            "CREATE STREAM clicks (id STRING KEY, page STRING) \
             WITH (kafka_topic='clicks', partitions=1, value_format='JSON');
             INSERT INTO clicks (ROWTIME, id, page) VALUES (1620209554000, 'a', '/home');
             INSERT INTO clicks (ROWTIME, id, page) VALUES (1620209555000, 'b', '/cart');
             INSERT INTO clicks (ROWTIME, id, page) VALUES (1620209556000, 'c', '/pay');
             CREATE STREAM pages AS SELECT id, page FROM clicks;",
        )
        .await;
    assert_eq!(status, 200, "{entities}");

    // PRINT streams text lines: the guessed formats, then one line per record.
    let (status, body) = server
        .post(
            "/query",
            json!({"ksql": "PRINT clicks FROM BEGINNING INTERVAL 2 LIMIT 2;"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.lines().collect::<Vec<_>>(),
        [
            "Key format: KAFKA_STRING",
            "Value format: JSON",
            r#"rowtime: 2021/05/05 10:12:34.000 Z, key: a, value: {"PAGE":"/home"}, partition: 0"#,
            r#"rowtime: 2021/05/05 10:12:36.000 Z, key: c, value: {"PAGE":"/pay"}, partition: 0"#,
        ]
    );
    let (status, body) = server
        .post("/query-stream", json!({"sql": "PRINT 'nope' LIMIT 1;"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Could not find topic 'nope'"), "{body}");

    let (status, entities) = server
        .ksql("PAUSE CSAS_PAGES_0; SHOW QUERIES; EXPLAIN CSAS_PAGES_0;")
        .await;
    assert_eq!(status, 200, "{entities}");
    assert_eq!(entities[0]["commandId"], "pause/CSAS_PAGES_0/execute");
    assert_eq!(entities[0]["commandStatus"]["message"], "Query paused.");
    assert_eq!(entities[1]["queries"][0]["state"], "PAUSED");
    assert_eq!(entities[1]["queries"][0]["sinks"], json!(["PAGES"]));
    assert_eq!(entities[2]["@type"], "queryDescription");
    let description = &entities[2]["queryDescription"];
    assert_eq!(description["state"], "PAUSED");
    assert_eq!(description["sources"], json!(["CLICKS"]));
    assert_eq!(
        description["fields"][0],
        json!({"name": "ID", "schema": {"type": "STRING", "fields": null, "memberSchema": null}, "type": "KEY"})
    );
    assert!(
        description["executionPlan"]
            .as_str()
            .is_some_and(|plan| plan.contains("[ SOURCE ]")),
        "{description}"
    );

    let (status, entities) = server
        .ksql("RESUME ALL; DESCRIBE clicks EXTENDED; DESCRIBE TABLES; DESCRIBE FUNCTION lcase;")
        .await;
    assert_eq!(status, 200, "{entities}");
    assert_eq!(entities[0]["commandStatus"]["message"], "Query resumed.");
    let clicks = &entities[1]["sourceDescription"];
    assert_eq!(clicks["extended"], true);
    assert_eq!(clicks["partitions"], 1);
    assert_eq!(clicks["statistics"], "total-messages: 3");
    assert_eq!(clicks["readQueries"][0]["state"], "RUNNING");
    assert!(
        clicks["statement"]
            .as_str()
            .is_some_and(|s| s.starts_with("CREATE STREAM clicks")),
        "{clicks}"
    );
    assert_eq!(entities[2]["@type"], "source_descriptions");
    assert_eq!(entities[2]["sourceDescriptions"], json!([]));
    assert_eq!(entities[3]["@type"], "describe_function");
    assert_eq!(entities[3]["name"], "LCASE");
    assert_eq!(entities[3]["type"], "SCALAR");
}

/// `s` with everything but letters and digits percent-encoded, for a query parameter.
fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metadata_openapi_and_websocket_queries() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = start().await;
    let (status, entities) = server
        .ksql(
            "CREATE STREAM clicks (id STRING KEY, page STRING) \
             WITH (kafka_topic='clicks', partitions=1, value_format='JSON');
             INSERT INTO clicks (id, page) VALUES ('a', '/home');
             INSERT INTO clicks (id, page) VALUES ('b', '/cart');",
        )
        .await;
    assert_eq!(status, 200, "{entities}");
    let get = |path: &str| {
        let request = server.client.get(format!("{}{path}", server.url));
        async move {
            let response = request.send().await.expect("request sent");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        }
    };

    let (status, body) = get("/status").await;
    assert_eq!(status, 200);
    let statuses: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        statuses["commandStatuses"]["stream/`CLICKS`/create"],
        "SUCCESS"
    );
    let (status, body) = get("/status/stream/CLICKS/create").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["message"],
        "Stream created"
    );
    let (status, body) = get("/status/stream/NOPE/create").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("40400"), "{body}");

    let (status, body) = get("/clusterStatus").await;
    assert_eq!(status, 200);
    let cluster: Value = serde_json::from_str(&body).expect("JSON");
    let hosts = cluster["clusterStatus"].as_object().expect("hosts");
    assert_eq!(hosts.len(), 1);
    assert!(hosts.values().all(|h| h["hostAlive"] == true), "{cluster}");

    let (status, body) = get("/v1/metadata").await;
    assert_eq!(status, 200);
    let metadata: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        metadata["clusterId"]["scope"]["clusters"]["ksql-cluster"],
        "test_"
    );

    let (status, body) = get("/openapi.json").await;
    assert_eq!(status, 200);
    let openapi: Value = serde_json::from_str(&body).expect("the OpenAPI document is JSON");
    for path in [
        "/ksql",
        "/query",
        "/query-stream",
        "/inserts-stream",
        "/ws/query",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is described");
    }

    // The framework's own refusals carry ksqlDB's error entity too.
    let response = server
        .client
        .get(format!("{}/ksql", server.url))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 405);
    let entity: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(entity["error_code"], 40500);
    let (status, body) = server
        .post("/ksql", json!({"ksql": "x".repeat(9 * 1024 * 1024)}))
        .await;
    assert_eq!(status, 413);
    assert!(body.contains("larger than the limit"), "{body}");

    // A query over a WebSocket: the columns, then a frame per row, then a close.
    let request = json!({
        "ksql": "SELECT * FROM clicks EMIT CHANGES LIMIT 2;",
        "streamsProperties": {"auto.offset.reset": "earliest"},
    });
    let url = format!(
        "{}/ws/query?request={}",
        server.url.replace("http://", "ws://"),
        url_encoded(&request.to_string())
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket opens");
    let mut frames = Vec::new();
    while let Some(frame) = socket.next().await {
        match frame.expect("a frame") {
            Message::Text(text) => frames.push(serde_json::from_str::<Value>(&text).expect("JSON")),
            Message::Close(close) => {
                assert_eq!(close.map(|c| u16::from(c.code)), Some(1000));
                break;
            }
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    assert_eq!(frames[0][0]["name"], "ID");
    assert_eq!(frames[0][1]["schema"]["type"], "STRING");
    assert_eq!(frames[1], json!({"row": {"columns": ["a", "/home"]}}));
    assert_eq!(frames[2], json!({"row": {"columns": ["b", "/cart"]}}));
    let _ = socket.send(Message::Close(None)).await;
}

/// After a restart `/status` still knows the commands of the earlier run, replayed from
/// the command topic, with what they answered then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_knows_the_commands_of_an_earlier_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default()).expect("log opens");
        let engine = Engine::start(Arc::new(log)).await.expect("engine starts");
        let results = engine
            .execute(
                "CREATE STREAM clicks (id STRING KEY, page STRING) \
                 WITH (kafka_topic='clicks', partitions=1, value_format='JSON');
                 CREATE STREAM pages AS SELECT id, UCASE(page) AS page FROM clicks;",
                &Default::default(),
            )
            .await
            .expect("statements run");
        assert_eq!(results.len(), 2);
        engine.shutdown().await;
    }
    let server = start_over(dir).await;
    let get = |path: String| {
        let request = server.client.get(format!("{}{path}", server.url));
        async move {
            let response = request.send().await.expect("request sent");
            let status = response.status().as_u16();
            let body = response.text().await.expect("body");
            (status, serde_json::from_str::<Value>(&body).expect("JSON"))
        }
    };
    let (status, created) = get("/status/stream/CLICKS/create".into()).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "SUCCESS");
    assert_eq!(created["message"], "Stream created");
    let (status, pages) = get("/status/stream/`PAGES`/create".into()).await;
    assert_eq!(status, 200, "{pages}");
    let query_id = pages["queryId"].as_str().expect("a query id");
    let (_, statuses) = get("/status".into()).await;
    assert_eq!(
        statuses["commandStatuses"].as_object().map(|m| m.len()),
        Some(2)
    );
    let (status, queries) = server.ksql("SHOW QUERIES;").await;
    assert_eq!(status, 200, "{queries}");
    assert_eq!(queries[0]["queries"][0]["id"], query_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_queries_read_a_tables_current_rows() {
    let server = start().await;
    let (status, entities) = server
        .ksql(
            "CREATE STREAM clicks (user STRING KEY, page STRING) \
             WITH (kafka_topic='clicks', partitions=1, value_format='JSON');
             CREATE TABLE per_user AS SELECT user, COUNT(*) AS n FROM clicks GROUP BY user;
             INSERT INTO clicks (user, page) VALUES ('ann', '/a');
             INSERT INTO clicks (user, page) VALUES ('bob', '/b');
             INSERT INTO clicks (user, page) VALUES ('ann', '/c');",
        )
        .await;
    assert_eq!(status, 200, "{entities}");
    server
        .engine
        .wait_until_caught_up()
        .await
        .expect("the aggregation caught up");
    let (status, body) = server
        .post(
            "/query",
            json!({"ksql": "SELECT * FROM per_user WHERE n > 0;"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows: Value = serde_json::from_str(&body).expect("a JSON array");
    assert_eq!(rows[0]["header"]["schema"], "`USER` STRING KEY, `N` BIGINT");
    assert_eq!(rows[1]["row"]["columns"], json!(["ann", 2]));
    assert_eq!(rows[2]["row"]["columns"], json!(["bob", 1]));
    assert_eq!(
        rows.as_array().map(Vec::len),
        Some(3),
        "no final message: {rows}"
    );

    let (status, body) = server
        .post(
            "/query",
            json!({"ksql": "SELECT n FROM per_user WHERE user = 'nobody';"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let empty: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        empty.as_array().map(Vec::len),
        Some(1),
        "only the header: {empty}"
    );

    let (status, body) = server
        .post(
            "/query",
            json!({"ksql": "SELECT * FROM per_user GROUP BY n;"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Pull queries don't support GROUP BY"),
        "{body}"
    );
}

/// A pull query asked for `application/vnd.ksql.v1+protobuf` answers its rows as Protobuf
/// messages, with their schema in the header, as ksqlDB does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_queries_answer_in_protobuf_when_asked() {
    use base64::Engine as _;
    let server = start().await;
    let (status, entities) = server
        .ksql(
            "CREATE STREAM clicks (user STRING KEY, page STRING, n INT) \
             WITH (kafka_topic='clicks', partitions=1, value_format='JSON');
             INSERT INTO clicks (user, page, n) VALUES ('ann', '/a', 1);
             INSERT INTO clicks (user, page, n) VALUES ('bob', '', -1);",
        )
        .await;
    assert_eq!(status, 200, "{entities}");
    let ask = |sql: &str| {
        server
            .client
            .post(format!("{}/query", server.url))
            .header("Accept", "application/vnd.ksql.v1+protobuf")
            .json(&json!({ "ksql": sql }))
            .send()
    };
    let response = ask("SELECT * FROM clicks;").await.expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(
        body[0]["header"]["protoSchema"],
        "syntax = \"proto3\";\n\nmessage ConnectDefault1 {\n  string USER = 1;\n  string PAGE \
         = 2;\n  int32 N = 3;\n}\n"
    );
    let bytes = |i: usize| {
        base64::engine::general_purpose::STANDARD
            .decode(body[i]["row"]["protobufBytes"].as_str().expect("bytes"))
            .expect("base64")
    };
    // USER "ann", PAGE "/a", N 1.
    assert_eq!(
        bytes(1),
        [0x0a, 3, b'a', b'n', b'n', 0x12, 2, b'/', b'a', 0x18, 1]
    );
    // An empty PAGE is left out; N -1 takes ten bytes.
    let mut second = vec![0x0a, 3, b'b', b'o', b'b', 0x18];
    second.extend([0xff; 9]);
    second.push(0x01);
    assert_eq!(bytes(2), second);
    assert_eq!(body[3]["finalMessage"], "Query Completed");

    let response = ask("SELECT ROWTIME, user, CAST(ROWTIME AS TIMESTAMP) AS t FROM clicks;")
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 400);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("Protobuf answers do not hold TIMESTAMP values yet"),
        "{body}"
    );
}
