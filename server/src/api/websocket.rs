//! `GET /ws/query?request=<KsqlRequest JSON>`: a query over a WebSocket, as ksqlDB's older
//! clients use it. The first text frame lists the columns (`[{"name", "schema"}]`), then
//! each row comes in a frame of its own (`{"row":{"columns":[…]}}`); the server closes with
//! 1000 when the query ends, and the query is closed when the client goes away.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{ApiError, ApiState, OutputColumns, bad_request, column_types, engine_error, json_row};
use crate::query::transient::TransientQuery;

pub(super) async fn ws_query(
    State(state): State<Arc<ApiState>>,
    Query(parameters): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let request = parameters
        .get("request")
        .ok_or_else(|| bad_request("The query parameter \"request\" is missing"))?;
    let request: Value = serde_json::from_str(request)
        .map_err(|e| bad_request(&format!("Invalid JSON in the \"request\" parameter: {e}")))?;
    let sql = request["ksql"]
        .as_str()
        .ok_or_else(|| bad_request("The request must have a string field \"ksql\""))?;
    let properties = state.request_properties(request.get("streamsProperties"));
    let query = state
        .engine
        .query(sql, &properties)
        .await
        .map_err(|error| engine_error(&error, sql))?;
    Ok(upgrade.on_upgrade(move |socket| stream_rows(socket, query)))
}

async fn stream_rows(mut socket: WebSocket, mut query: TransientQuery) {
    let types = column_types(&query.schema);
    let columns: Vec<Value> = query
        .schema
        .fields()
        .iter()
        .zip(&types)
        .map(|(field, ty)| json!({"name": field.name(), "schema": super::entities::schema_of(ty)}))
        .collect();
    if socket
        .send(Message::Text(Value::from(columns).to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            batch = query.next_batch() => {
                let Some(batch) = batch else { break };
                let output = OutputColumns::of(&batch, &types);
                for row in 0..batch.num_rows() {
                    let text = format!(
                        "{{\"row\":{{\"columns\":{}}}}}",
                        json_row(&output, row)
                    );
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
            }
            received = socket.recv() => match received {
                // The client closed or went away: dropping the query closes it.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "done".into(),
        })))
        .await;
}
