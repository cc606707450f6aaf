//! Runs one REST conformance case against a real Riffle server over HTTP: statements go to
//! `/ksql` one at a time, queries to `/query`, and the answers are matched against the
//! case's `responses` as ksqlDB's REST test runner matches them — entities partially
//! (the expected fields must be there with those values), query rows regardless of order,
//! headers and final messages exactly where given.

use std::time::Duration;

use serde_json::{Value, json};

use crate::corpus::Case;
use crate::runner::{
    Layout, Outcome, compare_outputs, create_topics, outcome, produce_inputs, same,
};
use crate::server::TestServer;

mod protobuf;

/// How long one query may take before the case fails (push queries without enough rows
/// for their `LIMIT` would otherwise run forever).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run_rest_case(case: &Case) -> Outcome {
    outcome(case, || run(case)).await
}

/// What the REST runner asks of a [`TestServer`].
trait Rest {
    async fn post(&self, path: &str, body: Value) -> Result<(u16, String), String>;
    async fn query(
        &self,
        body: Value,
        rows: Option<usize>,
        accept: &str,
    ) -> Result<Result<Vec<Value>, (u16, String)>, String>;
}

/// What `/query` answers by default, and in Protobuf.
const KSQL_JSON: &str = "application/vnd.ksql.v1+json";
const KSQL_PROTOBUF: &str = "application/vnd.ksql.v1+protobuf";

impl Rest for TestServer {
    /// Posts a JSON body; answers the status and the body text.
    async fn post(&self, path: &str, body: Value) -> Result<(u16, String), String> {
        let send = async {
            let response = self
                .client
                .post(format!("{}{path}", self.url))
                .json(&body)
                .send()
                .await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        };
        match tokio::time::timeout(QUERY_TIMEOUT, send).await {
            Ok(result) => result.map_err(|e| format!("{path}: {e}")),
            Err(_) => Err(format!(
                "{path} did not answer within {QUERY_TIMEOUT:?}: {body}"
            )),
        }
    }

    /// Posts a query to `/query` and reads its StreamedRow array as it streams. A push query
    /// without a `LIMIT` never ends: once it has sent `rows` rows (what the case expects)
    /// the runner stops reading and closes it, as ksqlDB's runner does.
    async fn query(
        &self,
        body: Value,
        rows: Option<usize>,
        accept: &str,
    ) -> Result<Result<Vec<Value>, (u16, String)>, String> {
        let read = async {
            let mut response = self
                .client
                .post(format!("{}/query", self.url))
                .header(reqwest::header::ACCEPT, accept)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("/query: {e}"))?;
            let status = response.status().as_u16();
            if status >= 400 {
                let text = response.text().await.map_err(|e| format!("/query: {e}"))?;
                return Ok(Err((status, text)));
            }
            let mut text = String::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| format!("/query: {e}"))? {
                text.push_str(&String::from_utf8_lossy(&chunk));
                let elements = streamed_elements(&text, false);
                let received = elements.iter().filter(|e| e.get("row").is_some()).count();
                if rows.is_some_and(|wanted| received >= wanted) {
                    return Ok(Ok(elements));
                }
            }
            Ok(Ok(streamed_elements(&text, true)))
        };
        match tokio::time::timeout(QUERY_TIMEOUT, read).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "/query did not answer within {QUERY_TIMEOUT:?}: {body}"
            )),
        }
    }
}

async fn run(case: &Case) -> Result<(), String> {
    let server = TestServer::start("rqtt_").await?;
    let result = drive(case, &server).await;
    server.stop().await;
    result
}

/// Whether a statement is a query (`/query`) rather than a statement (`/ksql`).
fn is_query(statement: &str) -> bool {
    matches!(
        riffle_grammar::parse_statement(statement),
        Ok(riffle_grammar::Statement::Query(_) | riffle_grammar::Statement::Print(_))
    ) || statement.trim_start().to_uppercase().starts_with("SELECT")
}

async fn drive(case: &Case, server: &TestServer) -> Result<(), String> {
    create_topics(case, &server.log, Layout::REST).await?;
    let properties: serde_json::Map<String, Value> = [
        ("auto.offset.reset".to_string(), Value::from("earliest")),
        (crate::runner::CACHE_PROPERTY.to_string(), Value::from("0")),
    ]
    .into_iter()
    .chain(
        case.properties
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str()))),
    )
    .collect();
    let split = case
        .statements
        .iter()
        .position(|s| is_query(s))
        .unwrap_or(case.statements.len());
    let (statements, queries) = case.statements.split_at(split);
    let mut responses = Vec::new();
    for statement in statements {
        let (status, body) = server
            .post(
                "/ksql",
                json!({"ksql": statement, "streamsProperties": properties}),
            )
            .await?;
        if status >= 400 {
            return expected_failure(case, status, &body, statement);
        }
        let entities: Vec<Value> =
            serde_json::from_str(&body).map_err(|e| format!("/ksql answered {body}: {e}"))?;
        responses.extend(entities.into_iter().map(|e| json!({ "admin": e })));
    }
    let arrivals = produce_inputs(case, &server.log, &server.engine, Layout::REST).await?;
    for query in queries {
        // Reading stops early only for an endless push query: one the case expects no final
        // message from.
        let expected = case
            .responses
            .as_ref()
            .and_then(|r| r.get(responses.len()))
            .and_then(|r| r["query"].as_array());
        let rows = expected
            .filter(|elements| !elements.iter().any(|e| e.get("finalMessage").is_some()))
            .map(|elements| elements.iter().filter(|e| e.get("row").is_some()).count());
        let body = json!({"ksql": query, "streamsProperties": properties});
        match server.query(body, rows, KSQL_JSON).await? {
            Ok(elements) => responses.push(json!({ "query": elements })),
            Err((status, text)) => return expected_failure(case, status, &text, query),
        }
    }
    if case.pull_in_protobuf {
        for query in queries {
            let body = json!({"ksql": query, "streamsProperties": properties});
            match server.query(body, None, KSQL_PROTOBUF).await? {
                Ok(elements) => {
                    responses.push(json!({ "queryProto": protobuf::rows_as_text(elements)? }));
                }
                Err((status, text)) => return expected_failure(case, status, &text, query),
            }
        }
    }
    if let Some(expected) = &case.expected_error {
        return Err(format!(
            "expected an error containing {expected:?}, but every statement ran"
        ));
    }
    if let Some(expected) = &case.responses {
        compare_responses(expected, &responses)?;
    }
    compare_outputs(case, &server.log, &server.engine, &arrivals).await
}

/// A statement failed: fine when the case expects that error (message and status).
fn expected_failure(case: &Case, status: u16, body: &str, statement: &str) -> Result<(), String> {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string());
    match &case.expected_error {
        Some(expected) if !message.contains(expected.as_str()) => Err(format!(
            "expected an error containing {expected:?}, got {message:?}"
        )),
        Some(_) if case.expected_status.is_some_and(|s| s != status) => Err(format!(
            "expected status {:?}, got {status}: {message}",
            case.expected_status
        )),
        Some(_) => Ok(()),
        None => Err(format!(
            "statement failed ({status}): {message}\n  {statement}"
        )),
    }
}

/// The elements of a `/query` body (`[` element `,\n` element … `]`) read so far; an element
/// still arriving is left out until the body is `complete`.
fn streamed_elements(text: &str, complete: bool) -> Vec<Value> {
    let body = text.trim_start().strip_prefix('[').unwrap_or(text);
    let body = if complete {
        body.trim_end().strip_suffix(']').unwrap_or(body)
    } else {
        body
    };
    body.split(",\n")
        .filter_map(|element| serde_json::from_str(element.trim()).ok())
        .collect()
}

fn compare_responses(expected: &[Value], actual: &[Value]) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "expected {} responses, got {}: {}",
            expected.len(),
            actual.len(),
            Value::from(actual.to_vec())
        ));
    }
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        match (want.get("admin"), want.get("query")) {
            (Some(entity), _) => {
                let got = got
                    .get("admin")
                    .ok_or_else(|| format!("response {i}: expected an entity, got {got}"))?;
                if !contains(entity, got) {
                    return Err(format!(
                        "response {i}: entity {got} does not match {entity}"
                    ));
                }
            }
            (None, Some(Value::Array(elements))) => {
                let got = got
                    .get("query")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("response {i}: expected query rows, got {got}"))?;
                compare_query(i, elements, got)?;
            }
            (None, None) if want.get("queryProto").is_some() => {
                let (Some(Value::Array(elements)), Some(Value::Array(got))) =
                    (want.get("queryProto"), got.get("queryProto"))
                else {
                    return Err(format!("response {i}: expected Protobuf rows, got {got}"));
                };
                compare_query(i, elements, got)?;
            }
            _ => return Err(format!("response {i}: cannot read the expectation {want}")),
        }
    }
    Ok(())
}

/// A `/query` body: the header and final message as given, the rows in any order.
fn compare_query(i: usize, expected: &[Value], actual: &[Value]) -> Result<(), String> {
    let part = |elements: &[Value], key: &str| -> Vec<Value> {
        elements
            .iter()
            .filter(|e| e.get(key).is_some())
            .cloned()
            .collect()
    };
    for key in ["header", "finalMessage", "errorMessage"] {
        let (want, got) = (part(expected, key), part(actual, key));
        if want.len() != got.len() || !want.iter().zip(&got).all(|(w, g)| contains(w, g)) {
            return Err(format!(
                "response {i}: {key} {} != expected {}",
                Value::from(got),
                Value::from(want)
            ));
        }
    }
    let (want, mut got) = (part(expected, "row"), part(actual, "row"));
    if want.len() != got.len() {
        return Err(format!(
            "response {i}: expected {} rows, got {}: {}",
            want.len(),
            got.len(),
            Value::from(got)
        ));
    }
    for row in &want {
        match got.iter().position(|g| contains(row, g)) {
            Some(found) => {
                got.swap_remove(found);
            }
            None => {
                return Err(format!(
                    "response {i}: no row matches {row}; unmatched rows: {}",
                    Value::from(got)
                ));
            }
        }
    }
    Ok(())
}

/// Whether `actual` has everything `expected` has: objects may carry more fields, arrays
/// match element by element, numbers as the corpus compares them.
fn contains(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(key, value)| got.get(key).is_some_and(|g| contains(value, g))),
        (Value::Array(want), Value::Array(got)) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| contains(w, g))
        }
        _ => same(expected, actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_match_partially_and_rows_in_any_order() {
        assert!(contains(
            &json!({"@type": "currentStatus"}),
            &json!({"@type": "currentStatus", "commandId": "x"})
        ));
        assert!(!contains(
            &json!({"@type": "streams"}),
            &json!({"@type": "currentStatus"})
        ));
        let expected = [
            json!({"header": {"schema": "`K` STRING"}}),
            json!({"row": {"columns": ["a"]}}),
            json!({"row": {"columns": ["b"]}}),
            json!({"finalMessage": "Limit Reached"}),
        ];
        let actual = [
            json!({"header": {"queryId": "q", "schema": "`K` STRING"}}),
            json!({"row": {"columns": ["b"]}}),
            json!({"row": {"columns": ["a"]}}),
            json!({"finalMessage": "Limit Reached"}),
        ];
        assert_eq!(compare_query(0, &expected, &actual), Ok(()));
        assert!(compare_query(0, &expected, &actual[..3]).is_err());
    }

    #[test]
    fn a_streamed_body_is_read_element_by_element() {
        let partial = "[{\"header\":{\"schema\":\"`K` STRING\"}},\n{\"row\":{\"columns\":[\"a\"]}},\n{\"row\":";
        assert_eq!(streamed_elements(partial, false).len(), 2);
        let complete = "[{\"header\":{}},\n{\"finalMessage\":\"Query Completed\"}]\n";
        assert_eq!(
            streamed_elements(complete, true),
            [
                json!({"header": {}}),
                json!({"finalMessage": "Query Completed"})
            ]
        );
    }
}
