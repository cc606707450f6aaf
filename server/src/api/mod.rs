//! The REST API, with ksqlDB's request and response shapes: `POST /ksql` (statements),
//! `POST /query` and `POST /query-stream` (push and pull queries, streamed as rows arrive),
//! `POST /inserts-stream`, `GET /info`, `GET /healthcheck`; [`status`] has the command and
//! cluster status endpoints, [`websocket`] `GET /ws/query`. Bodies are read as bytes and
//! checked here, so that a bad request gets ksqlDB's error entity rather than the
//! framework's. Entry point: [`router`].

pub mod entities;
mod status;
mod websocket;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::engine::{Engine, EngineError, Properties};
use crate::query::transient::{QueryCloser, TransientQuery};
use crate::types::SqlType;

/// What every handler shares.
#[derive(Debug)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub service_id: String,
    /// Running transient queries by id, for `/close-query`.
    pub queries: parking_lot::Mutex<HashMap<String, QueryCloser>>,
    /// Server properties (`ksql.*`): every request starts from them, and its own
    /// `streamsProperties` override them.
    pub properties: Properties,
    /// The outcome of each command run through `/ksql`, by command id, for `/status`.
    pub statuses: parking_lot::Mutex<std::collections::BTreeMap<String, Value>>,
}

impl ApiState {
    /// The API over an engine; `/status` starts out knowing the commands the engine
    /// replayed from its command topic.
    pub fn new(engine: Arc<Engine>, service_id: String) -> ApiState {
        let state = ApiState {
            engine,
            service_id,
            queries: parking_lot::Mutex::new(HashMap::new()),
            properties: Properties::new(),
            statuses: parking_lot::Mutex::default(),
        };
        status::record_replayed(&state);
        state
    }

    /// The same state with server properties.
    pub fn with_properties(self, properties: Properties) -> ApiState {
        ApiState { properties, ..self }
    }

    /// A request's properties over the server's.
    fn request_properties(&self, requested: Option<&Value>) -> Properties {
        let mut properties = self.properties.clone();
        properties.extend(string_map(requested));
        properties
    }
}

/// The largest request body read (ksqlDB's clients send statements and rows, never more).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The server's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/ksql", post(ksql))
        .route("/query", post(query))
        .route("/query-stream", post(query_stream))
        .route("/close-query", post(close_query))
        .route("/inserts-stream", post(inserts_stream))
        .route("/info", get(info))
        .route("/healthcheck", get(healthcheck))
        .route("/chc/live", get(empty_object))
        .route("/chc/ready", get(empty_object))
        .route("/is_valid_property/{name}", get(is_valid_property))
        .route("/status", get(status::all_statuses))
        .route(
            "/status/{kind}/{entity}/{action}",
            get(status::command_status),
        )
        .route("/clusterStatus", get(status::cluster_status))
        .route("/v1/metadata", get(status::metadata))
        .route("/v1/metadata/id", get(status::metadata_id))
        .route("/ws/query", get(websocket::ws_query))
        .route("/openapi.json", get(openapi))
        .route("/", get(root))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(error_entities))
        .with_state(state)
}

/// Refusals made by the framework (a body over the limit, a method the path does not
/// take) get ksqlDB's error entity too.
async fn error_entities(response: Response) -> Response {
    let is_entity = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    let status = response.status();
    if is_entity || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("The request body is larger than the limit of {MAX_BODY_BYTES} bytes")
        }
        StatusCode::METHOD_NOT_ALLOWED => "HTTP 405 Method Not Allowed".to_string(),
        other => format!("HTTP {other}"),
    };
    let code = u32::from(status.as_u16()) * 100;
    reply(
        status,
        KSQL_JSON,
        entities::error("generic_error", code, &message, None),
    )
}

/// `GET /`: ksqlDB redirects to `/info`.
async fn root() -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, "/info")],
    )
        .into_response()
}

/// `GET /openapi.json`: the API described as OpenAPI 3.
async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

const KSQL_JSON: &str = "application/vnd.ksql.v1+json";
const KSQL_PROTOBUF: &str = "application/vnd.ksql.v1+protobuf";
const DELIMITED: &str = "application/vnd.ksqlapi.delimited.v1";

fn reply(status: StatusCode, content_type: &str, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, content_type.to_string())],
        body.to_string(),
    )
        .into_response()
}

/// A request that failed: its status and ksqlDB's error entity.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    entity: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        reply(self.status, KSQL_JSON, self.entity)
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        entity: entities::error("generic_error", 40000, message, None),
    }
}

/// An engine error as ksqlDB reports it: the user's statement, or our failure.
fn engine_error(error: &EngineError, statement: &str) -> ApiError {
    match error {
        EngineError::Log(_) => {
            tracing::error!(%error, statement, "a statement failed on the server's side");
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                entity: entities::error("server_error", 50000, &error.to_string(), Some(statement)),
            }
        }
        EngineError::Assertion(message) => ApiError {
            status: StatusCode::EXPECTATION_FAILED,
            entity: entities::error("generic_error", 41700, message, Some(statement)),
        },
        _ => ApiError {
            status: StatusCode::BAD_REQUEST,
            entity: entities::error(
                "statement_error",
                40001,
                &error.to_string(),
                Some(statement),
            ),
        },
    }
}

/// A JSON request body: an object, or ksqlDB's 400 saying why not.
fn request_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(bad_request("The request body must be a JSON object")),
        Err(error) => Err(bad_request(&format!("Invalid JSON in request: {error}"))),
    }
}

/// A map of string settings (`streamsProperties`, `sessionVariables`); values of other
/// JSON types are taken as their text.
fn string_map(value: Option<&Value>) -> Properties {
    value
        .and_then(Value::as_object)
        .map(|object| {
            object
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn required_text(object: &serde_json::Map<String, Value>, field: &str) -> Result<String, ApiError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad_request(&format!("The request must have a string field \"{field}\"")))
}

/// Serves `app` on `listener` (HTTP/1.1 and HTTP/2 h2c) until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}

/// `POST /ksql`: runs statements (not queries) and answers one entity per statement.
async fn ksql(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Response, ApiError> {
    let object = request_object(&body)?;
    let sql = required_text(&object, "ksql")?;
    let properties = state.request_properties(object.get("streamsProperties"));
    let variables = string_map(object.get("sessionVariables"));
    let texts = riffle_grammar::split_script(&sql)
        .map_err(|error| engine_error(&EngineError::Parse(error), &sql))?;
    let statements: Vec<Option<riffle_grammar::Statement>> = texts
        .iter()
        .map(|text| riffle_grammar::parse_statement(&text.text).ok())
        .collect();
    if let Some(text) = statements.iter().zip(&texts).find_map(|(statement, text)| {
        matches!(
            statement,
            Some(riffle_grammar::Statement::Query(_) | riffle_grammar::Statement::Print(_))
        )
        .then_some(text)
    }) {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            entity: entities::error(
                "statement_error",
                40002,
                "The following statement types should be issued to the websocket endpoint \
                 '/query':\n\t* PRINT\n\t* SELECT",
                Some(&text.text),
            ),
        });
    }
    let mut results = Vec::new();
    let outcome = state
        .engine
        .execute_script(&sql, &properties, &variables, &mut results)
        .await;
    // `INSERT INTO … VALUES` answers with no entity, as in ksqlDB.
    let done: Vec<Value> = results
        .iter()
        .zip(texts.iter().zip(&statements))
        .enumerate()
        .filter(|(_, (_, (_, statement)))| {
            !matches!(statement, Some(riffle_grammar::Statement::InsertValues(_)))
        })
        .map(|(i, (result, (text, _)))| entities::entity(result, &text.text, i as i64))
        .collect();
    status::record(&state, &done);
    match outcome {
        Ok(()) => Ok(reply(StatusCode::OK, KSQL_JSON, Value::Array(done))),
        Err(error) => {
            // The error names the statement that failed and carries the entities of the
            // statements that ran before it.
            let failed = texts.get(results.len()).map_or(sql.as_str(), |t| &t.text);
            let mut error = engine_error(&error, failed);
            if error.entity.get("entities").is_some() {
                error.entity["entities"] = Value::Array(done);
            }
            Err(error)
        }
    }
}

/// Starts the query a `/query` or `/query-stream` body names.
async fn start_query(
    state: &ApiState,
    body: &Bytes,
    sql_field: &str,
    properties_field: &str,
) -> Result<(TransientQuery, String), ApiError> {
    let object = request_object(body)?;
    let sql = required_text(&object, sql_field)?;
    let properties = state.request_properties(object.get(properties_field));
    match state.engine.query(&sql, &properties).await {
        Ok(query) => {
            state
                .queries
                .lock()
                .insert(query.id.clone(), query.closer());
            Ok((query, sql))
        }
        Err(error) => Err(engine_error(&error, &sql)),
    }
}

/// A running query's rows as the chunks of a response body; dropping the body (the client
/// went away) closes the query.
/// How a streamed query's body ends, given how many rows it sent.
type Ending = fn(usize, Option<u64>) -> &'static str;

fn row_stream(
    state: &Arc<ApiState>,
    query: TransientQuery,
    first: String,
    render_row: RenderRow,
    (ending, limit): (Ending, Option<u64>),
) -> Body {
    /// The running query; dropping it (the body ended or the client left) closes the
    /// query and forgets its id.
    struct Running {
        query: TransientQuery,
        api: Arc<ApiState>,
        sent: usize,
    }
    impl Drop for Running {
        fn drop(&mut self) {
            self.api.queries.lock().remove(&self.query.id);
        }
    }
    let types = column_types(&query.schema);
    let running = Running {
        query,
        api: state.clone(),
        sent: 0,
    };
    let state = (Some(running), Some(first), types);
    let stream = futures_util::stream::unfold(state, move |(mut query, first, types)| async move {
        if let Some(first) = first {
            return Some((
                Ok::<_, std::io::Error>(Bytes::from(first)),
                (query, None, types),
            ));
        }
        let running = query.as_mut()?;
        match running.query.next_rows().await {
            Some(rows) => {
                running.sent += rows.batch.num_rows();
                let chunk = render_batch(&rows, &types, render_row);
                Some((Ok(Bytes::from(chunk)), (query, None, types)))
            }
            None => {
                let sent = running.sent;
                drop(query.take());
                let last = ending(sent, limit);
                Some((Ok(Bytes::from_static(last.as_bytes())), (None, None, types)))
            }
        }
    });
    Body::from_stream(stream)
}

fn column_types(schema: &SchemaRef) -> Vec<SqlType> {
    schema
        .fields()
        .iter()
        .map(|f| SqlType::from_arrow(f.data_type()).unwrap_or(SqlType::String))
        .collect()
}

/// Renders a row of a query's output (its columns, the row, whether the row is a
/// tombstone) as one piece of a response body.
type RenderRow = fn(&OutputColumns, usize, bool) -> String;

/// A batch of a query's output as the row writers read it: the columns, their types, and
/// the scales of their own that DECIMAL values keep, where the output carries them (see
/// `plan::value_scale_column`).
pub(crate) struct OutputColumns<'a> {
    columns: &'a [ArrayRef],
    types: &'a [SqlType],
    own_scales: Vec<Option<&'a arrow::array::Int8Array>>,
}

impl<'a> OutputColumns<'a> {
    /// `batch`'s first columns, as many as `types` has.
    pub(crate) fn of(batch: &'a arrow::record_batch::RecordBatch, types: &'a [SqlType]) -> Self {
        let schema = batch.schema_ref();
        let names = schema.fields().iter().take(types.len());
        OutputColumns {
            columns: batch.columns(),
            types,
            own_scales: crate::format::own_scales(batch, names.map(|f| f.name().as_str())),
        }
    }
}

fn render_batch(
    rows: &crate::query::transient::Rows,
    types: &[SqlType],
    render_row: RenderRow,
) -> String {
    let columns = OutputColumns::of(&rows.batch, types);
    let mut out = String::new();
    for row in 0..rows.batch.num_rows() {
        out.push_str(&render_row(&columns, row, rows.tombstones));
    }
    out
}

/// One row as a JSON array of its values.
pub(crate) fn json_row(output: &OutputColumns, row: usize) -> String {
    let mut out = String::from("[");
    for (i, (array, ty)) in output.columns.iter().zip(output.types).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let own_scales = output.own_scales.get(i).copied().flatten();
        crate::format::json::write_json_column(&mut out, array, ty, row, own_scales);
    }
    out.push(']');
    out
}

/// `/query` row: `,\n{"row":{"columns":[…]}}`, with `"tombstone":true` for a table row
/// that was deleted (its key columns, NULL values).
fn streamed_row(output: &OutputColumns, row: usize, tombstone: bool) -> String {
    let marker = if tombstone { ",\"tombstone\":true" } else { "" };
    format!(
        ",\n{{\"row\":{{\"columns\":{}{marker}}}}}",
        json_row(output, row)
    )
}

/// `/query` row of a pull query answered in Protobuf: `,\n{"row":{"protobufBytes":"…"}}`,
/// the message's bytes in base64.
fn protobuf_row(output: &OutputColumns, row: usize, _: bool) -> String {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    crate::format::protobuf::encode_row(output.types, output.columns, row, &mut bytes);
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(",\n{{\"row\":{{\"protobufBytes\":\"{encoded}\"}}}}")
}

/// `/query-stream` delimited row: one JSON array per line. This protocol has no way to mark
/// a tombstone, so deleted rows are left out.
fn delimited_row(output: &OutputColumns, row: usize, tombstone: bool) -> String {
    if tombstone {
        return String::new();
    }
    let mut line = json_row(output, row);
    line.push('\n');
    line
}

/// `/query-stream` row in the `application/json` variant: `,[…]` (tombstones left out).
fn json_array_row(output: &OutputColumns, row: usize, tombstone: bool) -> String {
    if tombstone {
        return String::new();
    }
    format!(",{}", json_row(output, row))
}

/// A header's schema: `` `ID` STRING KEY, `COUNT` BIGINT `` (`keys` are marked `KEY`).
/// (A pull query over a table with header columns lists them, with how they are declared,
/// right after the key columns, as ksqlDB does.)
fn schema_text(schema: &SchemaRef, keys: &[String], headers: &[(String, String)]) -> String {
    let mut columns: Vec<(usize, String)> = schema
        .fields()
        .iter()
        .zip(column_types(schema))
        .map(|(f, ty)| {
            let header = headers.iter().find(|(name, _)| name == f.name());
            let (rank, suffix) = match header {
                _ if keys.contains(f.name()) => (0, " KEY".to_string()),
                Some((_, declared)) => (1, format!(" {declared}")),
                None => (2, String::new()),
            };
            (rank, format!("`{}` {ty}{suffix}", f.name()))
        })
        .collect();
    if !headers.is_empty() {
        columns.sort_by_key(|(rank, _)| *rank);
    }
    columns
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `PRINT topic` sent to `/query` or `/query-stream`: the topic's records as text lines,
/// streamed until the `LIMIT` or until the client goes away. `None` for other statements.
async fn print_if_asked(
    state: &ApiState,
    body: &Bytes,
    sql_field: &str,
    content_type: &'static str,
) -> Result<Option<Response>, ApiError> {
    let object = request_object(body)?;
    let sql = required_text(&object, sql_field)?;
    if !matches!(
        riffle_grammar::parse_statement(&sql),
        Ok(riffle_grammar::Statement::Print(_))
    ) {
        return Ok(None);
    }
    let print = state
        .engine
        .print(&sql)
        .await
        .map_err(|error| engine_error(&error, &sql))?;
    let lines = futures_util::stream::unfold(print, |mut print| async move {
        let lines = print.next_lines().await?;
        Some((Ok::<_, std::io::Error>(Bytes::from(lines)), print))
    });
    let body = Body::from_stream(lines);
    Ok(Some(
        ([(header::CONTENT_TYPE, content_type)], body).into_response(),
    ))
}

/// `POST /query`: a chunked JSON array — a header, then rows as they arrive. A pull query
/// asked for `application/vnd.ksql.v1+protobuf` answers its rows as Protobuf messages,
/// with their `.proto` schema in the header (`protoSchema`), as ksqlDB does.
async fn query(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(printing) = print_if_asked(&state, &body, "ksql", "application/json").await? {
        return Ok(printing);
    }
    let (query, sql) = start_query(&state, &body, "ksql", "streamsProperties").await?;
    // A push query ends only at its LIMIT; a pull query over a stream when it has read
    // everything; a pull query over a table with its rows, and no final message.
    // A pull query over a stream that stops at its LIMIT says so, as a push query does.
    let (push, limit) = match riffle_grammar::parse_statement(&sql) {
        Ok(riffle_grammar::Statement::Query(q)) => (q.emit.is_some(), q.limit),
        _ => (false, None),
    };
    let protobuf = !push
        && headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains(KSQL_PROTOBUF));
    let keys = query.table_keys.clone().unwrap_or_default();
    let mut header = json!({
        "queryId": query.id,
        "schema": schema_text(&query.schema, &keys, &query.table_headers),
    });
    if protobuf {
        let columns: Vec<(String, SqlType)> = query
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .zip(column_types(&query.schema))
            .collect();
        match crate::format::protobuf::proto_schema(&columns) {
            Ok(schema) => header["protoSchema"] = Value::from(schema),
            Err(message) => {
                state.queries.lock().remove(&query.id);
                return Err(bad_request(&message));
            }
        }
    }
    let first = format!("[{}", json!({ "header": header }));
    let ending: Ending = if query.table_keys.is_some() {
        |_, _| "]\n"
    } else if push {
        |_, _| ",\n{\"finalMessage\":\"Limit Reached\"}]\n"
    } else {
        |sent, limit| {
            if limit.is_some_and(|limit| sent as u64 >= limit) {
                ",\n{\"finalMessage\":\"Limit Reached\"}]\n"
            } else {
                ",\n{\"finalMessage\":\"Query Completed\"}]\n"
            }
        }
    };
    let (render_row, content_type): (RenderRow, _) = match protobuf {
        true => (protobuf_row, KSQL_PROTOBUF),
        false => (streamed_row, "application/json"),
    };
    let body = row_stream(&state, query, first, render_row, (ending, limit));
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// `POST /query-stream`: a header line, then one JSON array per row (or, when the client
/// accepts `application/json`, one JSON array of all of them).
async fn query_stream(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(printing) = print_if_asked(&state, &body, "sql", DELIMITED).await? {
        return Ok(printing);
    }
    let (query, _) = start_query(&state, &body, "sql", "properties").await?;
    let types = column_types(&query.schema);
    let header = json!({
        "queryId": query.id,
        "columnNames": query.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
        "columnTypes": types.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
    });
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    Ok(if wants_json {
        let body = row_stream(
            &state,
            query,
            format!("[{header}"),
            json_array_row,
            (|_, _| "]", None),
        );
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        let body = row_stream(
            &state,
            query,
            format!("{header}\n"),
            delimited_row,
            (|_, _| "", None),
        );
        ([(header::CONTENT_TYPE, DELIMITED)], body).into_response()
    })
}

/// `POST /inserts-stream`: a first line `{"target": "S"}`, then one JSON object per line,
/// each written to stream `S` and acknowledged on its own line as it lands
/// (`{"status":"ok","seq":n}`) or refused (`{"status":"error","seq":n,…}`). The request may
/// stay open; rows are handled as their lines arrive.
async fn inserts_stream(
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<Response, ApiError> {
    use futures_util::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    // The first line names the target.
    let first = loop {
        if let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            break line;
        }
        match chunks.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(error)) => return Err(bad_request(&format!("Reading the request: {error}"))),
            None => break std::mem::take(&mut pending),
        }
    };
    let header = request_object(&Bytes::from(first))?;
    let target = required_text(&header, "target")?;
    let target = match state.engine.source(&target).await {
        Some(source) => source.name,
        None => match state.engine.source(&target.to_uppercase()).await {
            Some(source) => source.name,
            None => {
                return Err(ApiError {
                    status: StatusCode::BAD_REQUEST,
                    entity: entities::error(
                        "generic_error",
                        40000,
                        &format!("Cannot insert into an unknown stream: {target}"),
                        None,
                    ),
                });
            }
        },
    };
    let engine = state.engine.clone();
    let acks = futures_util::stream::unfold(
        (chunks, pending, 0u64, false),
        move |(mut chunks, mut pending, mut seq, mut ended)| {
            let engine = engine.clone();
            let target = target.clone();
            async move {
                loop {
                    let line = match pending.iter().position(|b| *b == b'\n') {
                        Some(end) => Some(pending.drain(..=end).collect::<Vec<u8>>()),
                        None if ended && !pending.is_empty() => Some(std::mem::take(&mut pending)),
                        None if ended => return None,
                        None => None,
                    };
                    let Some(line) = line else {
                        match chunks.next().await {
                            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                            Some(Err(_)) | None => ended = true,
                        }
                        continue;
                    };
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let result = match serde_json::from_slice::<Value>(&line) {
                        Ok(Value::Object(row)) => engine
                            .insert_json(&target, &row)
                            .await
                            .map_err(|e| e.to_string()),
                        Ok(_) => Err("Each row must be a JSON object".to_string()),
                        Err(e) => Err(format!("Invalid JSON in row: {e}")),
                    };
                    let ack = match result {
                        Ok(()) => json!({"status": "ok", "seq": seq}),
                        Err(message) => json!({
                            "@type": "generic_error",
                            "status": "error",
                            "seq": seq,
                            "error_code": 40000,
                            "message": message,
                        }),
                    };
                    seq += 1;
                    let chunk = Bytes::from(format!("{ack}\n"));
                    return Some((
                        Ok::<_, std::io::Error>(chunk),
                        (chunks, pending, seq, ended),
                    ));
                }
            }
        },
    );
    Ok(([(header::CONTENT_TYPE, DELIMITED)], Body::from_stream(acks)).into_response())
}

/// `POST /close-query`: `{"queryId": "…"}` ends a running push query.
async fn close_query(
    State(state): State<Arc<ApiState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let object = request_object(&body)?;
    let id = required_text(&object, "queryId")?;
    let closer = state.queries.lock().get(&id).cloned();
    match closer {
        Some(closer) => {
            closer.close();
            Ok(StatusCode::OK.into_response())
        }
        None => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            entity: entities::error(
                "generic_error",
                40000,
                &format!("No query with id {id}"),
                None,
            ),
        }),
    }
}

/// `GET /chc/live` and `GET /chc/ready`: `{}` while the server runs.
async fn empty_object() -> Response {
    reply(StatusCode::OK, "application/json", json!({}))
}

/// `GET /is_valid_property/{name}`: every property may be set per request here.
async fn is_valid_property(Path(_name): Path<String>) -> Response {
    reply(StatusCode::OK, "application/json", json!(true))
}

/// `GET /info`.
async fn info(State(state): State<Arc<ApiState>>) -> Response {
    reply(
        StatusCode::OK,
        "application/json",
        json!({"KsqlServerInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "kafkaClusterId": "riffle-embedded",
            "ksqlServiceId": state.service_id,
            "serverStatus": "RUNNING",
        }}),
    )
}

/// `GET /healthcheck`.
async fn healthcheck() -> Response {
    let healthy = json!({"isHealthy": true});
    reply(
        StatusCode::OK,
        "application/json",
        json!({"isHealthy": true, "details": {
            "metastore": healthy, "kafka": healthy, "commandRunner": healthy,
        }}),
    )
}

async fn not_found() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        KSQL_JSON,
        entities::error("generic_error", 40400, "HTTP 404 Not Found", None),
    )
}
