//! Where the server stands: `GET /status` (the outcome of each command by its id),
//! `GET /clusterStatus` (this server is the whole cluster) and `GET /v1/metadata`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{ApiState, KSQL_JSON, entities, reply};

/// Keeps the `commandStatus` of every `currentStatus` entity a `/ksql` request answered.
pub(super) fn record(state: &ApiState, answered: &[Value]) {
    let mut statuses = state.statuses.lock();
    for entity in answered {
        if let (Some(id), Some(status)) =
            (entity["commandId"].as_str(), entity.get("commandStatus"))
        {
            statuses.insert(id.to_string(), status.clone());
        }
    }
}

/// Keeps the status of each command the engine replayed at start, as `/ksql` answered it
/// when it was first run (so `/status` knows them after a restart, as ksqlDB's does).
pub(super) fn record_replayed(state: &ApiState) {
    let answered: Vec<Value> = state
        .engine
        .replayed_commands()
        .into_iter()
        .map(|command| {
            let result = crate::engine::StatementResult::Done {
                message: command.message,
                query_id: command.query_id,
            };
            entities::entity(&result, &command.statement, 0)
        })
        .collect();
    record(state, &answered);
}

/// `GET /status`: `{"commandStatuses": {id: status}}`.
pub(super) async fn all_statuses(State(state): State<Arc<ApiState>>) -> Response {
    let statuses: serde_json::Map<String, Value> = state
        .statuses
        .lock()
        .iter()
        .map(|(id, status)| (id.clone(), status["status"].clone()))
        .collect();
    reply(
        StatusCode::OK,
        KSQL_JSON,
        json!({ "commandStatuses": statuses }),
    )
}

/// `GET /status/{type}/{entity}/{action}`: one command's status, message and query id.
pub(super) async fn command_status(
    State(state): State<Arc<ApiState>>,
    Path((kind, entity, action)): Path<(String, String, String)>,
) -> Response {
    let id = format!("{kind}/{entity}/{action}");
    // Clients may send the entity with or without ksqlDB's back quotes.
    let quoted = format!("{kind}/`{entity}`/{action}");
    let statuses = state.statuses.lock();
    match statuses.get(&id).or_else(|| statuses.get(&quoted)) {
        Some(status) => reply(StatusCode::OK, KSQL_JSON, status.clone()),
        None => reply(
            StatusCode::NOT_FOUND,
            KSQL_JSON,
            entities::error(
                "generic_error",
                40400,
                &format!("Command not found: {id}"),
                None,
            ),
        ),
    }
}

fn now_millis() -> i64 {
    crate::log::embedded::now_millis()
}

/// `GET /clusterStatus`: one live host (this one), with its persistent queries.
pub(super) async fn cluster_status(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:8088")
        .to_string();
    let now = now_millis();
    let queries = state.engine.persistent_query_ids().await;
    let per_query: serde_json::Map<String, Value> = queries
        .into_iter()
        .map(|(id, topic)| {
            (
                id,
                json!({
                    "activeStores": [],
                    "activePartitions": [{"topic": topic, "partition": 0}],
                    "standByStores": [],
                    "standByPartitions": [],
                }),
            )
        })
        .collect();
    reply(
        StatusCode::OK,
        "application/json",
        json!({"clusterStatus": {host: {
            "hostAlive": true,
            "lastStatusUpdateMs": now,
            "activeStandbyPerQuery": per_query,
            "hostStoreLags": {"stateStoreLags": {}, "updateTimeMs": now},
        }}}),
    )
}

fn scope(state: &ApiState) -> Value {
    json!({"path": [], "clusters": {
        "kafka-cluster": "riffle-embedded",
        "ksql-cluster": state.service_id,
    }})
}

/// `GET /v1/metadata`.
pub(super) async fn metadata(State(state): State<Arc<ApiState>>) -> Response {
    reply(
        StatusCode::OK,
        "application/json",
        json!({"version": env!("CARGO_PKG_VERSION"), "clusterId": {"scope": scope(&state)}}),
    )
}

/// `GET /v1/metadata/id`.
pub(super) async fn metadata_id(State(state): State<Arc<ApiState>>) -> Response {
    reply(
        StatusCode::OK,
        "application/json",
        json!({"scope": scope(&state)}),
    )
}
