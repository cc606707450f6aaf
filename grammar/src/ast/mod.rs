//! The ksqlDB statement AST: [`Statement`] and the nodes it is made of.
//!
//! Expressions, select items and data types are sqlparser's own AST (the form DataFusion's
//! `SqlToRel` plans); everything ksqlDB adds around them (sources, windows, joins with
//! `WITHIN`, `EMIT`, properties) is defined here. Every node prints itself back as
//! canonical ksqlDB text through `Display`; parsing that text gives the same node.

mod display;

use sqlparser::ast::{DataType, Expr, Ident, SelectItem, Value};

/// The expression `name(args…)`, a plain call (no `FILTER`, `OVER` or modifiers).
pub fn function_call(name: Ident, args: Vec<sqlparser::ast::FunctionArg>) -> Expr {
    use sqlparser::ast::{Function, FunctionArgumentList, FunctionArguments, ObjectName};
    Expr::Function(Function {
        name: ObjectName::from(vec![name]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// One ksqlDB statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SELECT … [EMIT CHANGES | FINAL]`: a push query when it has an `EMIT` clause, a pull
    /// query otherwise.
    Query(Box<Query>),
    /// `CREATE [OR REPLACE] [SOURCE] STREAM|TABLE [IF NOT EXISTS] s (…) WITH (…)`
    CreateSource(CreateSource),
    /// `CREATE [OR REPLACE] STREAM|TABLE [IF NOT EXISTS] s [WITH (…)] AS SELECT …`
    CreateAsSelect(Box<CreateAsSelect>),
    /// `INSERT INTO s [WITH (…)] SELECT …`
    InsertInto(Box<InsertInto>),
    /// `INSERT INTO s [(cols)] VALUES (…)`
    InsertValues(InsertValues),
    /// `DROP STREAM|TABLE [IF EXISTS] s [DELETE TOPIC]`
    DropSource(DropSource),
    /// `ALTER STREAM|TABLE s ADD [COLUMN] c T, …`
    AlterSource(AlterSource),
    /// `CREATE TYPE [IF NOT EXISTS] name AS type`
    CreateType(CreateType),
    /// `DROP TYPE [IF EXISTS] name`
    DropType(DropType),
    /// `SHOW | LIST …`
    Show(Show),
    /// `DESCRIBE …`
    Describe(Describe),
    /// `EXPLAIN statement` or `EXPLAIN query_id`
    Explain(Explain),
    /// `PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`
    Print(Print),
    /// `TERMINATE query_id | ALL`
    Terminate(QueryTarget),
    /// `PAUSE query_id | ALL`
    Pause(QueryTarget),
    /// `RESUME query_id | ALL`
    Resume(QueryTarget),
    /// `SET 'name' = 'value'`
    SetProperty(PropertyAssignment),
    /// `UNSET 'name'`
    UnsetProperty(String),
    /// `ALTER SYSTEM 'name' = 'value'`
    AlterSystem(PropertyAssignment),
    /// `DEFINE name = 'value'`
    DefineVariable { name: Ident, value: String },
    /// `UNDEFINE name`
    UndefineVariable(Ident),
    /// `ASSERT [NOT EXISTS] TOPIC name [WITH (…)] [TIMEOUT n unit]`
    AssertTopic(AssertTopic),
    /// `ASSERT [NOT EXISTS] SCHEMA [SUBJECT name] [ID n] [TIMEOUT n unit]`
    AssertSchema(AssertSchema),
    /// `CREATE SOURCE|SINK CONNECTOR [IF NOT EXISTS] name WITH (…)`
    CreateConnector(CreateConnector),
    /// `DROP CONNECTOR [IF EXISTS] name`
    DropConnector { if_exists: bool, name: Ident },
}

/// A `SELECT` in ksqlDB's clause order:
///
/// ```sql
/// SELECT items FROM source [JOIN …] [WINDOW …] [WHERE …] [GROUP BY …] [PARTITION BY …]
///   [HAVING …] [EMIT CHANGES | EMIT FINAL] [LIMIT n]
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub projection: Vec<SelectItem>,
    pub from: Relation,
    pub window: Option<WindowSpec>,
    pub selection: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub partition_by: Vec<Expr>,
    pub having: Option<Expr>,
    /// `None` for a pull query.
    pub emit: Option<EmitMode>,
    pub limit: Option<u64>,
}

impl Query {
    /// A query with an `EMIT` clause runs continuously; one without is a pull query.
    pub fn is_push(&self) -> bool {
        self.emit.is_some()
    }
}

/// `EMIT CHANGES` (every update) or `EMIT FINAL` (one row per window once it closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmitMode {
    Changes,
    Final,
}

/// The `FROM` clause: a source and the sources joined to it, left to right.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub source: SourceRef,
    pub joins: Vec<Join>,
}

/// A named stream or table with an optional alias: `pageviews [AS] pv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRef {
    pub name: Ident,
    pub alias: Option<Ident>,
}

/// `[INNER | LEFT | RIGHT | FULL] JOIN source [WITHIN …] ON condition`
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub kind: JoinKind,
    pub source: SourceRef,
    pub within: Option<JoinWindow>,
    pub on: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

/// The time bounds of a stream–stream join:
/// `WITHIN 1 HOUR` or `WITHIN (10 SECONDS, 1 MINUTE)`, then `[GRACE PERIOD …]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JoinWindow {
    pub before: TimeSpan,
    /// `Some` only for the two-duration form; the one-duration form is symmetric.
    pub after: Option<TimeSpan>,
    pub grace: Option<TimeSpan>,
}

/// The `WINDOW` clause of an aggregation.
///
/// ```text
///  TUMBLING (SIZE 10 s)     |----|----|----|       epoch-aligned, end-exclusive
///  HOPPING  (SIZE 10 s,     |---------|
///            ADVANCE BY 5 s)     |---------|
///  SESSION  (30 s)          |-x-x--x|   |-x-|      gap of inactivity closes a session
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowSpec {
    Tumbling {
        size: TimeSpan,
        retention: Option<TimeSpan>,
        grace: Option<TimeSpan>,
    },
    Hopping {
        size: TimeSpan,
        advance: TimeSpan,
        retention: Option<TimeSpan>,
        grace: Option<TimeSpan>,
    },
    Session {
        gap: TimeSpan,
        retention: Option<TimeSpan>,
        grace: Option<TimeSpan>,
    },
}

/// A duration as ksqlDB writes it in window and join clauses: `10 SECONDS`, `1 HOUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeSpan {
    pub value: u64,
    pub unit: TimeUnit,
}

impl TimeSpan {
    pub fn new(value: u64, unit: TimeUnit) -> Self {
        Self { value, unit }
    }

    /// The span in milliseconds, saturating at `u64::MAX`.
    pub fn as_millis(&self) -> u64 {
        self.value.saturating_mul(self.unit.millis())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl TimeUnit {
    pub fn millis(self) -> u64 {
        match self {
            TimeUnit::Milliseconds => 1,
            TimeUnit::Seconds => 1_000,
            TimeUnit::Minutes => 60_000,
            TimeUnit::Hours => 3_600_000,
            TimeUnit::Days => 86_400_000,
        }
    }

    /// Reads `SECOND`, `SECONDS`, … (either case).
    pub fn from_word(word: &str) -> Option<TimeUnit> {
        let upper = word.to_ascii_uppercase();
        let singular = upper.strip_suffix('S').unwrap_or(&upper);
        Some(match singular {
            "MILLISECOND" => TimeUnit::Milliseconds,
            "SECOND" => TimeUnit::Seconds,
            "MINUTE" => TimeUnit::Minutes,
            "HOUR" => TimeUnit::Hours,
            "DAY" => TimeUnit::Days,
            _ => return None,
        })
    }
}

/// Whether a source is an append-only stream or an upsert table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Stream,
    Table,
}

/// ```sql
/// CREATE STREAM pageviews (user_id STRING KEY, page STRING)
///   WITH (kafka_topic='pageviews', value_format='JSON');
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub kind: SourceKind,
    pub or_replace: bool,
    /// `CREATE SOURCE STREAM|TABLE`: read-only (and, for tables, materialized).
    pub is_source: bool,
    pub if_not_exists: bool,
    pub name: Ident,
    pub columns: Vec<ColumnDef>,
    pub properties: Properties,
}

/// `name type [KEY | PRIMARY KEY | HEADERS | HEADER('key')]`
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: Ident,
    pub data_type: DataType,
    pub constraint: Option<ColumnConstraint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnConstraint {
    /// `KEY`: a key column of a stream.
    Key,
    /// `PRIMARY KEY`: a key column of a table.
    PrimaryKey,
    /// `HEADERS`: all record headers, as `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`.
    Headers,
    /// `HEADER('k')`: the value of one header, as `BYTES`.
    Header(String),
}

/// ```sql
/// CREATE TABLE clicks_per_user AS
///   SELECT user_id, COUNT(*) AS clicks FROM clicks GROUP BY user_id EMIT CHANGES;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CreateAsSelect {
    pub kind: SourceKind,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub name: Ident,
    pub properties: Properties,
    pub query: Query,
}

/// `INSERT INTO target [WITH (QUERY_ID='id')] SELECT …`
#[derive(Debug, Clone, PartialEq)]
pub struct InsertInto {
    pub target: Ident,
    pub properties: Properties,
    pub query: Query,
}

/// `INSERT INTO target [(c1, c2)] VALUES (v1, v2)`
#[derive(Debug, Clone, PartialEq)]
pub struct InsertValues {
    pub target: Ident,
    pub columns: Vec<Ident>,
    pub values: Vec<Expr>,
}

/// `DROP STREAM|TABLE [IF EXISTS] name [DELETE TOPIC]`
#[derive(Debug, Clone, PartialEq)]
pub struct DropSource {
    pub kind: SourceKind,
    pub if_exists: bool,
    pub name: Ident,
    pub delete_topic: bool,
}

/// `ALTER STREAM|TABLE name ADD COLUMN c1 T1, ADD COLUMN c2 T2`
#[derive(Debug, Clone, PartialEq)]
pub struct AlterSource {
    pub kind: SourceKind,
    pub name: Ident,
    pub add_columns: Vec<ColumnDef>,
}

/// `CREATE TYPE [IF NOT EXISTS] ADDRESS AS STRUCT<street STRING, city STRING>`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateType {
    pub if_not_exists: bool,
    pub name: Ident,
    pub data_type: DataType,
}

/// `DROP TYPE [IF EXISTS] name`
#[derive(Debug, Clone, PartialEq)]
pub struct DropType {
    pub if_exists: bool,
    pub name: Ident,
}

/// What `SHOW` (or its synonym `LIST`) lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Show {
    Streams {
        extended: bool,
    },
    Tables {
        extended: bool,
    },
    /// `SHOW [ALL] TOPICS [EXTENDED]`; `ALL` includes internal topics.
    Topics {
        all: bool,
        extended: bool,
    },
    Queries {
        extended: bool,
    },
    Properties,
    Functions,
    Types,
    Variables,
    /// `SHOW [SOURCE | SINK] CONNECTORS`
    Connectors {
        kind: Option<ConnectorKind>,
    },
    /// `SHOW CONNECTOR PLUGINS`
    ConnectorPlugins,
}

/// What `DESCRIBE` describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Describe {
    /// `DESCRIBE name [EXTENDED]`
    Source { name: Ident, extended: bool },
    /// `DESCRIBE STREAMS [EXTENDED]`: every stream.
    Streams { extended: bool },
    /// `DESCRIBE TABLES [EXTENDED]`: every table.
    Tables { extended: bool },
    /// `DESCRIBE FUNCTION name`
    Function(Ident),
    /// `DESCRIBE CONNECTOR name`
    Connector(Ident),
}

/// `EXPLAIN statement` or `EXPLAIN query_id`.
#[derive(Debug, Clone, PartialEq)]
pub enum Explain {
    Statement(Box<Statement>),
    QueryId(Ident),
}

/// `PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`; a quoted `'topic'` keeps its case.
#[derive(Debug, Clone, PartialEq)]
pub struct Print {
    pub topic: Ident,
    pub from_beginning: bool,
    /// Print every n-th record (`INTERVAL n`, also written `SAMPLE n`).
    pub interval: Option<u64>,
    pub limit: Option<u64>,
}

/// The queries a `TERMINATE`, `PAUSE` or `RESUME` applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryTarget {
    All,
    Query(Ident),
}

/// `'name' = 'value'` in `SET` and `ALTER SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PropertyAssignment {
    pub name: String,
    pub value: String,
}

/// `ASSERT [NOT EXISTS] TOPIC name [WITH (PARTITIONS=n, …)] [TIMEOUT n unit]`
#[derive(Debug, Clone, PartialEq)]
pub struct AssertTopic {
    pub not_exists: bool,
    pub topic: Ident,
    pub properties: Properties,
    pub timeout: Option<TimeSpan>,
}

/// `ASSERT [NOT EXISTS] SCHEMA [SUBJECT name] [ID n] [TIMEOUT n unit]`
#[derive(Debug, Clone, PartialEq)]
pub struct AssertSchema {
    pub not_exists: bool,
    pub subject: Option<Ident>,
    pub id: Option<u64>,
    pub timeout: Option<TimeSpan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorKind {
    Source,
    Sink,
}

/// `CREATE SOURCE|SINK CONNECTOR [IF NOT EXISTS] name WITH ('connector.class'='…', …)`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateConnector {
    pub kind: ConnectorKind,
    pub if_not_exists: bool,
    pub name: Ident,
    pub properties: Properties,
}

/// A `WITH (…)` list: `KAFKA_TOPIC='t', PARTITIONS=3`.
///
/// Unquoted names are upper-cased like every identifier; quoted names (`'connector.class'`)
/// keep their text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties(pub Vec<Property>);

impl Properties {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of a property, matching its name case-insensitively.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|property| property.name.value.eq_ignore_ascii_case(name))
            .map(|property| &property.value)
    }
}

/// `name = literal`
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: Ident,
    pub value: Value,
}
