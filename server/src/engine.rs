//! [`Engine`]: runs ksqlDB statements against the catalog, the planner, the log and the
//! persistent queries. The REST API and the conformance runner both drive it.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_grammar::Position;
use riffle_grammar::ast::{
    AlterSource, CreateAsSelect, CreateSource, DropSource, InsertInto, QueryTarget, Show,
    SourceKind, Statement,
};
use tokio::sync::Mutex;

use crate::catalog::properties::SourceProperties;
use crate::catalog::{Catalog, FormatDefaults, RESERVED_COLUMNS, Source};
use crate::format::{Format, FormatSpec};
use crate::log::{Acks, FetchRequest, Log, LogError, ProducerRecord, TopicConfig};
use crate::plan::{PlanError, Planner};
use crate::query::print::{PrintOptions, TopicPrint};
use crate::query::transient::{Mode, StatefulPlan, TransientQuery};
use crate::query::{
    PersistentQuery, ProcessingLog, QueryPlan, QuerySpec, QueryState, StartPosition, TaskOptions,
};
use crate::runtime::SinkEncoder;
use crate::types::{Column, ColumnKind, LogicalSchema, SqlType};

/// Why a statement failed. `Statement` errors are the user's to fix.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Parse(#[from] riffle_grammar::ParseError),
    #[error("{0}")]
    Statement(String),
    /// A statement error about one name or expression of it, which `position` points at
    /// (after `prefix`, as ksqlDB words some errors).
    #[error("{prefix}Line: {}, Col: {}: {message}", position.line, position.column)]
    Located {
        position: Position,
        message: String,
        prefix: &'static str,
    },
    #[error("{0} is not supported yet")]
    Unsupported(String),
    #[error("{0}")]
    Log(#[from] LogError),
    /// An `ASSERT` that does not hold.
    #[error("{0}")]
    Assertion(String),
}

impl From<PlanError> for EngineError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Plan(message) => EngineError::Statement(message),
            PlanError::Located {
                position,
                message,
                prefix,
            } => EngineError::Located {
                position,
                message,
                prefix,
            },
            PlanError::Unsupported(what) => EngineError::Unsupported(what),
        }
    }
}

impl EngineError {
    /// Moves the position of an error found in one statement to where that statement
    /// starts in its script.
    fn offset_by(self, origin: Position) -> Self {
        match self {
            EngineError::Parse(error) => EngineError::Parse(error.offset_by(origin)),
            EngineError::Located {
                position,
                message,
                prefix,
            } => EngineError::Located {
                position: position.offset_by(origin),
                message,
                prefix,
            },
            other => other,
        }
    }
}

/// What a statement produced.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementResult {
    /// A command that changed something, with ksqlDB's message ("Stream created").
    Done {
        message: String,
        query_id: Option<String>,
    },
    Sources(Vec<Source>),
    Queries(Vec<QueryInfo>),
    Topics(Vec<(String, usize)>),
    Properties(Properties),
    Variables(Properties),
    Types(BTreeMap<String, SqlType>),
    Functions(Vec<String>),
    /// `ASSERT [NOT EXISTS] TOPIC` held.
    AssertTopic {
        topic: String,
        exists: bool,
    },
    /// `DESCRIBE source [EXTENDED]`.
    Description(Box<SourceDescription>),
    /// `DESCRIBE STREAMS|TABLES [EXTENDED]`, `SHOW STREAMS|TABLES EXTENDED`.
    Descriptions(Vec<SourceDescription>),
    /// `EXPLAIN query_id` or `EXPLAIN statement`.
    Explanation(Box<QueryDescription>),
    /// `DESCRIBE FUNCTION name`.
    Function(crate::plan::FunctionDescription),
}

/// A persistent query as `SHOW QUERIES` and `DESCRIBE` list it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInfo {
    pub id: String,
    pub statement: String,
    pub sink: String,
    /// `None` for a query that only materializes a source table.
    pub sink_topic: Option<String>,
    pub state: QueryState,
}

/// A source, the queries reading and writing it, and (`EXTENDED`) its topic's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDescription {
    pub source: Source,
    pub read_by: Vec<QueryInfo>,
    pub written_by: Vec<QueryInfo>,
    pub extended: Option<TopicFigures>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicFigures {
    pub partitions: usize,
    /// Records the topic holds now, over all partitions.
    pub messages: i64,
}

/// What `EXPLAIN` tells about a query: what it reads, what it writes, its output columns and
/// its plan. A statement that is only explained has an empty `id` and no `state`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryDescription {
    pub id: String,
    pub statement: String,
    pub sources: Vec<String>,
    pub sinks: Vec<String>,
    pub sink_topics: Vec<String>,
    pub fields: LogicalSchema,
    pub execution_plan: String,
    pub state: Option<QueryState>,
    pub persistent: bool,
}

/// Per-request settings (`streamsProperties` in REST, `properties` in test cases).
pub type Properties = BTreeMap<String, String>;

/// What `SET` and `DEFINE` change for the rest of a script.
struct Session {
    properties: Properties,
    variables: Properties,
}

pub struct Engine {
    log: Arc<dyn Log>,
    planner: Planner,
    processing_log: ProcessingLog,
    state: Mutex<EngineState>,
    /// The commands replayed from the command topic at start, in order, with what they
    /// answered: what `/status` knows of the commands before this start.
    replayed: parking_lot::Mutex<Vec<ReplayedCommand>>,
}

/// A command replayed at start that changed something (a `Done` result).
#[derive(Debug, Clone)]
pub struct ReplayedCommand {
    pub statement: String,
    pub message: String,
    pub query_id: Option<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct EngineState {
    catalog: Catalog,
    queries: BTreeMap<String, PersistentQuery>,
    /// While the command topic is replayed, queries start paused and resume at its end,
    /// unless a replayed `PAUSE` left them in `paused`.
    replaying: bool,
    paused: std::collections::BTreeSet<String>,
    next_query: u64,
    next_transient: u64,
}

impl Engine {
    /// Starts an engine on a log: creates the command topic if needed and replays the
    /// statements it holds, so a restarted server has the same sources and queries (which
    /// resume from their committed positions).
    pub async fn start(log: Arc<dyn Log>) -> Result<Engine, EngineError> {
        if let Err(LogError::UnknownTopic(_)) = log.describe_topic(PROCESSING_LOG_TOPIC).await {
            log.create_topic(PROCESSING_LOG_TOPIC, TopicConfig::new(1))
                .await?;
        }
        let engine = Engine {
            processing_log: ProcessingLog::with_topic(log.clone(), PROCESSING_LOG_TOPIC.into()),
            log,
            planner: Planner::new(),
            state: Mutex::new(EngineState::default()),
            replayed: parking_lot::Mutex::default(),
        };
        engine.declare_processing_log_stream().await?;
        engine.replay_commands().await?;
        Ok(engine)
    }

    /// `KSQL_PROCESSING_LOG`: the processing log as a stream users can query.
    async fn declare_processing_log_stream(&self) -> Result<(), EngineError> {
        let sql = format!(
            "CREATE STREAM KSQL_PROCESSING_LOG (LOGGER STRING, LEVEL STRING, TIME BIGINT, \
             MESSAGE STRUCT<TYPE INT, ERRORMESSAGE STRING, TOPIC STRING, `PARTITION` INT, \
             `OFFSET` BIGINT>) WITH (KAFKA_TOPIC='{PROCESSING_LOG_TOPIC}', VALUE_FORMAT='JSON');"
        );
        let statement = riffle_grammar::parse_statement(&sql)?;
        self.execute_statement(&statement, &sql, &Properties::new())
            .await?;
        Ok(())
    }

    async fn replay_commands(&self) -> Result<(), EngineError> {
        if let Err(LogError::UnknownTopic(_)) = self.log.describe_topic(COMMAND_TOPIC).await {
            let config = TopicConfig {
                retention_ms: None,
                ..TopicConfig::new(1)
            };
            self.log.create_topic(COMMAND_TOPIC, config).await?;
        }
        self.state.lock().await.replaying = true;
        let replayed = self.replay_command_topic().await;
        let mut state = self.state.lock().await;
        state.replaying = false;
        for (id, query) in &state.queries {
            if !state.paused.contains(id) {
                query.set_state(QueryState::Running);
            }
        }
        replayed
    }

    async fn replay_command_topic(&self) -> Result<(), EngineError> {
        let mut offset = 0;
        loop {
            let response = self
                .log
                .fetch(&FetchRequest::new(COMMAND_TOPIC, 0, offset))
                .await?;
            for record in &response.records {
                let Some(command) = record
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<Command>(v).ok())
                else {
                    tracing::warn!(offset = record.offset, "skipping an unreadable command");
                    continue;
                };
                let replayed = match riffle_grammar::parse_statement(&command.statement) {
                    Ok(statement) => {
                        self.execute_statement(&statement, &command.statement, &command.properties)
                            .await
                    }
                    Err(error) => Err(error.into()),
                };
                match replayed {
                    Ok(StatementResult::Done { message, query_id }) => {
                        self.replayed.lock().push(ReplayedCommand {
                            statement: command.statement,
                            message,
                            query_id,
                        });
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(
                        offset = record.offset, statement = %command.statement, %error,
                        "a stored statement no longer runs; skipping it"
                    ),
                }
            }
            if response.next_offset >= response.end_offset {
                return Ok(());
            }
            offset = response.next_offset;
        }
    }

    /// Appends an accepted statement to the command topic.
    async fn record_command(
        &self,
        statement: &str,
        properties: &Properties,
    ) -> Result<(), EngineError> {
        let command = Command {
            statement: statement.to_string(),
            properties: properties.clone(),
        };
        let value = serde_json::to_vec(&command).expect("a command serializes");
        self.log
            .produce(
                COMMAND_TOPIC,
                vec![ProducerRecord::new(None::<Vec<u8>>, Some(value))],
                Acks::All,
            )
            .await?;
        Ok(())
    }

    /// The commands replayed at start that changed something, in order.
    pub fn replayed_commands(&self) -> Vec<ReplayedCommand> {
        self.replayed.lock().clone()
    }

    pub fn processing_log(&self) -> &ProcessingLog {
        &self.processing_log
    }

    pub async fn source(&self, name: &str) -> Option<Source> {
        self.state.lock().await.catalog.source(name).cloned()
    }

    /// Runs the statements of a script in order, stopping at the first error.
    pub async fn execute(
        &self,
        sql: &str,
        properties: &Properties,
    ) -> Result<Vec<StatementResult>, EngineError> {
        self.execute_with_variables(sql, properties, &Properties::new())
            .await
    }

    /// Runs a script with session variables. `SET`/`UNSET` and `DEFINE`/`UNDEFINE` apply to
    /// the statements after them in the same script; `${name}` is substituted before each
    /// statement is parsed.
    pub async fn execute_with_variables(
        &self,
        sql: &str,
        properties: &Properties,
        variables: &Properties,
    ) -> Result<Vec<StatementResult>, EngineError> {
        let mut results = Vec::new();
        self.execute_script(sql, properties, variables, &mut results)
            .await?;
        Ok(results)
    }

    /// [`Self::execute_with_variables`], pushing each statement's result into `results` as
    /// it completes: after an error, `results` holds those of the statements before it.
    pub async fn execute_script(
        &self,
        sql: &str,
        properties: &Properties,
        variables: &Properties,
        results: &mut Vec<StatementResult>,
    ) -> Result<(), EngineError> {
        let mut session = Session {
            properties: properties.clone(),
            variables: variables
                .iter()
                .map(|(k, v)| (k.to_uppercase(), v.clone()))
                .collect(),
        };
        for text in riffle_grammar::split_script(sql)? {
            let substituting = session
                .properties
                .get("ksql.variable.substitution.enable")
                .is_none_or(|v| v != "false");
            let statement_text = if substituting {
                riffle_grammar::substitute_variables(&text.text, |name| {
                    session.variables.get(name).cloned()
                })
                .map_err(|e| e.offset_by(text.position))?
                .into_owned()
            } else {
                text.text.clone()
            };
            let statement = riffle_grammar::parse_statement(&statement_text)
                .map_err(|e| e.offset_by(text.position))?;
            let result = match &statement {
                Statement::SetProperty(assignment) => {
                    session
                        .properties
                        .insert(assignment.name.clone(), assignment.value.clone());
                    done(format!("Property '{}' set", assignment.name), None)
                }
                Statement::UnsetProperty(name) => {
                    session.properties.remove(name);
                    done(format!("Property '{name}' unset"), None)
                }
                Statement::DefineVariable { name, value } => {
                    session
                        .variables
                        .insert(name.value.to_uppercase(), value.clone());
                    done(format!("Variable {} defined", name.value), None)
                }
                Statement::UndefineVariable(name) => {
                    session.variables.remove(&name.value.to_uppercase());
                    done(format!("Variable {} undefined", name.value), None)
                }
                Statement::Show(Show::Variables) => {
                    StatementResult::Variables(session.variables.clone())
                }
                Statement::Show(Show::Properties) => {
                    StatementResult::Properties(session.properties.clone())
                }
                _ => {
                    let result = self
                        .execute_statement(&statement, &statement_text, &session.properties)
                        .await
                        .map_err(|e| e.offset_by(text.position))?;
                    if changes_catalog(&statement) {
                        self.record_command(&statement_text, &session.properties)
                            .await?;
                    }
                    result
                }
            };
            results.push(result);
        }
        Ok(())
    }

    /// Runs one statement; `text` is the statement as sent.
    async fn execute_statement(
        &self,
        statement: &Statement,
        text: &str,
        properties: &Properties,
    ) -> Result<StatementResult, EngineError> {
        match statement {
            Statement::CreateSource(create) => self.create_source(create, text, properties).await,
            Statement::CreateAsSelect(create) => {
                self.create_as_select(create, text, properties).await
            }
            Statement::InsertInto(insert) => self.insert_into(insert, text, properties).await,
            Statement::InsertValues(insert) => self.insert_values(insert).await,
            Statement::CreateType(create) => {
                let mut state = self.state.lock().await;
                let name = create.name.value.clone();
                if state.catalog.resolve_type(&name).is_some() {
                    if create.if_not_exists {
                        return Ok(done(format!("Type {name} already exists"), None));
                    }
                    return Err(EngineError::Statement(format!(
                        "Cannot register custom type '{name}' since it is already registered \
                         with type: {}",
                        state
                            .catalog
                            .resolve_type(&name)
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    )));
                }
                let catalog = &state.catalog;
                let ty = SqlType::from_ast(&create.data_type, &|alias| catalog.resolve_type(alias))
                    .map_err(|e| EngineError::Statement(e.0))?;
                state.catalog.insert_type(name.clone(), ty);
                Ok(done(
                    format!("Registered custom type with name '{name}'"),
                    None,
                ))
            }
            Statement::DropType(drop) => {
                let mut state = self.state.lock().await;
                let name = drop.name.value.clone();
                match state.catalog.remove_type(&name) {
                    Some(_) => Ok(done(format!("Dropped type '{name}'"), None)),
                    None if drop.if_exists => Ok(done(format!("Type {name} does not exist"), None)),
                    None => Err(EngineError::Statement(format!(
                        "Type {name} does not exist."
                    ))),
                }
            }
            Statement::DropSource(drop) => self.drop_source(drop).await,
            Statement::AlterSource(alter) => self.alter_source(alter).await,
            Statement::AssertTopic(assert) => self.assert_topic(assert, properties).await,
            Statement::Terminate(target) => self.terminate(target).await,
            Statement::Pause(target) => self.pause_or_resume(target, QueryState::Paused).await,
            Statement::Resume(target) => self.pause_or_resume(target, QueryState::Running).await,
            Statement::Explain(explain) => self.explain(explain, properties).await,
            Statement::Describe(riffle_grammar::ast::Describe::Function(name)) => {
                Ok(StatementResult::Function(
                    self.planner.describe_function(&name.value).ok_or_else(|| {
                        EngineError::Statement(format!(
                            "Can't find any functions with the name '{}'",
                            name.value
                        ))
                    })?,
                ))
            }
            Statement::Describe(riffle_grammar::ast::Describe::Streams { extended }) => {
                self.describe_all(SourceKind::Stream, *extended).await
            }
            Statement::Describe(riffle_grammar::ast::Describe::Tables { extended }) => {
                self.describe_all(SourceKind::Table, *extended).await
            }
            Statement::Show(Show::Streams { extended: true }) => {
                self.describe_all(SourceKind::Stream, true).await
            }
            Statement::Show(Show::Tables { extended: true }) => {
                self.describe_all(SourceKind::Table, true).await
            }
            Statement::Show(Show::Streams { .. }) => self.list(SourceKind::Stream).await,
            Statement::Show(Show::Tables { .. }) => self.list(SourceKind::Table).await,
            Statement::Show(Show::Topics { all, .. }) => {
                let mut topics = Vec::new();
                for name in self.log.list_topics().await? {
                    if !all && (name.starts_with('_') || name.starts_with("__")) {
                        continue;
                    }
                    let partitions = self.log.describe_topic(&name).await?.partitions.len();
                    topics.push((name, partitions));
                }
                Ok(StatementResult::Topics(topics))
            }
            Statement::Show(Show::Types) => Ok(StatementResult::Types(
                self.state.lock().await.catalog.types().clone(),
            )),
            Statement::Show(Show::Functions) => {
                Ok(StatementResult::Functions(self.planner.function_names()))
            }
            Statement::Show(Show::Properties) => {
                Ok(StatementResult::Properties(properties.clone()))
            }
            Statement::Describe(riffle_grammar::ast::Describe::Source { name, extended }) => {
                let state = self.state.lock().await;
                let source = state.catalog.source(&name.value).cloned().ok_or_else(|| {
                    EngineError::Statement(format!(
                        "Could not find STREAM/TABLE '{}' in the Metastore",
                        name.value
                    ))
                })?;
                Ok(StatementResult::Description(Box::new(
                    self.describe_source(&state, source, *extended).await?,
                )))
            }
            Statement::Show(Show::Queries { .. }) => {
                let state = self.state.lock().await;
                Ok(StatementResult::Queries(
                    state.queries.values().map(query_info).collect(),
                ))
            }
            other => Err(EngineError::Unsupported(format!(
                "the statement '{}'",
                statement_kind(other)
            ))),
        }
    }

    async fn describe_source(
        &self,
        state: &EngineState,
        source: Source,
        extended: bool,
    ) -> Result<SourceDescription, EngineError> {
        let read_by = state
            .queries
            .values()
            .filter(|q| q.spec.source.name == source.name)
            .map(query_info)
            .collect();
        let written_by = state
            .queries
            .values()
            .filter(|q| q.spec.sink_topic.as_ref() == Some(&source.topic))
            .map(query_info)
            .collect();
        let extended = if extended {
            let topic = self.log.describe_topic(&source.topic).await?;
            Some(TopicFigures {
                partitions: topic.partitions.len(),
                messages: topic
                    .partitions
                    .iter()
                    .map(|p| p.end_offset - p.start_offset)
                    .sum(),
            })
        } else {
            None
        };
        Ok(SourceDescription {
            source,
            read_by,
            written_by,
            extended,
        })
    }

    async fn describe_all(
        &self,
        kind: SourceKind,
        extended: bool,
    ) -> Result<StatementResult, EngineError> {
        let state = self.state.lock().await;
        let mut descriptions = Vec::new();
        for source in state.catalog.sources().filter(|s| s.kind == kind) {
            descriptions.push(
                self.describe_source(&state, source.clone(), extended)
                    .await?,
            );
        }
        Ok(StatementResult::Descriptions(descriptions))
    }

    /// `EXPLAIN query_id` describes a running query; `EXPLAIN statement` plans a query
    /// without starting it.
    async fn explain(
        &self,
        explain: &riffle_grammar::ast::Explain,
        properties: &Properties,
    ) -> Result<StatementResult, EngineError> {
        use riffle_grammar::ast::Explain;
        let state = self.state.lock().await;
        let (query, sink, statement) = match explain {
            Explain::QueryId(id) => {
                let running = state
                    .queries
                    .values()
                    .find(|q| q.id().eq_ignore_ascii_case(&id.value))
                    .ok_or_else(|| {
                        EngineError::Statement(format!(
                            "Query with id:{} does not exist, use SHOW QUERIES to view the full \
                             set of queries.",
                            id.value
                        ))
                    })?;
                let spec = &running.spec;
                let fields = spec.encoder.schema();
                return Ok(StatementResult::Explanation(Box::new(QueryDescription {
                    id: spec.id.clone(),
                    statement: spec.statement.clone(),
                    sources: spec.inputs().iter().map(|s| s.name.clone()).collect(),
                    sinks: vec![spec.sink_name.clone()],
                    sink_topics: spec.sink_topic.iter().cloned().collect(),
                    execution_plan: execution_plan(
                        &spec.source,
                        &spec.plan,
                        &fields,
                        Some(&spec.sink_name),
                    ),
                    fields,
                    state: Some(running.state()),
                    persistent: true,
                })));
            }
            Explain::Statement(statement) => match statement.as_ref() {
                Statement::Query(query) => (query.as_ref(), None, statement.to_string()),
                Statement::CreateAsSelect(create) if create.kind == SourceKind::Stream => (
                    &create.query,
                    Some(create.name.value.clone()),
                    statement.to_string(),
                ),
                Statement::InsertInto(insert) => (
                    &insert.query,
                    Some(insert.target.value.clone()),
                    statement.to_string(),
                ),
                other => {
                    return Err(EngineError::Unsupported(format!(
                        "EXPLAIN of '{}'",
                        statement_kind(other)
                    )));
                }
            },
        };
        let (input, plan, key_columns, value_columns) = self
            .plan_query(&state.catalog, query, sink.as_deref(), properties)
            .await?;
        let fields = LogicalSchema::from_key_and_value_columns(&key_columns, &value_columns);
        let sink_topic = sink
            .as_deref()
            .and_then(|name| state.catalog.source(name))
            .map(|s| s.topic.clone())
            .or_else(|| sink.clone());
        Ok(StatementResult::Explanation(Box::new(QueryDescription {
            id: String::new(),
            statement: statement.trim_end_matches(';').to_string() + ";",
            sources: vec![input.name.clone()],
            sinks: sink.iter().cloned().collect(),
            sink_topics: sink_topic.into_iter().collect(),
            execution_plan: execution_plan(
                &input,
                &QueryPlan::Stateless(plan),
                &fields,
                sink.as_deref(),
            ),
            fields,
            state: None,
            persistent: sink.is_some(),
        })))
    }

    /// `PAUSE` / `RESUME`: a paused query keeps its position and reads nothing until resumed.
    async fn pause_or_resume(
        &self,
        target: &QueryTarget,
        to: QueryState,
    ) -> Result<StatementResult, EngineError> {
        let mut state = self.state.lock().await;
        let ids = find_queries(&state, target)?;
        for id in ids {
            match to {
                QueryState::Paused => state.paused.insert(id.clone()),
                _ => state.paused.remove(&id),
            };
            if let Some(query) = state.queries.get(&id).filter(|_| !state.replaying) {
                query.set_state(to);
            }
        }
        let message = match to {
            QueryState::Paused => "Query paused.",
            _ => "Query resumed.",
        };
        Ok(done(message.into(), None))
    }

    /// Starts a persistent query; while the command topic is replayed it starts paused.
    async fn start_query(
        &self,
        state: &EngineState,
        spec: QuerySpec,
    ) -> Result<PersistentQuery, EngineError> {
        let initial = if state.replaying {
            QueryState::Paused
        } else {
            QueryState::Running
        };
        Ok(
            PersistentQuery::start(self.log.clone(), spec, self.processing_log.clone(), initial)
                .await?,
        )
    }

    async fn list(&self, kind: SourceKind) -> Result<StatementResult, EngineError> {
        let state = self.state.lock().await;
        Ok(StatementResult::Sources(
            state
                .catalog
                .sources()
                .filter(|s| s.kind == kind)
                .cloned()
                .collect(),
        ))
    }

    async fn create_source(
        &self,
        create: &CreateSource,
        text: &str,
        properties: &Properties,
    ) -> Result<StatementResult, EngineError> {
        crate::catalog::check_key_constraints(create)?;
        let mut state = self.state.lock().await;
        let mut source = state
            .catalog
            .declare_source(create, &format_defaults(properties))
            .map_err(EngineError::Statement)?;
        source.statement = text.trim().to_string();
        let existing = state.catalog.source(&source.name);
        if create.or_replace && (create.is_source || existing.is_some_and(|e| e.is_source)) {
            return Err(EngineError::Statement(format!(
                "Cannot add {} '{}': CREATE OR REPLACE is not supported on source {}s.",
                noun(source.kind).to_lowercase(),
                source.name,
                noun(source.kind).to_lowercase()
            )));
        }
        if let Some(existing) = existing {
            if create.if_not_exists {
                return Ok(done(
                    format!("{} already exists", noun(existing.kind)),
                    None,
                ));
            }
            if !create.or_replace {
                return Err(EngineError::Statement(format!(
                    "Cannot add {} '{}': A {} with the same name already exists",
                    noun(source.kind).to_lowercase(),
                    source.name,
                    noun(existing.kind).to_lowercase()
                )));
            }
        }
        self.ensure_topic(&source.topic, source.partitions).await?;
        self.planner
            .register_source(&source.name, source.arrow_schema())?;
        let message = format!("{} created", noun(source.kind));
        let materialize = source.kind == SourceKind::Table && source.is_source;
        let name = source.name.clone();
        state.catalog.insert_source(source);
        if materialize {
            return self
                .materialize_source_table(&mut state, &name, message)
                .await;
        }
        Ok(done(message, None))
    }

    /// `CREATE SOURCE TABLE`: a query (`CST_<TABLE>_<n>`) keeps the table's rows, read from
    /// the start of its topic, for pull queries.
    async fn materialize_source_table(
        &self,
        state: &mut EngineState,
        name: &str,
        message: String,
    ) -> Result<StatementResult, EngineError> {
        let sql = format!("SELECT * FROM `{}` EMIT CHANGES;", name.replace('`', "``"));
        let Statement::Query(query) = riffle_grammar::parse_statement(&sql)? else {
            return Err(EngineError::Statement(format!(
                "internal: could not plan the materialization of {name}"
            )));
        };
        let (input, plan, key_columns, value_columns) = self
            .plan_query(&state.catalog, &query, None, &Properties::new())
            .await?;
        let query_id = format!("CST_{name}_{}", state.next_query);
        state.next_query += 1;
        let spec = QuerySpec {
            id: query_id.clone(),
            statement: input.statement.clone(),
            sink_name: name.to_string(),
            sink_topic: None,
            encoder: SinkEncoder {
                key_columns,
                value_columns,
                key_format: input.key_format.clone(),
                value_format: input.value_format.clone(),
                timestamp_column: None,
                window: input.window,
                partitions: None,
                keeps_input_key: false,
            },
            source: input,
            plan: QueryPlan::Stateless(plan),
            start: StartPosition::Earliest,
            options: TaskOptions::default(),
        };
        let query = self.start_query(state, spec).await?;
        state.queries.insert(query_id, query);
        Ok(done(message, None))
    }

    /// Creates the topic when `partitions` asks for it; otherwise it must exist.
    async fn ensure_topic(&self, topic: &str, partitions: Option<i32>) -> Result<(), EngineError> {
        match self.log.describe_topic(topic).await {
            Ok(_) => Ok(()),
            Err(LogError::UnknownTopic(_)) => match partitions {
                Some(partitions) => {
                    self.log
                        .create_topic(topic, TopicConfig::new(partitions))
                        .await?;
                    Ok(())
                }
                None => Err(EngineError::Statement(format!(
                    "Topic '{topic}' does not exist. If you want to create a new topic for the \
                     stream/table please re-run the statement providing the required \
                     'PARTITIONS' configuration in the WITH clause (and optionally \
                     'REPLICAS'). For example: CREATE STREAM FOO (ID INT, VAL STRING) WITH \
                     (KAFKA_TOPIC='{topic}', PARTITIONS=2, REPLICAS=1, FORMAT='JSON');"
                ))),
            },
            Err(error) => Err(error.into()),
        }
    }

    async fn create_as_select(
        &self,
        create: &CreateAsSelect,
        text: &str,
        properties: &Properties,
    ) -> Result<StatementResult, EngineError> {
        if create.query.limit.is_some() {
            return Err(EngineError::Statement(format!(
                "CREATE {} AS SELECT statements don't support LIMIT clause.",
                noun(create.kind).to_uppercase()
            )));
        }
        let aggregating = !create.query.group_by.is_empty() || create.query.window.is_some();
        let calls = self.aggregate_calls(&create.query);
        if create.query.window.is_some() && create.query.group_by.is_empty() && calls.is_empty() {
            return Err(EngineError::Statement(
                "WINDOW clause requires a GROUP BY clause.".into(),
            ));
        }
        let mut state = self.state.lock().await;
        let input = query_source(&state.catalog, &create.query)?;
        if !aggregating && !calls.is_empty() && create.kind == SourceKind::Table {
            // Columns outside the aggregates are named first, as ksqlDB does.
            let star_columns: Vec<String> = input
                .schema
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect();
            crate::plan::grouping::check_grouping(&create.query, &star_columns, &|name| {
                self.planner.is_aggregate_function(name)
            })?;
            return Err(EngineError::Statement(format!(
                "CREATE TABLE AS SELECT statement does not support aggregate function [{}] \
                 without a GROUP BY clause.",
                calls.join(", ")
            )));
        }
        if input.kind == SourceKind::Table && input.window.is_some() {
            return Err(EngineError::Statement(
                "KSQL does not support persistent queries on windowed tables.".into(),
            ));
        }
        let input_kind = input.kind;
        let joining = !create.query.from.joins.is_empty();
        let joined = if joining && !aggregating {
            Some(
                self.plan_join_query(&state.catalog, &create.query, Some(&create.name.value))
                    .await?,
            )
        } else {
            None
        };
        // A query over a table, or an aggregation, produces a table; a join produces a
        // stream unless it joins only tables.
        let produces = match &joined {
            Some((_, plan, _, _)) => plan.kind,
            None if aggregating => SourceKind::Table,
            None => input_kind,
        };
        if produces != create.kind {
            let (result, statement) = match produces {
                SourceKind::Table => ("TABLE", "CREATE TABLE AS SELECT"),
                SourceKind::Stream => ("STREAM", "CREATE STREAM AS SELECT"),
            };
            return Err(EngineError::Statement(format!(
                "Invalid result type. Your SELECT query produces a {result}. Please use \
                 {statement} statement instead."
            )));
        }
        let name = create.name.value.clone();
        if let Some(existing) = state.catalog.source(&name) {
            if create.if_not_exists {
                return Ok(done(
                    format!("{} already exists", noun(existing.kind)),
                    None,
                ));
            }
            return Err(EngineError::Statement(format!(
                "Cannot add stream '{name}': A {} with the same name already exists",
                noun(existing.kind).to_lowercase()
            )));
        }
        let sink_properties =
            SourceProperties::from_ast(&create.properties).map_err(EngineError::Statement)?;
        let (input, plan, key_columns, value_columns) =
            if let Some((input, plan, keys, values)) = joined {
                (input, QueryPlan::Join(plan), keys, values)
            } else if joining {
                let query = with_collection_limits(&create.query, properties);
                let query_id = format!("CTAS_{name}_{}", state.next_query);
                let (input, plan, keys, values) = self
                    .plan_join_aggregate_query(
                        &state.catalog,
                        &query,
                        Some(&name),
                        &query_id,
                        properties,
                    )
                    .await?;
                (input, QueryPlan::JoinAggregate(plan), keys, values)
            } else if aggregating {
                let query = with_collection_limits(&create.query, properties);
                let (input, plan, keys, values) = self
                    .plan_aggregate_query(&state.catalog, &query, Some(&name), properties)
                    .await?;
                (input, QueryPlan::Aggregate(plan), keys, values)
            } else {
                let (input, plan, keys, values) = self
                    .plan_query(&state.catalog, &create.query, Some(&name), properties)
                    .await?;
                (input, QueryPlan::Stateless(plan), keys, values)
            };
        // A windowed aggregation's table is windowed; so is a stream over a windowed source.
        let window = match &plan {
            QueryPlan::Aggregate(plan) => plan.windowing.map(|w| w.kind),
            QueryPlan::JoinAggregate(plan) => plan.aggregate.windowing.map(|w| w.kind),
            QueryPlan::Stateless(_) => input.window,
            // A join of windowed sources keeps their windows.
            QueryPlan::Join(plan) => plan
                .steps
                .first()
                .and_then(|step| step.window_bounds.as_ref())
                .and(input.window),
        };
        let key_format = match sink_properties.key_format_name() {
            Some(format) => FormatSpec::new(Format::parse(format).map_err(EngineError::Statement)?)
                .with_wrap_single(false),
            None => input.key_format.clone(),
        };
        if key_columns.is_empty()
            && create.kind == SourceKind::Stream
            && sink_properties.key_format_name().is_some()
        {
            return Err(EngineError::Statement(
                "Key format specified for stream without key columns.".into(),
            ));
        }
        if let Some((name, ty)) = key_columns
            .iter()
            .find(|(_, ty)| crate::catalog::contains_map(ty))
        {
            return Err(EngineError::Statement(crate::catalog::map_key_error(
                &Column {
                    name: name.clone(),
                    ty: ty.clone(),
                    kind: ColumnKind::Key,
                },
            )));
        }
        let key_format = if key_columns.is_empty() {
            FormatSpec::new(Format::None).with_wrap_single(false)
        } else if key_format.format == Format::None {
            // A source without key columns gains some: they take the default key format;
            // an aggregation's group keys take the source's value format when the default
            // cannot hold them (PARTITION BY keys do not: ksqlDB refuses those).
            let default = input
                .declared_key_format
                .filter(|format| *format != Format::None)
                .or_else(|| {
                    format_defaults(properties)
                        .key_format
                        .and_then(|f| Format::parse(&f).ok())
                })
                .unwrap_or(Format::Kafka);
            let format = match input.value_format.format {
                Format::Kafka | Format::None => default,
                _ if default.check_columns(&key_columns).is_ok() || !aggregating => default,
                other => other,
            };
            FormatSpec::new(format)
                .with_wrap_single(false)
                .with_delimiter(input.value_format.delimiter)
        } else {
            key_format
        };
        let value_format_kind = match sink_properties.value_format_name() {
            Some(format) => Format::parse(format).map_err(EngineError::Statement)?,
            None => input.value_format.format,
        };
        if sink_properties.wrap_single_value.is_some() && value_columns.len() != 1 {
            return Err(EngineError::Statement(
                "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas".into(),
            ));
        }
        let as_columns = |columns: &[(String, SqlType)], kind: ColumnKind| -> Vec<Column> {
            columns
                .iter()
                .map(|(name, ty)| Column {
                    name: name.clone(),
                    ty: ty.clone(),
                    kind: kind.clone(),
                })
                .collect()
        };
        key_format
            .format
            .check_key_columns(&key_columns)
            .map_err(|reason| {
                let columns = as_columns(&key_columns, ColumnKind::Key);
                EngineError::Statement(crate::catalog::unsupported_schema(
                    "Key",
                    key_format.format,
                    columns.iter(),
                    &reason,
                ))
            })?;
        value_format_kind
            .check_columns(&value_columns)
            .map_err(|reason| {
                let columns = as_columns(&value_columns, ColumnKind::Value);
                EngineError::Statement(crate::catalog::unsupported_schema(
                    "Value",
                    value_format_kind,
                    columns.iter(),
                    &reason,
                ))
            })?;
        let wrap = match value_format_kind {
            Format::Kafka | Format::Delimited => false,
            _ => sink_properties
                .wrap_single_value
                .or(format_defaults(properties).wrap_single_values)
                .unwrap_or(true),
        };
        let mut value_format = FormatSpec::new(value_format_kind).with_wrap_single(wrap);
        if let Some(delimiter) = &sink_properties.value_delimiter {
            value_format = value_format.with_delimiter(
                crate::catalog::delimiter_of(delimiter, "VALUE_DELIMITER")
                    .map_err(EngineError::Statement)?,
            );
        } else if value_format_kind == input.value_format.format {
            // A sink in the source's format keeps its delimiter, as ksqlDB does.
            value_format = value_format.with_delimiter(input.value_format.delimiter);
        }
        let timestamp_column = sink_properties.timestamp.as_ref().map(|c| c.to_uppercase());
        if let Some(column) = &timestamp_column
            && !key_columns
                .iter()
                .chain(&value_columns)
                .any(|(n, _)| n == column)
        {
            return Err(EngineError::Statement(format!(
                "The TIMESTAMP column set in the WITH clause does not exist in the schema: \
                 '{column}'"
            )));
        }
        // Without KAFKA_TOPIC the sink's topic is named after it, behind the
        // `ksql.output.topic.name.prefix` a deployment may set.
        let topic = sink_properties.kafka_topic.clone().unwrap_or_else(|| {
            let prefix = properties
                .get("ksql.output.topic.name.prefix")
                .map_or("", String::as_str);
            format!("{prefix}{name}")
        });
        let partitions = match sink_properties.partitions {
            Some(partitions) => partitions,
            None => self
                .log
                .describe_topic(&input.topic)
                .await?
                .partitions
                .len() as i32,
        };
        if self.log.describe_topic(&topic).await.is_err() {
            self.log
                .create_topic(&topic, TopicConfig::new(partitions))
                .await?;
        }
        let schema = LogicalSchema::from_key_and_value_columns(&key_columns, &value_columns);
        let sink = Source {
            name: name.clone(),
            kind: create.kind,
            window,
            schema,
            topic: topic.clone(),
            key_format: key_format.clone(),
            value_format: value_format.clone(),
            timestamp: timestamp_column.clone(),
            timestamp_format: None,
            is_source: false,
            created_by_query: true,
            partitions: Some(partitions),
            statement: text.trim().to_string(),
            declared_key_format: None,
        };
        state.next_query += 1;
        let prefix = match create.kind {
            SourceKind::Stream => "CSAS",
            SourceKind::Table => "CTAS",
        };
        let query_id = format!("{prefix}_{name}_{}", state.next_query - 1);
        let keeps_input_key = keeps_input_key(&plan, &create.query);
        let spec = QuerySpec {
            id: query_id.clone(),
            statement: text.trim().to_string(),
            sink_name: name.clone(),
            source: input,
            plan,
            sink_topic: Some(topic),
            encoder: SinkEncoder {
                key_columns,
                value_columns,
                key_format,
                value_format,
                timestamp_column,
                window,
                partitions: Some(partitions),
                keeps_input_key,
            },
            start: start_position(properties),
            options: task_options(properties)?,
        };
        let query = self.start_query(&state, spec).await?;
        self.planner
            .register_source(&sink.name, sink.arrow_schema())?;
        state.catalog.insert_source(sink);
        state.queries.insert(query_id.clone(), query);
        Ok(done(
            format!("Created query with ID {query_id}"),
            Some(query_id),
        ))
    }

    async fn insert_into(
        &self,
        insert: &InsertInto,
        text: &str,
        properties: &Properties,
    ) -> Result<StatementResult, EngineError> {
        let mut state = self.state.lock().await;
        let target_name = insert.target.value.clone();
        let target = state.catalog.source(&target_name).cloned().ok_or_else(|| {
            PlanError::at(
                &insert.target,
                format!("Source `{target_name}` does not exist."),
            )
        })?;
        if target.kind == SourceKind::Table {
            return Err(EngineError::Statement(format!(
                "INSERT INTO can only be used to insert into a stream. {target_name} is a table."
            )));
        }
        if target.is_source {
            return Err(EngineError::Statement(format!(
                "Cannot insert into read-only stream: {target_name}"
            )));
        }
        if target.schema.headers().next().is_some() {
            return Err(EngineError::Statement(format!(
                "Cannot insert into {target_name} because it has header columns"
            )));
        }
        let (input, plan, key_columns, value_columns) = if insert.query.from.joins.is_empty() {
            let (input, plan, keys, values) = self
                .plan_query(
                    &state.catalog,
                    &insert.query,
                    Some(&target_name),
                    properties,
                )
                .await?;
            (input, QueryPlan::Stateless(plan), keys, values)
        } else {
            let (input, plan, keys, values) = self
                .plan_join_query(&state.catalog, &insert.query, Some(&target_name))
                .await?;
            if plan.kind == SourceKind::Table {
                return Err(EngineError::Statement(format!(
                    "INSERT INTO can only be used to insert into a stream. The query joins \
                     only tables, so its result is a table, not {target_name}."
                )));
            }
            (input, QueryPlan::Join(plan), keys, values)
        };
        if key_columns != target.key_columns() || value_columns != target.value_columns() {
            return Err(EngineError::Statement(format!(
                "Incompatible schema between results and sink.\nResult schema is {}\nSink \
                 schema is {}",
                render_columns(&key_columns, &value_columns),
                target.schema
            )));
        }
        state.next_query += 1;
        let query_id = format!("INSERTQUERY_{}", state.next_query - 1);
        let keeps_input_key = keeps_input_key(&plan, &insert.query);
        let sink_partitions = self
            .log
            .describe_topic(&target.topic)
            .await?
            .partitions
            .len() as i32;
        let spec = QuerySpec {
            id: query_id.clone(),
            statement: text.trim().to_string(),
            sink_name: target_name.clone(),
            source: input,
            plan,
            sink_topic: Some(target.topic.clone()),
            encoder: SinkEncoder {
                key_columns,
                value_columns,
                key_format: target.key_format.clone(),
                value_format: target.value_format.clone(),
                timestamp_column: target.timestamp.clone(),
                window: target.window,
                partitions: Some(sink_partitions),
                keeps_input_key,
            },
            start: start_position(properties),
            options: task_options(properties)?,
        };
        let query = self.start_query(&state, spec).await?;
        state.queries.insert(query_id.clone(), query);
        Ok(done(
            format!("Created query with ID {query_id}"),
            Some(query_id),
        ))
    }

    /// `INSERT INTO s [(columns)] VALUES (…)`: one record, written directly.
    async fn insert_values(
        &self,
        insert: &riffle_grammar::ast::InsertValues,
    ) -> Result<StatementResult, EngineError> {
        let state = self.state.lock().await;
        let name = insert.target.value.clone();
        let Some(target) = state.catalog.source(&name).cloned() else {
            let similar = state
                .catalog
                .sources()
                .find(|s| s.name.eq_ignore_ascii_case(&name))
                .map(|s| s.name.clone());
            let hint = match similar {
                Some(other) if other.chars().any(|c| c.is_lowercase()) => format!(
                    "\nDid you mean \"{other}\"? Hint: wrap the source name in double quotes to \
                     make it case-sensitive."
                ),
                Some(other) => format!(
                    "\nDid you mean {other}? Hint: try removing double quotes from the source \
                     name."
                ),
                None => String::new(),
            };
            return Err(EngineError::Statement(format!(
                "Cannot insert values into an unknown stream/table: `{name}`{hint}"
            )));
        };
        drop(state);
        if target.is_source {
            return Err(EngineError::Statement(format!(
                "Cannot insert values into read-only {}: {name}",
                noun(target.kind).to_lowercase()
            )));
        }
        let all: Vec<&Column> = target.schema.keys().chain(target.schema.values()).collect();
        let columns: Vec<String> = if insert.columns.is_empty() {
            all.iter().map(|c| c.name.clone()).collect()
        } else {
            insert.columns.iter().map(|c| c.value.clone()).collect()
        };
        let headers: Vec<&str> = target
            .schema
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Header(_)))
            .map(|c| c.name.as_str())
            .filter(|h| insert.columns.is_empty() || columns.iter().any(|c| c == h))
            .collect();
        if !headers.is_empty() {
            return Err(EngineError::Statement(format!(
                "Cannot insert into HEADER columns: {}",
                headers.join(", ")
            )));
        }
        if let Some(pseudo) = columns
            .iter()
            .find(|c| matches!(c.as_str(), "ROWPARTITION" | "ROWOFFSET"))
        {
            return Err(EngineError::Statement(format!(
                "Inserting into column `{pseudo}` is not allowed."
            )));
        }
        for value in &insert.values {
            let mut qualifier = None;
            let _ = sqlparser::ast::visit_expressions(value, |e| {
                if let sqlparser::ast::Expr::CompoundIdentifier(parts) = e {
                    qualifier = parts.first().map(|p| p.value.clone());
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            });
            if let Some(qualifier) = qualifier {
                return Err(EngineError::Statement(format!(
                    "Failed to prepare statement: '{qualifier}' is not a valid stream/table name \
                     or alias."
                )));
            }
        }
        if !insert.columns.is_empty() && columns.len() != insert.values.len() {
            return Err(EngineError::Statement(format!(
                "Failed to prepare statement: Expected number columns and values to match: {}, {}",
                columns.len(),
                insert.values.len()
            )));
        }
        if columns.len() != insert.values.len() {
            return Err(EngineError::Statement(format!(
                "Expected a value for each column. Expected Columns: [{}]. Got [{}]",
                columns.join(", "),
                insert
                    .values
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let values = self.planner.evaluate_constants(&insert.values).await?;
        let mut timestamp = None;
        let mut by_name = std::collections::HashMap::new();
        for (column, value) in columns.iter().zip(values) {
            if column == "ROWTIME" {
                timestamp = arrow::compute::cast(&value, &arrow::datatypes::DataType::Int64)
                    .ok()
                    .and_then(|v| {
                        use arrow::array::{Array, AsArray};
                        let v = v.as_primitive::<arrow::datatypes::Int64Type>().clone();
                        (!v.is_null(0)).then(|| v.value(0))
                    });
                continue;
            }
            let Some(target_column) = all.iter().find(|c| &c.name == column) else {
                return Err(EngineError::Statement(format!(
                    "Column name {column} does not exist."
                )));
            };
            let cast = to_column_type(&value, &target_column.ty.to_arrow()).map_err(|_| {
                EngineError::Statement(format!(
                    "Expected type {} for field {column} but got {}",
                    target_column.ty,
                    SqlType::from_arrow(value.data_type())
                        .map_or_else(|| value.data_type().to_string(), |t| t.to_string())
                ))
            })?;
            by_name.insert(column.clone(), cast);
        }
        self.produce_row(&target, &by_name, timestamp).await?;
        Ok(done(String::new(), None))
    }

    /// `/inserts-stream`: writes one row, given as a JSON object of column values (names
    /// matched ignoring case; `ROWTIME` sets the record time), to a stream.
    pub async fn insert_json(
        &self,
        target_name: &str,
        row: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), EngineError> {
        let target = self
            .state
            .lock()
            .await
            .catalog
            .source(target_name)
            .cloned()
            .ok_or_else(|| {
                EngineError::Statement(format!(
                    "Cannot insert values into an unknown stream/table: `{target_name}`"
                ))
            })?;
        if target.kind != SourceKind::Stream {
            return Err(EngineError::Statement(format!(
                "Cannot insert into {target_name}: inserts are only supported into streams"
            )));
        }
        if target.is_source {
            return Err(EngineError::Statement(format!(
                "Cannot insert values into read-only stream: {target_name}"
            )));
        }
        let mut timestamp = None;
        let mut by_name = std::collections::HashMap::new();
        for (field, value) in row {
            if field.eq_ignore_ascii_case("ROWTIME") {
                timestamp = Some(value.as_i64().ok_or_else(|| {
                    EngineError::Statement(format!("ROWTIME must be a BIGINT, got {value}"))
                })?);
                continue;
            }
            let writable = || {
                target
                    .schema
                    .columns
                    .iter()
                    .filter(|c| matches!(c.kind, ColumnKind::Key | ColumnKind::Value))
            };
            let column = writable()
                .find(|c| c.name == *field)
                .or_else(|| writable().find(|c| c.name.eq_ignore_ascii_case(field)))
                .ok_or_else(|| {
                    EngineError::Statement(format!("Column name {field} does not exist."))
                })?;
            let mut appender = crate::format::appender::Appender::new(&column.ty, 1);
            crate::format::json::append_json(&mut appender, &column.ty, value).map_err(|e| {
                EngineError::Statement(format!("Invalid value for column {}: {e}", column.name))
            })?;
            by_name.insert(column.name.clone(), appender.finish());
        }
        self.produce_row(&target, &by_name, timestamp).await
    }

    /// Encodes one row (columns by name; missing ones are NULL) with the target's formats
    /// and writes it, acknowledged by every replica (`acks=all`).
    async fn produce_row(
        &self,
        target: &Source,
        by_name: &std::collections::HashMap<String, arrow::array::ArrayRef>,
        timestamp: Option<i64>,
    ) -> Result<(), EngineError> {
        let array_for = |column: &Column| {
            by_name
                .get(&column.name)
                .cloned()
                .unwrap_or_else(|| arrow::array::new_null_array(&column.ty.to_arrow(), 1))
        };
        let keys: Vec<arrow::array::ArrayRef> = target.schema.keys().map(array_for).collect();
        let value_arrays: Vec<arrow::array::ArrayRef> =
            target.schema.values().map(array_for).collect();
        let record = ProducerRecord {
            partition: None,
            timestamp,
            key: crate::format::encode(&target.key_format, &target.key_columns(), &keys, 0)
                .map(bytes::Bytes::from),
            value: crate::format::encode(
                &target.value_format,
                &target.value_columns(),
                &value_arrays,
                0,
            )
            .map(bytes::Bytes::from),
            headers: Vec::new(),
        };
        self.log
            .produce(&target.topic, vec![record], Acks::All)
            .await?;
        Ok(())
    }

    /// Plans `SELECT … GROUP BY …` for a table: the key columns are the grouping
    /// expressions (in `GROUP BY` order), which the projection must include.
    async fn plan_aggregate_query(
        &self,
        catalog: &Catalog,
        query: &riffle_grammar::ast::Query,
        sink_name: Option<&str>,
        properties: &Properties,
    ) -> Result<
        (
            Source,
            Arc<crate::plan::aggregate::AggregatePlan>,
            Columns,
            Columns,
        ),
        EngineError,
    > {
        let input = query_source(catalog, query)?;
        if self.planner.calls_table_function(&query.projection) {
            return Err(EngineError::Statement(
                "Table functions cannot be used with aggregations.".into(),
            ));
        }
        check_aliases(query)?;
        self.check_window_bounds(query)?;
        let star_columns: Vec<String> = input
            .schema
            .keys()
            .chain(input.schema.non_keys())
            .map(|c| c.name.clone())
            .collect();
        self.check_functions_exist(query)?;
        if input.value_format.format == Format::Kafka {
            return Err(EngineError::Statement(format!(
                "Source(s) {} are using the 'KAFKA' value format. This format does not yet \
                 support GROUP BY.",
                input.name
            )));
        }
        crate::plan::grouping::check_grouping(query, &star_columns, &|name| {
            self.planner.is_aggregate_function(name)
        })?;
        if let Some((index, name)) = duplicate_alias(query) {
            // Planned with the later column renamed, for the type ksqlDB's message names.
            let plan = self
                .planner
                .plan_aggregate(&with_alias(query, index, DUPLICATE), &star_columns)
                .await
                .map_err(|error| unresolved_column(error, query))?;
            return Err(duplicate_column(&name, &plan.output_schema));
        }
        let mut plan = self
            .planner
            .plan_aggregate(query, &star_columns)
            .await
            .map_err(|error| unresolved_column(error, query))?;
        // An aggregate whose arguments it cannot take fails the statement, not each record.
        for aggregate in &plan.aggregates {
            if let Err(error) = aggregate.create_accumulator() {
                return Err(EngineError::Statement(
                    crate::plan::PlanError::from(error).to_string(),
                ));
            }
        }
        if input.kind == SourceKind::Table {
            plan.over_table = true;
            check_table_aggregates(&plan)?;
        }
        plan.emission = emission(properties)?;
        if query.emit == Some(riffle_grammar::ast::EmitMode::Final) {
            if plan.windowing.is_none() {
                return Err(EngineError::Statement(
                    "EMIT FINAL is only supported for windowed aggregations.".into(),
                ));
            }
            plan.emit_final = true;
            // Without a GRACE PERIOD, a window emitted when final closes at its end.
            let explicit_grace = match &query.window {
                Some(
                    riffle_grammar::ast::WindowSpec::Tumbling { grace, .. }
                    | riffle_grammar::ast::WindowSpec::Hopping { grace, .. }
                    | riffle_grammar::ast::WindowSpec::Session { grace, .. },
                ) => grace.is_some(),
                None => false,
            };
            if let Some(windowing) = plan.windowing.as_mut().filter(|_| !explicit_grace) {
                windowing.grace = 0;
            }
        }
        // ksqlDB keeps these functions' state as a STRUCT, which DELIMITED cannot hold.
        const STRUCT_STATE: [&str; 4] = ["avg", "stddev_samp", "stddev_sample", "correlation"];
        if input.value_format.format == Format::Delimited
            && plan
                .aggregates
                .iter()
                .any(|a| STRUCT_STATE.contains(&a.fun().name()))
        {
            return Err(EngineError::Statement(
                "One of the functions used in the statement has an intermediate type that the \
                 value format can not handle. Please remove the function or change the format."
                    .into(),
            ));
        }
        let group_names = plan.group_names();
        let user_groups = query.group_by.len();
        let mut keys = vec![None; user_groups];
        let mut values = Vec::new();
        for (column, field) in plan.projection.iter().zip(plan.output_schema.fields()) {
            let ty = SqlType::from_arrow(field.data_type())
                .ok_or_else(|| untyped_column(&column.name, field.data_type(), query))?;
            let group = column
                .source_column
                .as_ref()
                .and_then(|source| group_names[..user_groups].iter().position(|g| g == source));
            match group {
                Some(position) if keys[position].is_none() => {
                    keys[position] = Some((column.name.clone(), ty));
                }
                Some(position) if sink_name.is_some() => {
                    let first = keys[position]
                        .as_ref()
                        .map_or("", |(name, _)| name.as_str());
                    return Err(EngineError::Statement(format!(
                        "The projection contains a key column more than once: `{first}` and \
                         `{}`.",
                        column.name
                    )));
                }
                _ => {
                    if sink_name.is_some()
                        && RESERVED_COLUMNS.contains(&column.name.as_str())
                        && !crate::plan::aggregate::WINDOW_BOUNDS.contains(&column.name.as_str())
                    {
                        return Err(reserved_in_select(&column.name));
                    }
                    values.push((column.name.clone(), ty));
                }
            }
        }
        let missing: Vec<String> = keys
            .iter()
            .zip(&query.group_by)
            .filter(|(key, _)| key.is_none())
            .map(|(_, expr)| expr.to_string())
            .collect();
        if let Some(sink_name) = sink_name
            && !missing.is_empty()
        {
            let listed = match missing.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            };
            return Err(EngineError::Statement(format!(
                "The query used to build `{sink_name}` must include the grouping expression{} \
                 {listed} in its projection (eg, SELECT {}...).",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", ")
            )));
        }
        if sink_name.is_some() && values.is_empty() {
            return Err(EngineError::Statement(
                "The projection contains no value columns.".into(),
            ));
        }
        Ok((
            input,
            Arc::new(plan),
            keys.into_iter().flatten().collect(),
            values,
        ))
    }

    /// Fails, as ksqlDB does, on the first function the query calls that does not exist.
    fn check_functions_exist(&self, query: &riffle_grammar::ast::Query) -> Result<(), EngineError> {
        let mut unknown = None;
        let mut visit = |e: &sqlparser::ast::Expr| {
            if let sqlparser::ast::Expr::Function(function) = e {
                let name = function.name.to_string();
                if !self.planner.has_function(&name) {
                    unknown = Some(name.to_uppercase());
                    return std::ops::ControlFlow::Break(());
                }
            }
            std::ops::ControlFlow::Continue(())
        };
        let _ = sqlparser::ast::visit_expressions(&query.projection, &mut visit);
        for expr in query
            .selection
            .iter()
            .chain(&query.group_by)
            .chain(&query.partition_by)
            .chain(&query.having)
        {
            if sqlparser::ast::visit_expressions(expr, &mut visit).is_break() {
                break;
            }
        }
        match unknown {
            Some(name) => Err(EngineError::Statement(format!(
                "Can't find any functions with the name '{name}'"
            ))),
            None => Ok(()),
        }
    }

    /// The aggregate function calls of a query's projection and `HAVING`, as ksqlDB shows
    /// them (`COUNT(*)` counts `ROWTIME`).
    fn aggregate_calls(&self, query: &riffle_grammar::ast::Query) -> Vec<String> {
        use sqlparser::ast::Expr;
        let mut calls = Vec::new();
        let expressions = crate::plan::grouping::selected_expressions(&query.projection)
            .chain(query.having.as_ref());
        for expr in expressions {
            let _ = sqlparser::ast::visit_expressions(expr, |e| {
                if let Expr::Function(function) = e
                    && self
                        .planner
                        .is_aggregate_function(&function.name.to_string())
                {
                    let call = function.to_string().to_uppercase();
                    calls.push(call.replace("(*)", "(ROWTIME)").replace("()", "(ROWTIME)"));
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        calls
    }

    /// `WINDOWSTART` and `WINDOWEND` are values of a windowed aggregation's output: they
    /// can be selected, not filtered on, grouped by or aggregated.
    fn check_window_bounds(&self, query: &riffle_grammar::ast::Query) -> Result<(), EngineError> {
        use sqlparser::ast::Expr;
        let bound_in = |expr: &Expr| {
            let mut found = None;
            let _ = sqlparser::ast::visit_expressions(expr, |e| {
                if let Expr::Identifier(ident) = e
                    && crate::plan::aggregate::WINDOW_BOUNDS.contains(&ident.value.as_str())
                {
                    found = Some(ident.value.clone());
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            });
            found
        };
        let misplaced = |bound: String| {
            EngineError::Statement(format!(
                "Window bounds column {bound} can only be used in the SELECT clause of windowed \
                 aggregations"
            ))
        };
        // Without a window there are no bounds: selected as they are, they are names the
        // sink cannot have.
        if query.window.is_none() {
            for item in &query.projection {
                if let sqlparser::ast::SelectItem::UnnamedExpr(Expr::Identifier(ident)) = item
                    && crate::plan::aggregate::WINDOW_BOUNDS.contains(&ident.value.as_str())
                {
                    return Err(reserved_in_select(&ident.value));
                }
            }
        }
        if let Some(bound) = query.selection.as_ref().and_then(bound_in) {
            return Err(EngineError::Statement(format!(
                "Error in WHERE expression: Unknown column {bound}."
            )));
        }
        if let Some(bound) = query.group_by.iter().find_map(bound_in) {
            return Err(misplaced(bound));
        }
        if let Some(bound) = query.having.as_ref().and_then(bound_in) {
            return Err(misplaced(bound));
        }
        for expr in crate::plan::grouping::selected_expressions(&query.projection) {
            let mut inside_aggregate = None;
            let _ = sqlparser::ast::visit_expressions(expr, |e| {
                if let Expr::Function(function) = e
                    && self
                        .planner
                        .is_aggregate_function(&function.name.to_string())
                    && let Some(bound) = bound_in(e)
                {
                    inside_aggregate = Some(bound);
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            });
            if let Some(bound) = inside_aggregate {
                return Err(misplaced(bound));
            }
        }
        Ok(())
    }

    /// Plans an aggregation over joined rows: the join (its `WHERE`, every joined column)
    /// writing to an internal source, and the aggregation over that source with the
    /// query's references in joined names. Answers the first joined source (whose formats
    /// the sink defaults to), the plan and the sink's key and value columns.
    async fn plan_join_aggregate_query(
        &self,
        catalog: &Catalog,
        query: &riffle_grammar::ast::Query,
        sink_name: Option<&str>,
        query_id: &str,
        properties: &Properties,
    ) -> Result<
        (
            Source,
            Arc<crate::query::JoinAggregatePlan>,
            Columns,
            Columns,
        ),
        EngineError,
    > {
        use sqlparser::ast::{Expr, SelectItem};
        // ksqlDB resolves the window bounds of the joined rows, which have none.
        for item in &query.projection {
            if let SelectItem::UnnamedExpr(Expr::Identifier(ident))
            | SelectItem::ExprWithAlias {
                expr: Expr::Identifier(ident),
                ..
            } = item
                && crate::plan::aggregate::WINDOW_BOUNDS.contains(&ident.value.as_str())
            {
                return Err(EngineError::Statement(format!(
                    "SELECT column '{}' cannot be resolved.",
                    ident.value
                )));
            }
        }
        let mut projection = vec![SelectItem::Wildcard(Default::default())];
        projection.extend(joined_pseudo_columns(query));
        let join_query = riffle_grammar::ast::Query {
            projection,
            from: query.from.clone(),
            window: None,
            selection: query.selection.clone(),
            group_by: Vec::new(),
            partition_by: Vec::new(),
            having: None,
            emit: None,
            limit: None,
        };
        let (left, join, join_keys, join_values) = self
            .plan_join_query(catalog, &join_query, sink_name)
            .await?;
        let key_format = match join_keys.is_empty() {
            true => FormatSpec::new(Format::None),
            false => FormatSpec::new(Format::Json),
        }
        .with_wrap_single(false);
        let value_format = FormatSpec::new(Format::Json).with_wrap_single(true);
        let joined = Source {
            name: format!("{query_id}_JOINED"),
            kind: join.kind,
            schema: LogicalSchema::from_key_and_value_columns(&join_keys, &join_values),
            topic: crate::query::joined_rows_topic(query_id),
            key_format: key_format.clone(),
            value_format: value_format.clone(),
            timestamp: None,
            timestamp_format: None,
            is_source: false,
            created_by_query: true,
            partitions: Some(1),
            statement: String::new(),
            window: None,
            declared_key_format: None,
        };
        let aggregation = join
            .aggregation_over_joined(query, &joined.name)
            .map_err(|error| unresolved_column(error, query))?;
        let mut scoped = catalog.clone();
        scoped.insert_source(joined.clone());
        self.planner
            .register_source(&joined.name, joined.arrow_schema())?;
        let planned = self
            .plan_aggregate_query(&scoped, &aggregation, sink_name, properties)
            .await;
        self.planner.deregister_source(&joined.name)?;
        let (_, aggregate, keys, values) = planned?;
        let plan = crate::query::JoinAggregatePlan {
            join,
            join_encoder: SinkEncoder {
                key_columns: join_keys,
                value_columns: join_values,
                key_format,
                value_format,
                timestamp_column: None,
                window: None,
                partitions: None,
                keeps_input_key: false,
            },
            joined,
            aggregate,
        };
        Ok((left, Arc::new(plan), keys, values))
    }

    /// Plans a query with joins and splits its output into key and value columns: the
    /// first selected join key column (or synthetic key) is the key.
    async fn plan_join_query(
        &self,
        catalog: &Catalog,
        query: &riffle_grammar::ast::Query,
        sink_name: Option<&str>,
    ) -> Result<(Source, Arc<crate::plan::join::JoinPlan>, Columns, Columns), EngineError> {
        use crate::plan::join::JoinKey;
        self.check_functions_exist(query)?;
        let mut sources = Vec::new();
        for source in
            std::iter::once(&query.from.source).chain(query.from.joins.iter().map(|j| &j.source))
        {
            let name = &source.name.value;
            sources.push(catalog.source(name).cloned().ok_or_else(|| {
                EngineError::Statement(format!(
                    "Exception while preparing statement: {name} does not exist."
                ))
            })?);
        }
        check_aliases(query)?;
        let plan = self
            .planner
            .plan_join(query, sources)
            .await
            .map_err(|error| unresolved_column(error, query))?;
        if !plan.partition_keys.is_empty() {
            let mut keys = vec![None; plan.partition_keys.len()];
            let mut values = Vec::new();
            for (index, (column, field)) in plan
                .output
                .projection
                .iter()
                .zip(plan.output.output_schema.fields())
                .enumerate()
            {
                let ty = SqlType::from_arrow(field.data_type())
                    .ok_or_else(|| untyped_column(&column.name, field.data_type(), query))?;
                match plan.partition_keys.iter().position(|k| *k == index) {
                    Some(position) => keys[position] = Some((column.name.clone(), ty)),
                    None => values.push((column.name.clone(), ty)),
                }
            }
            let keys = keys.into_iter().flatten().collect();
            return Ok((plan.inputs[0].source.clone(), Arc::new(plan), keys, values));
        }
        if let JoinKey::LeftTable(table, left_keys) = &plan.key {
            return foreign_key_columns(&plan, table, left_keys, sink_name, query).map(
                |(keys, values)| {
                    (
                        plan.inputs[0].source.clone(),
                        Arc::new(plan.clone()),
                        keys,
                        values,
                    )
                },
            );
        }
        let candidates: Vec<(String, String)> = match &plan.key {
            JoinKey::Synthetic(name) => vec![(name.clone(), name.clone())],
            JoinKey::Columns(columns) => columns.clone(),
            JoinKey::LeftTable(..) => Vec::new(),
        };
        // The key is the first join key column (left source first) that is selected.
        let key: Option<String> = candidates
            .iter()
            .map(|(c, _)| c)
            .find(|c| {
                plan.output
                    .projection
                    .iter()
                    .any(|p| p.source_column.as_ref() == Some(c))
            })
            .cloned();
        let mut key_aliases = Vec::new();
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for (column, field) in plan
            .output
            .projection
            .iter()
            .zip(plan.output.output_schema.fields())
        {
            if sink_name.is_some() && RESERVED_COLUMNS.contains(&column.name.as_str()) {
                return Err(reserved_in_select(&column.name));
            }
            let ty = SqlType::from_arrow(field.data_type())
                .ok_or_else(|| untyped_column(&column.name, field.data_type(), query))?;
            if key.is_some() && column.source_column == key {
                if key_aliases.is_empty() {
                    keys.push((column.name.clone(), ty));
                }
                key_aliases.push(column.name.clone());
            } else {
                values.push((column.name.clone(), ty));
            }
        }
        let Some(sink_name) = sink_name else {
            return Ok((plan.inputs[0].source.clone(), Arc::new(plan), keys, values));
        };
        if key_aliases.len() > 1 {
            key_aliases.sort();
            return Err(EngineError::Statement(format!(
                "The projection contains a key column (`{}`) more than once, aliased as: {}.",
                key.unwrap_or_default(),
                key_aliases.join(" and ")
            )));
        }
        if key.is_none() {
            return Err(EngineError::Statement(match &plan.key {
                JoinKey::LeftTable(..) => String::new(),
                JoinKey::Synthetic(name) => format!(
                    "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n\
                     The query used to build `{sink_name}` must include the join expression \
                     {name} in its projection (eg, SELECT {name}...).\n{name} was added as a \
                     synthetic key column because the join criteria did not match any source \
                     column. This expression must be included in the projection and may be \
                     aliased. "
                ),
                JoinKey::Columns(columns) => {
                    let written: Vec<&str> = columns.iter().map(|(_, w)| w.as_str()).collect();
                    format!(
                        "The query used to build `{sink_name}` must include the join \
                         expression{} {} in its projection (eg, SELECT {}...).",
                        if written.len() > 1 { "s" } else { "" },
                        written.join(" or "),
                        written.first().copied().unwrap_or_default()
                    )
                }
            }));
        }
        if values.is_empty() {
            return Err(EngineError::Statement(
                "The projection contains no value columns.".into(),
            ));
        }
        Ok((plan.inputs[0].source.clone(), Arc::new(plan), keys, values))
    }

    /// Plans a query over one source and splits its output into key and value columns.
    ///
    /// The sink's key columns keep the source's key order, and every key must be selected;
    /// with `ksql.new.query.planner.enabled` they follow the projection and may be left
    /// out (the sink is then keyless), as ksqlDB's newer planner does.
    async fn plan_query(
        &self,
        catalog: &Catalog,
        query: &riffle_grammar::ast::Query,
        sink_name: Option<&str>,
        properties: &Properties,
    ) -> Result<
        (
            Source,
            crate::plan::StatelessPlan,
            Vec<(String, SqlType)>,
            Vec<(String, SqlType)>,
        ),
        EngineError,
    > {
        let input = query_source(catalog, query)?;
        if input.kind == SourceKind::Table && self.planner.calls_table_function(&query.projection) {
            return Err(EngineError::Statement(
                "Table source is not supported with table functions".into(),
            ));
        }
        let partitioned = !query.partition_by.is_empty();
        let non_keys = input.schema.non_keys();
        // With PARTITION BY, `*` lists the old keys after the values, as ksqlDB does.
        let star_columns: Vec<String> = if partitioned {
            non_keys
                .chain(input.schema.keys())
                .map(|c| c.name.clone())
                .collect()
        } else {
            // A push query over a windowed source shows the window after the key.
            let bounds = input
                .window
                .filter(|_| sink_name.is_none())
                .map(|_| crate::plan::aggregate::WINDOW_BOUNDS)
                .into_iter()
                .flatten()
                .map(str::to_string);
            input
                .schema
                .keys()
                .map(|c| c.name.clone())
                .chain(bounds)
                .chain(non_keys.map(|c| c.name.clone()))
                .collect()
        };
        let (query, partition_keys) = if partitioned {
            partition_by_keys(query, &star_columns, &input, sink_name)?
        } else {
            (query.clone(), Vec::new())
        };
        let query = &query;
        check_aliases(query)?;
        if let Some((index, name)) = duplicate_alias(query) {
            let plan = self
                .planner
                .plan_stateless(&with_alias(query, index, DUPLICATE), &star_columns)
                .await
                .map_err(|error| unresolved_column(error, query))?;
            return Err(duplicate_column(&name, &plan.output_schema));
        }
        let plan = self
            .planner
            .plan_stateless(query, &star_columns)
            .await
            .map_err(|error| unresolved_column(error, query))?;
        let key_names: Vec<String> = input.schema.keys().map(|c| c.name.clone()).collect();
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut partition_key_columns = vec![None; partition_keys.len()];
        for (index, (column, field)) in plan
            .projection
            .iter()
            .zip(plan.output_schema.fields())
            .enumerate()
        {
            // A PARTITION BY key may be named after a pseudo column (`PARTITION BY ROWTIME`).
            // A transient query may show pseudo columns; a sink cannot have them.
            let partition_key = partition_keys.contains(&index);
            if sink_name.is_some()
                && RESERVED_COLUMNS.contains(&column.name.as_str())
                && !partition_key
            {
                return Err(reserved_in_select(&column.name));
            }
            let ty = SqlType::from_arrow(field.data_type())
                .ok_or_else(|| untyped_column(&column.name, field.data_type(), query))?;
            if partitioned {
                match partition_keys.iter().position(|k| *k == index) {
                    Some(position) => {
                        partition_key_columns[position] = Some((column.name.clone(), ty))
                    }
                    None => values.push((column.name.clone(), ty)),
                }
                continue;
            }
            let is_key = column
                .source_column
                .as_ref()
                .is_some_and(|source| key_names.contains(source));
            if is_key {
                keys.push((column.name.clone(), ty));
            } else {
                values.push((column.name.clone(), ty));
            }
        }
        if sink_name.is_some() && !partitioned {
            for key in &key_names {
                let aliases: Vec<&str> = plan
                    .projection
                    .iter()
                    .filter(|c| c.source_column.as_ref() == Some(key))
                    .map(|c| c.name.as_str())
                    .collect();
                if let Some((last, init @ [_, ..])) = aliases.split_last() {
                    let init = init.join(", ");
                    return Err(EngineError::Statement(format!(
                        "The projection contains a key column (`{key}`) more than once, \
                         aliased as: {init} and {last}."
                    )));
                }
            }
        }
        let new_planner = properties
            .get("ksql.new.query.planner.enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !new_planner && !partitioned {
            let source_position = |name: &String| {
                let source = plan
                    .projection
                    .iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| c.source_column.as_ref());
                key_names.iter().position(|k| Some(k) == source)
            };
            keys.sort_by_key(|(name, _)| source_position(name));
        }
        keys.extend(partition_key_columns.into_iter().flatten());
        let missing: Vec<&String> = key_names
            .iter()
            .filter(|_| !partitioned && !new_planner)
            .filter(|key| {
                !plan
                    .projection
                    .iter()
                    .any(|c| c.source_column.as_ref() == Some(*key))
            })
            .collect();
        if let Some(sink_name) = sink_name
            && !missing.is_empty()
        {
            // ksqlDB names every key column, not only the missing ones.
            let names: Vec<&str> = key_names.iter().map(|k| k.as_str()).collect();
            let listed = match names.split_last() {
                Some((last, [])) => last.to_string(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            };
            return Err(EngineError::Statement(format!(
                "The query used to build `{sink_name}` must include the key column{} {listed} \
                 in its projection (eg, SELECT {}...).",
                if names.len() > 1 { "s" } else { "" },
                names.join(", ")
            )));
        }
        if sink_name.is_some() && values.is_empty() {
            return Err(EngineError::Statement(
                "The projection contains no value columns.".into(),
            ));
        }
        Ok((input, plan, keys, values))
    }

    async fn drop_source(&self, drop: &DropSource) -> Result<StatementResult, EngineError> {
        let mut state = self.state.lock().await;
        let name = drop.name.value.clone();
        let Some(source) = state.catalog.source(&name).cloned() else {
            if drop.if_exists {
                return Ok(done(format!("Source `{name}` does not exist."), None));
            }
            return Err(EngineError::Statement(format!(
                "{} {name} does not exist.",
                noun(drop.kind)
            )));
        };
        // A source table's own materialization goes with it.
        let materializes =
            |q: &PersistentQuery| q.spec.sink_topic.is_none() && q.spec.sink_name == name;
        let readers: Vec<String> = state
            .queries
            .values()
            .filter(|q| q.spec.reads(&name) && !materializes(q))
            .map(|q| q.id().to_string())
            .collect();
        let writers: Vec<String> = state
            .queries
            .values()
            .filter(|q| {
                q.spec.sink_topic.as_ref() == Some(&source.topic) && q.spec.source.name != name
            })
            .map(|q| q.id().to_string())
            .collect();
        if !readers.is_empty() || !writers.is_empty() {
            return Err(EngineError::Statement(format!(
                "Cannot drop {name}.\nThe following queries read from this source: [{}].\n\
                 The following queries write into this source: [{}].\nYou need to terminate \
                 them before dropping {name}.",
                readers.join(", "),
                writers.join(", ")
            )));
        }
        if drop.delete_topic && source.is_source {
            return Err(EngineError::Statement(format!(
                "Cannot delete topic for read-only source: {name}"
            )));
        }
        let materialization: Vec<String> = state
            .queries
            .values()
            .filter(|q| materializes(q))
            .map(|q| q.id().to_string())
            .collect();
        for id in materialization {
            if let Some(query) = state.queries.remove(&id) {
                query.stop().await;
            }
        }
        state.catalog.remove_source(&name);
        self.planner.deregister_source(&name)?;
        if drop.delete_topic {
            self.log.delete_topic(&source.topic).await?;
        }
        Ok(done(
            format!("Source `{name}` (topic: {}) was dropped.", source.topic),
            None,
        ))
    }

    /// `ASSERT [NOT EXISTS] TOPIC name [WITH (PARTITIONS=n)] [TIMEOUT t]`: waits up to the
    /// timeout (`ksql.assert.topic.default.timeout.ms`, 1 s by default) for the topic to
    /// exist (or not), checking its partition count when one is given.
    async fn assert_topic(
        &self,
        assert: &riffle_grammar::ast::AssertTopic,
        properties: &Properties,
    ) -> Result<StatementResult, EngineError> {
        let topic = assert.topic.value.clone();
        let timeout_ms = assert.timeout.as_ref().map_or_else(
            || {
                properties
                    .get("ksql.assert.topic.default.timeout.ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1_000)
            },
            |t| t.as_millis(),
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
        let wanted = crate::catalog::properties::SourceProperties::from_ast(&assert.properties)
            .map_err(EngineError::Statement)?
            .partitions;
        loop {
            // An unquoted name is upper-cased by the parser; topics are usually lower case,
            // so a topic matching it but for case is the one meant.
            let topics = self.log.list_topics().await?;
            let topic = topics
                .iter()
                .find(|t| **t == topic)
                .or_else(|| topics.iter().find(|t| t.eq_ignore_ascii_case(&topic)))
                .cloned()
                .unwrap_or_else(|| topic.clone());
            let partitions = match self.log.describe_topic(&topic).await {
                Ok(description) => Some(description.partitions.len()),
                Err(LogError::UnknownTopic(_)) => None,
                Err(other) => return Err(other.into()),
            };
            let held = partitions.is_some() != assert.not_exists;
            if held {
                if let (Some(found), Some(wanted), false) = (partitions, wanted, assert.not_exists)
                    && found != wanted as usize
                {
                    return Err(EngineError::Assertion(format!(
                        "Mismatched configuration for topic {topic}: For config partitions, \
                         expected {wanted} got {found}"
                    )));
                }
                return Ok(StatementResult::AssertTopic {
                    topic,
                    exists: !assert.not_exists,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Assertion(if assert.not_exists {
                    format!("Topic {topic} exists")
                } else {
                    format!("Topic {topic} does not exist")
                }));
            }
            // The log announces no topic creations: look again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `ALTER STREAM|TABLE … ADD COLUMN …`: new value columns on a declared source.
    async fn alter_source(&self, alter: &AlterSource) -> Result<StatementResult, EngineError> {
        let mut state = self.state.lock().await;
        let name = alter.name.value.clone();
        let kind = noun(alter.kind).to_lowercase();
        let Some(mut source) = state.catalog.source(&name).cloned() else {
            return Err(EngineError::Statement(format!(
                "Source {name} does not exist."
            )));
        };
        if source.kind != alter.kind {
            return Err(EngineError::Statement(format!(
                "Incompatible data source type is {}, but statement was ALTER {}",
                noun(source.kind).to_uppercase(),
                noun(alter.kind).to_uppercase()
            )));
        }
        if source.is_source {
            return Err(EngineError::Statement(format!(
                "Cannot alter {kind} '{name}': ALTER operations are not supported on source \
                 {kind}s."
            )));
        }
        if source.created_by_query {
            return Err(EngineError::Statement(
                "ALTER command is not supported for CREATE ... AS statements.".into(),
            ));
        }
        let catalog = &state.catalog;
        let added = LogicalSchema::from_column_defs(&alter.add_columns, &|alias| {
            catalog.resolve_type(alias)
        })
        .map_err(|e| EngineError::Statement(e.0))?;
        for column in added.columns {
            if source.schema.column(&column.name).is_some() {
                return Err(EngineError::Statement(format!(
                    "Cannot add column `{}` to schema. A column with the same name already \
                     exists.",
                    column.name
                )));
            }
            source.schema.columns.push(Column {
                kind: ColumnKind::Value,
                ..column
            });
        }
        self.planner
            .register_source(&source.name, source.arrow_schema())?;
        state.catalog.insert_source(source);
        Ok(done(format!("{} altered", noun(alter.kind)), None))
    }

    async fn terminate(&self, target: &QueryTarget) -> Result<StatementResult, EngineError> {
        let mut state = self.state.lock().await;
        for id in find_queries(&state, target)? {
            state.paused.remove(&id);
            if let Some(query) = state.queries.remove(&id) {
                query.stop().await;
                // Its state goes with it, as ksqlDB deletes a terminated query's internal
                // topics.
                crate::query::delete_internal_topics(&*self.log, &id).await?;
            }
        }
        Ok(done("Query terminated.".into(), None))
    }

    /// Starts a transient query: a push query (`EMIT CHANGES`) follows its source until
    /// closed or its `LIMIT`; a pull query over a stream reads what the stream holds now.
    pub async fn query(
        &self,
        sql: &str,
        properties: &Properties,
    ) -> Result<TransientQuery, EngineError> {
        let statement = riffle_grammar::parse_statement(sql)?;
        let Statement::Query(query) = statement else {
            return Err(EngineError::Statement(
                "Only SELECT statements can run as queries; send other statements to /ksql".into(),
            ));
        };
        if query.emit.is_none() {
            check_pull_query(&query)?;
            let limits_enabled = properties
                .get("ksql.query.pull.limit.clause.enabled")
                .is_none_or(|enabled| !enabled.eq_ignore_ascii_case("false"));
            if query.limit.is_some() && !limits_enabled {
                return Err(EngineError::Statement(
                    "LIMIT clause in pull queries is currently disabled. You can enable them by \
                     setting ksql.query.pull.limit.clause.enabled=true. See \
                     https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended \
                     to issue a push query."
                        .into(),
                ));
            }
        }
        let mut state = self.state.lock().await;
        let aggregating = !query.group_by.is_empty()
            || query.window.is_some()
            || !self.aggregate_calls(&query).is_empty();
        if query.is_push() && (aggregating || !query.from.joins.is_empty()) {
            state.next_transient += 1;
            // Named after its first source (the internal topic of an aggregation over a
            // join is named after the query).
            let first = &query.from.source.name.value;
            let first = state.catalog.source(first).map_or(first, |s| &s.name);
            let id = format!("transient_{first}_{}", state.next_transient);
            let joining = !query.from.joins.is_empty();
            let (source, plan, key_columns, value_columns, window) = if aggregating && joining {
                let query = with_collection_limits(&query, properties);
                let (source, plan, keys, values) = self
                    .plan_join_aggregate_query(&state.catalog, &query, None, &id, properties)
                    .await?;
                let window = plan.aggregate.windowing.map(|w| w.kind);
                (
                    source,
                    StatefulPlan::JoinAggregate(plan),
                    keys,
                    values,
                    window,
                )
            } else if aggregating {
                let query = with_collection_limits(&query, properties);
                let (source, plan, keys, values) = self
                    .plan_aggregate_query(&state.catalog, &query, None, properties)
                    .await?;
                let window = plan.windowing.map(|w| w.kind);
                (source, StatefulPlan::Aggregate(plan), keys, values, window)
            } else {
                let (source, plan, keys, values) =
                    self.plan_join_query(&state.catalog, &query, None).await?;
                (source, StatefulPlan::Join(plan), keys, values, None)
            };
            drop(state);
            let spec = QuerySpec {
                id,
                statement: sql.to_string(),
                sink_name: String::new(),
                encoder: SinkEncoder {
                    key_columns,
                    value_columns,
                    key_format: source.key_format.clone(),
                    value_format: source.value_format.clone(),
                    timestamp_column: None,
                    window,
                    partitions: None,
                    keeps_input_key: false,
                },
                source,
                plan: match &plan {
                    StatefulPlan::Aggregate(plan) => QueryPlan::Aggregate(plan.clone()),
                    StatefulPlan::Join(plan) => QueryPlan::Join(plan.clone()),
                    StatefulPlan::JoinAggregate(plan) => QueryPlan::JoinAggregate(plan.clone()),
                },
                sink_topic: None,
                start: start_position(properties),
                options: task_options(properties)?,
            };
            return Ok(TransientQuery::start_stateful(
                self.log.clone(),
                spec,
                plan,
                query.limit,
                self.processing_log.clone(),
            )
            .await?);
        }
        let (source, plan, _, _) = self
            .plan_query(&state.catalog, &query, None, &Properties::new())
            .await?;
        let mode = match query.emit {
            Some(riffle_grammar::ast::EmitMode::Changes) => Mode::Push,
            Some(riffle_grammar::ast::EmitMode::Final) => {
                return Err(EngineError::Unsupported("EMIT FINAL".into()));
            }
            None if source.kind == SourceKind::Table => {
                drop(state);
                let scans = properties
                    .get("ksql.query.pull.table.scan.enabled")
                    .is_none_or(|enabled| !enabled.eq_ignore_ascii_case("false"));
                crate::plan::key_conditions::check_key_conditions(
                    query.selection.as_ref(),
                    &source.key_columns(),
                    scans,
                )
                .map_err(EngineError::Statement)?;
                return self.pull_table(&query, source).await;
            }
            None => Mode::Pull,
        };
        state.next_transient += 1;
        let id = format!("transient_{}_{}", source.name, state.next_transient);
        drop(state);
        Ok(TransientQuery::start(
            self.log.clone(),
            id,
            source,
            plan,
            mode,
            start_position(properties),
            query.limit,
            self.processing_log.clone(),
        )
        .await?)
    }

    /// A pull query over a table an aggregation materializes: DataFusion over its rows.
    async fn pull_table(
        &self,
        query: &riffle_grammar::ast::Query,
        source: Source,
    ) -> Result<TransientQuery, EngineError> {
        let mut state = self.state.lock().await;
        let materialized = state
            .queries
            .values()
            .filter(|q| q.spec.sink_name == source.name)
            .find_map(|q| q.materialized())
            .ok_or_else(|| {
                EngineError::Statement(format!(
                    "The `{0}` table isn't queryable. To derive a queryable table, you can do \
                     'CREATE TABLE QUERYABLE_{0} AS SELECT * FROM {0}'. See \
                     https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended \
                     to issue a push query.",
                    source.name
                ))
            })?;
        state.next_transient += 1;
        let id = format!("query_{}", state.next_transient);
        drop(state);
        let keys = materialized.key_names();
        let star_columns: Vec<String> = materialized
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|name| name != "ROWTIME")
            .collect();
        // `WHERE key = literal` reads the key's row only; anything else reads every row.
        let rows = key_literal(query, &keys)
            .and_then(|key| materialized.lookup(&[key.as_str()]))
            .unwrap_or_else(|| materialized.snapshot());
        if let Some((index, name)) = duplicate_alias(query) {
            let (planned, _) = self
                .planner
                .pull(
                    &with_alias(query, index, DUPLICATE),
                    rows.slice(0, 0),
                    &star_columns,
                )
                .await
                .map_err(|error| unresolved_column(error, query))?;
            return Err(duplicate_column(&name, &planned));
        }
        let (schema, batches) = self
            .planner
            .pull(query, rows, &star_columns)
            .await
            .map_err(|error| unresolved_column(error, query))?;
        let headers = source
            .schema
            .headers()
            .filter(|c| schema.field_with_name(&c.name).is_ok())
            .map(|c| {
                let declared = match &c.kind {
                    ColumnKind::Header(Some(key)) => format!("HEADER('{key}')"),
                    _ => "HEADERS".to_string(),
                };
                (c.name.clone(), declared)
            })
            .collect();
        Ok(TransientQuery::finished(id, schema, batches, keys, headers))
    }

    /// `PRINT topic`: the topic's records as text lines until the `LIMIT` or until dropped.
    /// An unquoted topic name matches a topic whose name differs only in case.
    pub async fn print(&self, sql: &str) -> Result<TopicPrint, EngineError> {
        let statement = riffle_grammar::parse_statement(sql)?;
        let Statement::Print(print) = statement else {
            return Err(EngineError::Statement("Expected a PRINT statement".into()));
        };
        let topics = self.log.list_topics().await?;
        let wanted = &print.topic.value;
        let topic = topics
            .iter()
            .find(|t| *t == wanted)
            .or_else(|| {
                let mut similar = topics.iter().filter(|t| t.eq_ignore_ascii_case(wanted));
                match (similar.next(), similar.next()) {
                    (Some(only), None) if print.topic.quote_style.is_none() => Some(only),
                    _ => None,
                }
            })
            .ok_or_else(|| {
                EngineError::Statement(format!(
                    "Could not find topic '{wanted}', or the KSQL user does not have \
                     permissions to list the topic. Topic names are case-sensitive.\nTo print \
                     a case-sensitive topic apply quotations, for example: print 'topic';"
                ))
            })?;
        let mut state = self.state.lock().await;
        state.next_transient += 1;
        let id = format!("print_{topic}_{}", state.next_transient);
        drop(state);
        let options = PrintOptions {
            from_beginning: print.from_beginning,
            interval: print.interval,
            limit: print.limit,
        };
        Ok(TopicPrint::start(self.log.clone(), id, topic, options).await?)
    }

    /// Makes an aggregate function callable by statements (the conformance runner registers
    /// ksqlDB's test-only functions this way; the shipped server never does).
    pub fn register_aggregate_function(&self, udaf: datafusion::logical_expr::AggregateUDF) {
        self.planner.register_aggregate(udaf);
    }

    /// Makes a scalar function callable by statements (the conformance runner's test-only
    /// functions; the shipped server never does).
    pub fn register_scalar_function(&self, udf: datafusion::logical_expr::ScalarUDF) {
        self.planner.register_scalar(udf);
    }

    /// Makes a table function callable (`udf` answers the array of rows of each call).
    pub fn register_table_function(&self, udf: datafusion::logical_expr::ScalarUDF) {
        self.planner.register_table_function(udf);
    }

    /// The persistent queries' ids with the topic each reads.
    pub async fn persistent_query_ids(&self) -> Vec<(String, String)> {
        let state = self.state.lock().await;
        state
            .queries
            .values()
            .map(|q| (q.id().to_string(), q.spec.source.topic.clone()))
            .collect()
    }

    /// Waits until every running query has processed what its sources hold now, or has
    /// stopped on an error; fails with the first such error.
    pub async fn wait_until_caught_up(&self) -> Result<(), EngineError> {
        let state = self.state.lock().await;
        // A query may read what another writes: passes repeat until one ends with no
        // query's input grown since it was waited for.
        loop {
            let mut first_error = None;
            let mut waited = Vec::new();
            for query in state.queries.values() {
                if matches!(query.state(), QueryState::Paused | QueryState::Stopped) {
                    continue;
                }
                let ends = self.input_ends(query).await?;
                if let Err(error) = query.wait_for(&ends).await {
                    first_error.get_or_insert(EngineError::Statement(error));
                }
                waited.push((query, ends));
            }
            if let Some(error) = first_error {
                return Err(error);
            }
            let mut grown = false;
            for (query, ends) in waited {
                grown |= self.input_ends(query).await? != ends;
            }
            if !grown {
                return Ok(());
            }
        }
    }

    /// The end offsets of every partition of a query's inputs, now.
    async fn input_ends(
        &self,
        query: &PersistentQuery,
    ) -> Result<crate::query::Progress, EngineError> {
        let mut ends = crate::query::Progress::new();
        for (input, source) in query.spec.inputs().into_iter().enumerate() {
            let description = self.log.describe_topic(&source.topic).await?;
            ends.extend(
                description
                    .partitions
                    .iter()
                    .map(|p| ((input, p.partition), p.end_offset)),
            );
        }
        Ok(ends)
    }

    /// Stops every query, then the processing log's writer.
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        for (_, query) in std::mem::take(&mut state.queries) {
            query.stop().await;
        }
        self.processing_log.close().await;
    }
}

/// The topic the processing log writes to.
pub const PROCESSING_LOG_TOPIC: &str = "default_ksql_processing_log";

/// The topic that keeps every accepted statement that changes the catalog.
pub const COMMAND_TOPIC: &str = "_riffle_default_command_topic";

/// A command topic record.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Command {
    statement: String,
    properties: Properties,
}

/// Whether a statement is replayed at start.
fn changes_catalog(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateSource(_)
            | Statement::CreateAsSelect(_)
            | Statement::InsertInto(_)
            | Statement::DropSource(_)
            | Statement::Terminate(_)
            | Statement::Pause(_)
            | Statement::Resume(_)
            | Statement::CreateType(_)
            | Statement::DropType(_)
            | Statement::AlterSource(_)
    )
}

/// The pseudo columns an aggregation over joined rows reads from one side (`P.ROWTIME`),
/// which `*` does not carry: each as a column of the joined rows named as the join names it
/// (`P.ROWTIME AS P_ROWTIME`).
fn joined_pseudo_columns(query: &riffle_grammar::ast::Query) -> Vec<sqlparser::ast::SelectItem> {
    use sqlparser::ast::{Expr, Ident, SelectItem};
    let sources: Vec<&riffle_grammar::ast::SourceRef> = std::iter::once(&query.from.source)
        .chain(query.from.joins.iter().map(|j| &j.source))
        .collect();
    let mut items: Vec<SelectItem> = Vec::new();
    let mut collect = |expr: &Expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && let [qualifier, column] = parts.as_slice()
            && crate::catalog::PSEUDO_COLUMNS
                .iter()
                .any(|(name, _)| *name == column.value)
        {
            let source = sources
                .iter()
                .find(|s| s.alias.as_ref().is_some_and(|a| a.value == qualifier.value))
                .or_else(|| sources.iter().find(|s| s.name.value == qualifier.value));
            if let Some(source) = source {
                let alias = &source.alias.as_ref().unwrap_or(&source.name).value;
                let item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::new(crate::plan::join::joined_name(alias, &column.value)),
                };
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    };
    for item in &query.projection {
        let _ = sqlparser::ast::visit_expressions(item, &mut collect);
    }
    for expr in query.group_by.iter().chain(&query.having) {
        let _ = sqlparser::ast::visit_expressions(expr, &mut collect);
    }
    items
}

/// DataFusion's "No field named …" in ksqlDB's words: which clause names the column.
fn unresolved_column(error: PlanError, query: &riffle_grammar::ast::Query) -> EngineError {
    let PlanError::Plan(message) = &error else {
        return error.into();
    };
    let Some(rest) = message.split("No field named ").nth(1) else {
        return error.into();
    };
    let name = rest
        .split(['\n', ' '])
        .next()
        .unwrap_or(rest)
        .replace('"', "")
        .trim_end_matches('.')
        .to_string();
    let bare = name.rsplit('.').next().unwrap_or(&name);
    let in_where = query
        .selection
        .as_ref()
        .is_some_and(|w| w.to_string().contains(bare));
    let clause = if in_where { "WHERE" } else { "SELECT" };
    EngineError::Statement(format!("{clause} column '{name}' cannot be resolved."))
}

/// Rewrites a `PARTITION BY` query so that each partitioning expression is a projected
/// column, and says which: an expression already selected (by its text) is that column,
/// any other is added. `*` is expanded first so that `PARTITION BY NAME` finds `NAME` in
/// it. `PARTITION BY NULL` has no key columns.
fn partition_by_keys(
    query: &riffle_grammar::ast::Query,
    star_columns: &[String],
    input: &Source,
    sink_name: Option<&str>,
) -> Result<(riffle_grammar::ast::Query, Vec<usize>), EngineError> {
    use sqlparser::ast::{Expr, Ident, SelectItem, Value};
    let mut query = query.clone();
    let mut projection = Vec::with_capacity(query.projection.len());
    // With `*`, a partitioning expression that is not selected is added as a key column;
    // otherwise a persistent query must select it.
    let starred = query
        .projection
        .iter()
        .any(|item| matches!(item, SelectItem::Wildcard(_)));
    for item in query.projection.drain(..) {
        match item {
            SelectItem::Wildcard(_) => projection.extend(
                star_columns
                    .iter()
                    .map(|name| SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(name)))),
            ),
            other => projection.push(other),
        }
    }
    fn bare(expr: &Expr) -> &Expr {
        match expr {
            Expr::Nested(inner) => bare(inner),
            other => other,
        }
    }
    let is_null = |expr: &Expr| matches!(bare(expr), Expr::Value(v) if v.value == Value::Null);
    if query.partition_by.len() > 1 && query.partition_by.iter().any(is_null) {
        return Err(EngineError::Statement(
            "Cannot PARTITION BY multiple columns including NULL".into(),
        ));
    }
    check_partition_columns(&query.partition_by, input)?;
    // Expressions compare by text, identifiers by name (however they are quoted).
    let canonical = |expr: &Expr| match bare(expr) {
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    };
    let mut keys = Vec::new();
    let mut missing = Vec::new();
    for expr in &query.partition_by {
        if is_null(expr) {
            continue;
        }
        let text = canonical(expr);
        let found: Vec<usize> = projection
            .iter()
            .enumerate()
            .filter(|(_, item)| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    canonical(e) == text
                }
                _ => false,
            })
            .map(|(index, _)| index)
            .collect();
        if found.len() > 1 && sink_name.is_some() {
            let mut names: Vec<String> = found
                .iter()
                .map(|&index| match &projection[index] {
                    SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                    _ => text.clone(),
                })
                .collect();
            names.sort();
            return Err(EngineError::Statement(format!(
                "The projection contains a key column (`{text}`) more than once, aliased as: {}.",
                names.join(" and ")
            )));
        }
        match found.first() {
            Some(&index) => keys.push(index),
            None if sink_name.is_some() && !starred => missing.push(()),
            None => {
                projection.push(SelectItem::UnnamedExpr(expr.clone()));
                keys.push(projection.len() - 1);
            }
        }
    }
    if let Some(sink_name) = sink_name
        && !missing.is_empty()
    {
        // ksqlDB names every partitioning expression when one is missing.
        let missing: Vec<String> = query
            .partition_by
            .iter()
            .map(|expr| qualified_text(bare(expr), input))
            .collect();
        return Err(EngineError::Statement(format!(
            "The query used to build `{sink_name}` must include the partitioning expression{} \
             {} in its projection (eg, SELECT {}...).",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(" and "),
            missing.join(", ")
        )));
    }
    query.projection = projection;
    query.partition_by.clear();
    Ok((query, keys))
}

/// A `PARTITION BY` column must be the source's: it is applied to the input, before the
/// projection (so a projection alias means nothing there).
fn check_partition_columns(
    partition_by: &[sqlparser::ast::Expr],
    input: &Source,
) -> Result<(), EngineError> {
    use sqlparser::ast::Expr;
    let known = |name: &str| {
        input.schema.columns.iter().any(|c| c.name == name)
            || crate::catalog::PSEUDO_COLUMNS
                .iter()
                .any(|(p, _)| *p == name)
    };
    for expr in partition_by {
        let name = match expr {
            Expr::Identifier(ident) => &ident.value,
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => &parts[1].value,
            _ => continue,
        };
        if !known(name) {
            return Err(EngineError::Statement(format!(
                "PARTITION BY column '{name}' cannot be resolved. '{name}' must be a column in \
                 the source schema since PARTITION BY is applied on the input."
            )));
        }
    }
    Ok(())
}

/// An expression as ksqlDB shows it in messages: columns qualified with the source's name
/// (`ABS(INPUT.ID)`).
fn qualified_text(expr: &sqlparser::ast::Expr, input: &Source) -> String {
    use sqlparser::ast::{Expr, Ident};
    let mut expr = expr.clone();
    let _ = sqlparser::ast::visit_expressions_mut(&mut expr, |e| {
        if let Expr::Identifier(ident) = e
            && input.schema.columns.iter().any(|c| c.name == ident.value)
        {
            *e = Expr::CompoundIdentifier(vec![Ident::new(&input.name), ident.clone()]);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    expr.to_string()
}

/// The error for a projected column whose type is not a ksqlDB type, most often one that
/// only NULLs decide (`NULL AS X`, `ARRAY[]`, a CASE of NULLs).
fn untyped_column(
    name: &str,
    data_type: &arrow::datatypes::DataType,
    query: &riffle_grammar::ast::Query,
) -> EngineError {
    use sqlparser::ast::{Expr, SelectItem, Value};
    let expr = query.projection.iter().find_map(|item| match item {
        SelectItem::ExprWithAlias { expr, alias } if alias.value == name => Some(expr),
        _ => None,
    });
    let is_null = |e: &Expr| matches!(e, Expr::Value(v) if v.value == Value::Null);
    let message = match expr {
        Some(Expr::Case { .. }) => {
            "Invalid Case expression. All case branches have NULL type".into()
        }
        Some(Expr::Array(array)) if array.elem.is_empty() => {
            "Array constructor cannot be empty. Please supply at least one element (see \
             https://github.com/confluentinc/ksql/issues/4239)."
                .into()
        }
        Some(Expr::Array(array)) if array.elem.iter().all(is_null) => {
            "Cannot construct an array with all NULL elements (see \
             https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a \
             NULL value to the desired type."
                .into()
        }
        _ if *data_type == arrow::datatypes::DataType::Null => {
            "Can't infer a type of null. Please explicitly cast it to a required type, e.g. \
             CAST(null AS VARCHAR)."
                .into()
        }
        _ => format!("The type of column `{name}` ({data_type}) has no ksqlDB equivalent"),
    };
    EngineError::Statement(message)
}

/// The source a query reads.
fn query_source(
    catalog: &Catalog,
    query: &riffle_grammar::ast::Query,
) -> Result<Source, EngineError> {
    let name = &query.from.source.name.value;
    catalog.source(name).cloned().ok_or_else(|| {
        EngineError::Statement(format!(
            "Exception while preparing statement: {name} does not exist."
        ))
    })
}

/// Aggregates over a table must take a changed or deleted row back out of its group, which
/// ksqlDB's MIN, MAX, LATEST_BY_OFFSET, … cannot.
fn check_table_aggregates(plan: &crate::plan::aggregate::AggregatePlan) -> Result<(), EngineError> {
    const STREAM_ONLY: [&str; 7] = [
        "min",
        "max",
        "latest_by_offset",
        "earliest_by_offset",
        "topk",
        "topkdistinct",
        "count_distinct",
    ];
    let mut refused: Vec<String> = Vec::new();
    for aggregate in &plan.aggregates {
        let name = aggregate.fun().name().to_lowercase();
        let stream_only = STREAM_ONLY.contains(&name.as_str())
            || aggregate
                .create_sliding_accumulator()
                .map_or(true, |a| !a.supports_retract_batch());
        let name = name.to_uppercase();
        if stream_only && !refused.contains(&name) {
            refused.push(name);
        }
    }
    let listed = match refused.split_last() {
        None => return Ok(()),
        Some((last, [])) => format!("function {last}"),
        Some((last, rest)) => format!("functions {} and {last}", rest.join(", ")),
    };
    Err(EngineError::Statement(format!(
        "The aggregation {listed} cannot be applied to a table source, only to a stream source."
    )))
}

/// The query with the collection limits the properties set (`ksql.functions.collect_list.
/// limit`, `….collect_set.limit`, `….histogram.limit`) passed to those functions as a second
/// argument.
fn with_collection_limits(
    query: &riffle_grammar::ast::Query,
    properties: &Properties,
) -> riffle_grammar::ast::Query {
    use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};
    let mut query = query.clone();
    let limits: Vec<(String, String)> = ["collect_list", "collect_set", "histogram"]
        .into_iter()
        .filter_map(|name| {
            let limit = properties.get(&format!("ksql.functions.{name}.limit"))?;
            limit.parse::<u32>().ok()?;
            Some((name.to_string(), limit.clone()))
        })
        .collect();
    if limits.is_empty() {
        return query;
    }
    let mut add_limit = |e: &mut Expr| {
        if let Expr::Function(function) = e
            && let Some((_, limit)) = limits
                .iter()
                .find(|(name, _)| function.name.to_string().eq_ignore_ascii_case(name))
            && let FunctionArguments::List(list) = &mut function.args
            && list.args.len() == 1
        {
            list.args
                .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                    sqlparser::ast::Value::Number(limit.clone(), false),
                ))));
        }
        std::ops::ControlFlow::<()>::Continue(())
    };
    let _ = sqlparser::ast::visit_expressions_mut(&mut query.projection, &mut add_limit);
    if let Some(having) = &mut query.having {
        let _ = sqlparser::ast::visit_expressions_mut(having, &mut add_limit);
    }
    query
}

/// The literal a pull query's `WHERE` compares the table's only key column with (`K = 'a'`,
/// alone or in an `AND`), as text.
fn key_literal(query: &riffle_grammar::ast::Query, keys: &[String]) -> Option<String> {
    use sqlparser::ast::{BinaryOperator, Expr, Value};
    let [key] = keys else {
        return None;
    };
    fn find(expr: &Expr, key: &str) -> Option<String> {
        match expr {
            Expr::Nested(inner) => find(inner, key),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => find(left, key).or_else(|| find(right, key)),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let column = |e: &Expr| match e {
                    Expr::Identifier(ident) => Some(ident.value.clone()),
                    Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
                    _ => None,
                };
                let literal = |e: &Expr| match e {
                    Expr::Value(value) => match &value.value {
                        Value::SingleQuotedString(text) => Some(text.clone()),
                        Value::Number(number, _) => Some(number.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                match (column(left), literal(right), column(right), literal(left)) {
                    (Some(c), Some(text), _, _) | (_, _, Some(c), Some(text)) if c == key => {
                        Some(text)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
    find(query.selection.as_ref()?, key)
}

/// ksqlDB's refusal of a sink column named after a pseudo column or window bound.
fn reserved_in_select(name: &str) -> EngineError {
    EngineError::Statement(format!(
        "Reserved column name in select: `{name}`. Please remove or alias the column."
    ))
}

/// A projection may not name a column after a pseudo column.
/// The name a column that repeats another's alias is planned under, to learn its type.
const DUPLICATE: &str = "__RIFFLE_DUPLICATE_COLUMN";

/// The later of two selected columns under one name (an alias, or a column's own name):
/// its position and the name.
fn duplicate_alias(query: &riffle_grammar::ast::Query) -> Option<(usize, String)> {
    let mut seen = std::collections::HashSet::new();
    query
        .projection
        .iter()
        .enumerate()
        .find_map(|(index, item)| {
            let name = match item {
                sqlparser::ast::SelectItem::ExprWithAlias { alias, .. } => &alias.value,
                sqlparser::ast::SelectItem::UnnamedExpr(sqlparser::ast::Expr::Identifier(
                    column,
                )) => &column.value,
                _ => return None,
            };
            (!seen.insert(name.clone())).then(|| (index, name.clone()))
        })
}

/// `query` with its `index`-th column named `alias`.
fn with_alias(
    query: &riffle_grammar::ast::Query,
    index: usize,
    alias: &str,
) -> riffle_grammar::ast::Query {
    use sqlparser::ast::SelectItem;
    let mut renamed = query.clone();
    if let Some(item) = renamed.projection.get_mut(index) {
        match item {
            SelectItem::ExprWithAlias { alias: name, .. } => {
                *name = sqlparser::ast::Ident::new(alias)
            }
            SelectItem::UnnamedExpr(expr) => {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: sqlparser::ast::Ident::new(alias),
                }
            }
            _ => {}
        }
    }
    renamed
}

/// ksqlDB's refusal of a column named twice: `Duplicate value columns found in schema:
/// `COUNT` BIGINT` (the type of the later one, planned as [`DUPLICATE`]).
fn duplicate_column(name: &str, planned: &arrow::datatypes::Schema) -> EngineError {
    let ty = planned
        .field_with_name(DUPLICATE)
        .ok()
        .and_then(|field| SqlType::from_arrow(field.data_type()))
        .map_or_else(String::new, |ty| format!(" {ty}"));
    EngineError::Statement(format!(
        "Duplicate value columns found in schema: `{name}`{ty}"
    ))
}

fn check_aliases(query: &riffle_grammar::ast::Query) -> Result<(), EngineError> {
    for item in &query.projection {
        if let sqlparser::ast::SelectItem::ExprWithAlias { alias, expr } = item
            && RESERVED_COLUMNS.contains(&alias.value.as_str())
        {
            // `l.ROWTIME AS ROWTIME` selects the pseudo column under its own name: ksqlDB
            // refuses the selection, not the alias.
            let renamed = match expr {
                sqlparser::ast::Expr::CompoundIdentifier(parts) => {
                    parts.last().is_none_or(|p| p.value != alias.value)
                }
                _ => true,
            };
            if !renamed {
                return Err(reserved_in_select(&alias.value));
            }
            return Err(EngineError::Statement(format!(
                "`{}` is a reserved column name. You cannot use it as an alias for a column.",
                alias.value
            )));
        }
    }
    Ok(())
}

/// What pull queries (no `EMIT`) cannot do, in ksqlDB's words.
fn check_pull_query(query: &riffle_grammar::ast::Query) -> Result<(), EngineError> {
    let refuse = |what: &str| {
        Err(EngineError::Statement(format!(
            "Pull queries don't support {what} clauses. See https://cnfl.io/queries for more \
             info.\nAdd EMIT CHANGES if you intended to issue a push query."
        )))
    };
    if !query.from.joins.is_empty() {
        return refuse("JOIN");
    }
    if query.window.is_some() {
        return refuse("WINDOW");
    }
    if !query.group_by.is_empty() {
        return refuse("GROUP BY");
    }
    if query.having.is_some() {
        return refuse("HAVING");
    }
    if !query.partition_by.is_empty() {
        return refuse("PARTITION BY");
    }
    // The position of a record in its topic means nothing to a snapshot.
    let disallowed = |exprs: &mut dyn Iterator<Item = &sqlparser::ast::Expr>| {
        let mut found = Vec::new();
        for expr in exprs {
            let _ = sqlparser::ast::visit_expressions(expr, |e| {
                if let sqlparser::ast::Expr::Identifier(ident) = e
                    && matches!(ident.value.as_str(), "ROWPARTITION" | "ROWOFFSET")
                    && !found.contains(&ident.value)
                {
                    found.push(ident.value.clone());
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        found
    };
    let selected = disallowed(&mut query.projection.iter().filter_map(|item| match item {
        sqlparser::ast::SelectItem::UnnamedExpr(e)
        | sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }));
    for (clause, columns) in [
        ("SELECT", selected),
        ("WHERE", disallowed(&mut query.selection.iter())),
    ] {
        if !columns.is_empty() {
            return Err(EngineError::Statement(format!(
                "Pull queries don't support the following columns in {clause} clauses: {}",
                columns
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// A statement's first two words (`CREATE TABLE`), to name what is not supported.
fn statement_kind(statement: &Statement) -> String {
    statement
        .to_string()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ids a `TERMINATE`, `PAUSE` or `RESUME` names (ids match ignoring case).
fn find_queries(state: &EngineState, target: &QueryTarget) -> Result<Vec<String>, EngineError> {
    match target {
        QueryTarget::All => Ok(state.queries.keys().cloned().collect()),
        QueryTarget::Query(id) => state
            .queries
            .keys()
            .find(|q| q.eq_ignore_ascii_case(&id.value))
            .cloned()
            .map(|id| vec![id])
            .ok_or_else(|| EngineError::Statement(format!("Unknown queryId: {}", id.value))),
    }
}

fn query_info(query: &PersistentQuery) -> QueryInfo {
    QueryInfo {
        id: query.spec.id.clone(),
        statement: query.spec.statement.clone(),
        sink: query.spec.sink_name.clone(),
        sink_topic: query.spec.sink_topic.clone(),
        state: query.state(),
    }
}

/// ksqlDB's text rendering of a query's plan, sink first, each step indented under the
/// one it feeds.
fn execution_plan(
    source: &Source,
    plan: &QueryPlan,
    fields: &LogicalSchema,
    sink: Option<&str>,
) -> String {
    let mut steps = Vec::new();
    if let Some(sink) = sink {
        steps.push(format!(
            "[ SINK ] | Schema: {fields} | Logical Plan: {sink}"
        ));
    }
    steps.push(format!("[ PROJECT ] | Schema: {fields}"));
    let filter = match plan {
        QueryPlan::Stateless(plan) => plan.filter.clone(),
        QueryPlan::Aggregate(plan) => {
            if let Some(having) = &plan.having {
                steps.push(format!("[ HAVING ] | Condition: {having}"));
            }
            steps.push(aggregate_step_text(plan));
            plan.filter.clone()
        }
        QueryPlan::Join(plan) => plan.output.filter.clone(),
        QueryPlan::JoinAggregate(plan) => {
            steps.push(aggregate_step_text(&plan.aggregate));
            plan.join.output.filter.clone()
        }
    };
    if let Some(filter) = filter {
        steps.push(format!("[ FILTER ] | Condition: {filter}"));
    }
    let join = match plan {
        QueryPlan::Join(join) => Some(join),
        QueryPlan::JoinAggregate(plan) => Some(&plan.join),
        QueryPlan::Stateless(_) | QueryPlan::Aggregate(_) => None,
    };
    let sources: Vec<&Source> = match join {
        Some(join) => {
            for step in join.steps.iter().rev() {
                steps.push(join_step_text(step));
            }
            join.inputs.iter().map(|i| &i.source).collect()
        }
        None => vec![source],
    };
    for source in sources {
        steps.push(format!(
            "[ SOURCE ] | Schema: {} | Topic: {}",
            source.schema, source.topic
        ));
    }
    steps
        .iter()
        .enumerate()
        .map(|(depth, step)| format!("{} > {step}\n", "\t\t".repeat(depth)))
        .collect()
}

/// The `[ AGGREGATE ]` step of an execution plan.
fn aggregate_step_text(plan: &crate::plan::aggregate::AggregatePlan) -> String {
    let aggregates: Vec<&str> = plan.aggregates.iter().map(|a| a.name()).collect();
    format!(
        "[ AGGREGATE ] | Groups: {} | Aggregates: {}{}",
        plan.group_by
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        aggregates.join(", "),
        plan.windowing
            .map(|w| format!(" | Window: {:?}", w.kind))
            .unwrap_or_default()
    )
}

/// Named, typed columns.
type Columns = Vec<(String, SqlType)>;

/// The key and value columns of a foreign-key join: the left table's key columns, each
/// selected once, are the key.
fn foreign_key_columns(
    plan: &crate::plan::join::JoinPlan,
    table: &str,
    left_keys: &[(String, String)],
    sink_name: Option<&str>,
    query: &riffle_grammar::ast::Query,
) -> Result<(Columns, Columns), EngineError> {
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut aliases: Vec<Vec<String>> = vec![Vec::new(); left_keys.len()];
    for (column, field) in plan
        .output
        .projection
        .iter()
        .zip(plan.output.output_schema.fields())
    {
        let ty = SqlType::from_arrow(field.data_type())
            .ok_or_else(|| untyped_column(&column.name, field.data_type(), query))?;
        let key = left_keys
            .iter()
            .position(|(joined, _)| column.source_column.as_ref() == Some(joined));
        match key {
            Some(index) => {
                if aliases[index].is_empty() {
                    keys.push((column.name.clone(), ty));
                }
                aliases[index].push(column.name.clone());
            }
            None => values.push((column.name.clone(), ty)),
        }
    }
    if sink_name.is_none() {
        return Ok((keys, values));
    }
    if let Some((index, names)) = aliases.iter_mut().enumerate().find(|(_, a)| a.len() > 1) {
        names.sort();
        return Err(EngineError::Statement(format!(
            "The projection contains a key column (`{}`) more than once, aliased as: {}.",
            left_keys[index].0,
            names.join(" and ")
        )));
    }
    let missing: Vec<String> = left_keys
        .iter()
        .zip(&aliases)
        .filter(|(_, a)| a.is_empty())
        .map(|((_, name), _)| format!("`{name}`"))
        .collect();
    if !missing.is_empty() {
        let plural = missing.len() > 1;
        return Err(EngineError::Statement(format!(
            "Primary key column{} missing in projection. For foreign-key table-table joins, the \
             projection must include all primary key columns from the left input table \
             (`{table}`). Missing column{}: {}.",
            if plural { "s" } else { "" },
            if plural { "s" } else { "" },
            missing.join(", ")
        )));
    }
    Ok((keys, values))
}

/// `EXPLAIN`'s line for a join step: its type, keys and window.
fn join_step_text(step: &crate::plan::join::JoinStepPlan) -> String {
    use crate::runtime::join::StepMode;
    let kind = match step.kind {
        riffle_grammar::ast::JoinKind::Inner => "INNER",
        riffle_grammar::ast::JoinKind::Left => "LEFT",
        riffle_grammar::ast::JoinKind::Right => "RIGHT",
        riffle_grammar::ast::JoinKind::Full => "OUTER",
    };
    let (shape, window) = match step.mode {
        StepMode::Windowed {
            before,
            after,
            grace,
            eager,
        } => (
            "STREAM-STREAM",
            format!(
                " | Window: before {before} ms, after {after} ms, grace {grace} ms{}",
                if eager {
                    " (unmatched rows emitted at once)"
                } else {
                    ""
                }
            ),
        ),
        StepMode::StreamTable => ("STREAM-TABLE", String::new()),
        StepMode::TableTable => ("TABLE-TABLE", String::new()),
        StepMode::ForeignKey => ("TABLE-TABLE FOREIGN KEY", String::new()),
    };
    format!(
        "[ JOIN ] | {shape} {kind} | Left key: {} | Right key: {} | Key: {}{window}",
        step.left_key, step.right_key, step.key_name
    )
}

/// Whether a persistent query's records keep its input's key columns: no PARTITION BY,
/// grouping or join.
fn keeps_input_key(plan: &QueryPlan, query: &riffle_grammar::ast::Query) -> bool {
    matches!(plan, QueryPlan::Stateless(_)) && query.partition_by.is_empty()
}

/// A value of `INSERT … VALUES` as its column's type: numbers and texts as Arrow casts them,
/// a STRUCT's fields matched by name and the ones it leaves out NULL (ksqlDB's `STRUCT()`
/// is a struct of NULLs); a field the column does not have is refused.
fn to_column_type(
    value: &arrow::array::ArrayRef,
    target: &arrow::datatypes::DataType,
) -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    let (DataType::Struct(given), DataType::Struct(wanted)) = (value.data_type(), target) else {
        return arrow::compute::cast(value, target);
    };
    if let Some(extra) = given.iter().find(|f| wanted.find(f.name()).is_none()) {
        return Err(arrow::error::ArrowError::CastError(format!(
            "the column has no field {}",
            extra.name()
        )));
    }
    crate::types::struct_by_name(value.as_struct(), wanted, to_column_type)
}

fn done(message: String, query_id: Option<String>) -> StatementResult {
    StatementResult::Done { message, query_id }
}

fn noun(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Stream => "Stream",
        SourceKind::Table => "Table",
    }
}

fn render_columns(keys: &[(String, SqlType)], values: &[(String, SqlType)]) -> String {
    keys.iter()
        .map(|(n, t)| format!("`{n}` {t} KEY"))
        .chain(values.iter().map(|(n, t)| format!("`{n}` {t}")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn format_defaults(properties: &Properties) -> FormatDefaults {
    FormatDefaults {
        key_format: properties
            .get("ksql.persistence.default.format.key")
            .cloned(),
        value_format: properties
            .get("ksql.persistence.default.format.value")
            .cloned(),
        wrap_single_values: properties
            .get("ksql.persistence.wrap.single.values")
            .and_then(|v| v.parse().ok()),
    }
}

/// How an aggregation emits, from ksqlDB's record-cache properties: a cache of 0 bytes
/// emits every change; otherwise changes are coalesced (10 MB and 2 s by default).
fn emission(properties: &Properties) -> Result<crate::plan::aggregate::Emission, EngineError> {
    use crate::plan::aggregate::Emission;
    let cache = long_property(
        properties,
        &[
            "ksql.streams.cache.max.bytes.buffering",
            "cache.max.bytes.buffering",
            "ksql.streams.statestore.cache.max.bytes",
            "statestore.cache.max.bytes",
        ],
    )?;
    let interval = long_property(
        properties,
        &["ksql.streams.commit.interval.ms", "commit.interval.ms"],
    )?;
    Ok(match cache {
        Some(0) => Emission::PerRecord,
        cache => Emission::Coalesced {
            cache_bytes: cache.map_or(Emission::DEFAULT_CACHE_BYTES, |c| c as usize),
            commit_interval: interval.map_or(
                Emission::DEFAULT_COMMIT_INTERVAL,
                std::time::Duration::from_millis,
            ),
        },
    })
}

/// The first of `names` that is set, as a non-negative number (a LONG configuration).
fn long_property(properties: &Properties, names: &[&str]) -> Result<Option<u64>, EngineError> {
    let Some((name, value)) = names
        .iter()
        .find_map(|name| properties.get(*name).map(|value| (name, value)))
    else {
        return Ok(None);
    };
    value.trim().parse().map(Some).map_err(|_| {
        EngineError::Statement(format!(
            "Invalid value {value} for configuration {name}: Not a number of type LONG"
        ))
    })
}

/// A query's task options: `ksql.timestamp.throw.on.invalid` (a record without a valid
/// time stops the query; by default it is skipped and logged) and `max.task.idle.ms`.
fn task_options(properties: &Properties) -> Result<TaskOptions, EngineError> {
    let idle = long_property(
        properties,
        &["ksql.streams.max.task.idle.ms", "max.task.idle.ms"],
    )?;
    Ok(TaskOptions {
        fail_on_invalid_timestamp: properties
            .get("ksql.timestamp.throw.on.invalid")
            .is_some_and(|value| value.eq_ignore_ascii_case("true")),
        max_task_idle: std::time::Duration::from_millis(idle.unwrap_or(0)),
        join_snapshot_rows: long_property(properties, &["riffle.join.snapshot.min.rows"])?
            .map_or(crate::query::JOIN_SNAPSHOT_ROWS, |rows| {
                usize::try_from(rows).unwrap_or(usize::MAX)
            }),
    })
}

/// `auto.offset.reset` (or its `ksql.streams.` form); ksqlDB's default is `latest`.
fn start_position(properties: &Properties) -> StartPosition {
    let value = properties
        .get("auto.offset.reset")
        .or_else(|| properties.get("ksql.streams.auto.offset.reset"));
    match value.map(|v| v.to_ascii_lowercase()) {
        Some(v) if v == "earliest" => StartPosition::Earliest,
        _ => StartPosition::Latest,
    }
}
