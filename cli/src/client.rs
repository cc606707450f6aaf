//! The REST client the shell talks through: `/info`, `/ksql` and `/query`, with the
//! session's properties and variables sent along with every request, as ksqlDB's CLI does.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Why a request failed: the server refused it (with ksqlDB's error entity), or it never
/// got an answer.
#[derive(Debug)]
pub enum ClientError {
    Server { status: u16, entity: Value },
    Transport(String),
}

impl ClientError {
    /// The message to show: the entity's `message`, or what went wrong on the way.
    pub fn message(&self) -> String {
        match self {
            ClientError::Server { status, entity } => entity["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the server answered {status}: {entity}")),
            ClientError::Transport(message) => message.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestClient {
    pub server: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
}

impl RestClient {
    pub fn new(server: &str, credentials: Option<(String, String)>) -> RestClient {
        RestClient {
            server: server.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            credentials,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.server));
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    fn unreachable(&self, error: reqwest::Error) -> ClientError {
        ClientError::Transport(format!(
            "Could not reach the server at {}: {error}",
            self.server
        ))
    }

    /// `GET /info`: the server's `KsqlServerInfo`.
    pub async fn info(&self) -> Result<Value, ClientError> {
        let response = self
            .request(reqwest::Method::GET, "/info")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let body = self.json_body(response).await?;
        Ok(body["KsqlServerInfo"].clone())
    }

    /// `POST /ksql`: the entities of the statements.
    pub async fn ksql(
        &self,
        sql: &str,
        properties: &BTreeMap<String, String>,
        variables: &BTreeMap<String, String>,
    ) -> Result<Vec<Value>, ClientError> {
        let response = self
            .post_statement("/ksql", sql, properties, variables)
            .await?;
        match self.json_body(response).await? {
            Value::Array(entities) => Ok(entities),
            other => Ok(vec![other]),
        }
    }

    /// `POST /query`: the streaming response, to be read chunk by chunk.
    pub async fn query(
        &self,
        sql: &str,
        properties: &BTreeMap<String, String>,
        variables: &BTreeMap<String, String>,
    ) -> Result<reqwest::Response, ClientError> {
        let response = self
            .post_statement("/query", sql, properties, variables)
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.json_body(response).await.err().unwrap_or_else(|| {
                ClientError::Transport("the server refused the query".to_string())
            }))
        }
    }

    /// Posts statements with the session's properties and variables, as `/ksql` and
    /// `/query` take them.
    async fn post_statement(
        &self,
        path: &str,
        sql: &str,
        properties: &BTreeMap<String, String>,
        variables: &BTreeMap<String, String>,
    ) -> Result<reqwest::Response, ClientError> {
        self.request(reqwest::Method::POST, path)
            .json(&json!({
                "ksql": sql,
                "streamsProperties": properties,
                "sessionVariables": variables,
            }))
            .send()
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// The JSON body of a response; an error status becomes [`ClientError::Server`].
    async fn json_body(&self, response: reqwest::Response) -> Result<Value, ClientError> {
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": text }));
        if status >= 400 {
            Err(ClientError::Server {
                status,
                entity: body,
            })
        } else {
            Ok(body)
        }
    }
}
