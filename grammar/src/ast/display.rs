//! Canonical ksqlDB text for every AST node.
//!
//! Statements print on one line, keywords upper-case, without the terminating `;`. Parsing
//! the printed text gives back the same AST (the grammar tests check this for every form).

use std::fmt::{self, Display, Formatter};

use super::*;
use crate::types::KsqlType;

/// `a, b, c`
struct Commas<'a, T>(&'a [T]);

impl<T: Display> Display for Commas<'_, T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// A single-quoted SQL string literal, with `'` doubled.
struct Quoted<'a>(&'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0.replace('\'', "''"))
    }
}

fn if_true(flag: bool, text: &str) -> &str {
    if flag { text } else { "" }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Query(query) => write!(f, "{query}"),
            Statement::CreateSource(create) => write!(f, "{create}"),
            Statement::CreateAsSelect(create) => write!(f, "{create}"),
            Statement::InsertInto(insert) => write!(f, "{insert}"),
            Statement::InsertValues(insert) => write!(f, "{insert}"),
            Statement::DropSource(drop) => write!(
                f,
                "DROP {} {}{}{}",
                drop.kind,
                if_true(drop.if_exists, "IF EXISTS "),
                drop.name,
                if_true(drop.delete_topic, " DELETE TOPIC")
            ),
            Statement::AlterSource(alter) => {
                write!(f, "ALTER {} {} ", alter.kind, alter.name)?;
                for (i, column) in alter.add_columns.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "ADD COLUMN {column}")?;
                }
                Ok(())
            }
            Statement::CreateType(create) => write!(
                f,
                "CREATE TYPE {}{} AS {}",
                if_true(create.if_not_exists, "IF NOT EXISTS "),
                create.name,
                KsqlType(&create.data_type)
            ),
            Statement::DropType(drop) => write!(
                f,
                "DROP TYPE {}{}",
                if_true(drop.if_exists, "IF EXISTS "),
                drop.name
            ),
            Statement::Show(show) => write!(f, "SHOW {show}"),
            Statement::Describe(describe) => write!(f, "{describe}"),
            Statement::Explain(Explain::Statement(statement)) => write!(f, "EXPLAIN {statement}"),
            Statement::Explain(Explain::QueryId(id)) => write!(f, "EXPLAIN {id}"),
            Statement::Print(print) => write!(f, "{print}"),
            Statement::Terminate(target) => write!(f, "TERMINATE {target}"),
            Statement::Pause(target) => write!(f, "PAUSE {target}"),
            Statement::Resume(target) => write!(f, "RESUME {target}"),
            Statement::SetProperty(assignment) => write!(f, "SET {assignment}"),
            Statement::UnsetProperty(name) => write!(f, "UNSET {}", Quoted(name)),
            Statement::AlterSystem(assignment) => write!(f, "ALTER SYSTEM {assignment}"),
            Statement::DefineVariable { name, value } => {
                write!(f, "DEFINE {name} = {}", Quoted(value))
            }
            Statement::UndefineVariable(name) => write!(f, "UNDEFINE {name}"),
            Statement::AssertTopic(assert) => write!(f, "{assert}"),
            Statement::AssertSchema(assert) => write!(f, "{assert}"),
            Statement::CreateConnector(create) => write!(f, "{create}"),
            Statement::DropConnector { if_exists, name } => write!(
                f,
                "DROP CONNECTOR {}{name}",
                if_true(*if_exists, "IF EXISTS ")
            ),
        }
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "SELECT {} FROM {}", Commas(&self.projection), self.from)?;
        if let Some(window) = &self.window {
            write!(f, " WINDOW {window}")?;
        }
        if let Some(selection) = &self.selection {
            write!(f, " WHERE {selection}")?;
        }
        if !self.group_by.is_empty() {
            write!(f, " GROUP BY {}", Commas(&self.group_by))?;
        }
        if !self.partition_by.is_empty() {
            write!(f, " PARTITION BY {}", Commas(&self.partition_by))?;
        }
        if let Some(having) = &self.having {
            write!(f, " HAVING {having}")?;
        }
        if let Some(emit) = &self.emit {
            write!(f, " {emit}")?;
        }
        if let Some(limit) = self.limit {
            write!(f, " LIMIT {limit}")?;
        }
        Ok(())
    }
}

impl Display for EmitMode {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmitMode::Changes => "EMIT CHANGES",
            EmitMode::Final => "EMIT FINAL",
        })
    }
}

impl Display for Relation {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        for join in &self.joins {
            write!(f, " {join}")?;
        }
        Ok(())
    }
}

impl Display for SourceRef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(alias) = &self.alias {
            write!(f, " {alias}")?;
        }
        Ok(())
    }
}

impl Display for Join {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.source)?;
        if let Some(within) = &self.within {
            write!(f, " {within}")?;
        }
        write!(f, " ON {}", self.on)
    }
}

impl Display for JoinKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinKind::Inner => "INNER JOIN",
            JoinKind::Left => "LEFT JOIN",
            JoinKind::Right => "RIGHT JOIN",
            JoinKind::Full => "FULL OUTER JOIN",
        })
    }
}

impl Display for JoinWindow {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.after {
            None => write!(f, "WITHIN {}", self.before)?,
            Some(after) => write!(f, "WITHIN ({}, {after})", self.before)?,
        }
        if let Some(grace) = &self.grace {
            write!(f, " GRACE PERIOD {grace}")?;
        }
        Ok(())
    }
}

/// `, RETENTION …, GRACE PERIOD …` inside a window's parentheses.
fn window_options(
    f: &mut Formatter<'_>,
    retention: &Option<TimeSpan>,
    grace: &Option<TimeSpan>,
) -> fmt::Result {
    if let Some(retention) = retention {
        write!(f, ", RETENTION {retention}")?;
    }
    if let Some(grace) = grace {
        write!(f, ", GRACE PERIOD {grace}")?;
    }
    Ok(())
}

impl Display for WindowSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            WindowSpec::Tumbling {
                size,
                retention,
                grace,
            } => {
                write!(f, "TUMBLING (SIZE {size}")?;
                window_options(f, retention, grace)?;
            }
            WindowSpec::Hopping {
                size,
                advance,
                retention,
                grace,
            } => {
                write!(f, "HOPPING (SIZE {size}, ADVANCE BY {advance}")?;
                window_options(f, retention, grace)?;
            }
            WindowSpec::Session {
                gap,
                retention,
                grace,
            } => {
                write!(f, "SESSION ({gap}")?;
                window_options(f, retention, grace)?;
            }
        }
        f.write_str(")")
    }
}

impl Display for TimeSpan {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            TimeUnit::Milliseconds => "MILLISECOND",
            TimeUnit::Seconds => "SECOND",
            TimeUnit::Minutes => "MINUTE",
            TimeUnit::Hours => "HOUR",
            TimeUnit::Days => "DAY",
        };
        write!(f, "{} {unit}{}", self.value, if_true(self.value != 1, "S"))
    }
}

impl Display for SourceKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Stream => "STREAM",
            SourceKind::Table => "TABLE",
        })
    }
}

impl Display for CreateSource {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CREATE {}{}{} {}{}",
            if_true(self.or_replace, "OR REPLACE "),
            if_true(self.is_source, "SOURCE "),
            self.kind,
            if_true(self.if_not_exists, "IF NOT EXISTS "),
            self.name
        )?;
        if !self.columns.is_empty() {
            write!(f, " ({})", Commas(&self.columns))?;
        }
        if !self.properties.is_empty() {
            write!(f, " WITH {}", self.properties)?;
        }
        Ok(())
    }
}

impl Display for ColumnDef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, KsqlType(&self.data_type))?;
        match &self.constraint {
            None => Ok(()),
            Some(ColumnConstraint::Key) => f.write_str(" KEY"),
            Some(ColumnConstraint::PrimaryKey) => f.write_str(" PRIMARY KEY"),
            Some(ColumnConstraint::Headers) => f.write_str(" HEADERS"),
            Some(ColumnConstraint::Header(key)) => write!(f, " HEADER({})", Quoted(key)),
        }
    }
}

impl Display for CreateAsSelect {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CREATE {}{} {}{}",
            if_true(self.or_replace, "OR REPLACE "),
            self.kind,
            if_true(self.if_not_exists, "IF NOT EXISTS "),
            self.name
        )?;
        if !self.properties.is_empty() {
            write!(f, " WITH {}", self.properties)?;
        }
        write!(f, " AS {}", self.query)
    }
}

impl Display for InsertInto {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "INSERT INTO {}", self.target)?;
        if !self.properties.is_empty() {
            write!(f, " WITH {}", self.properties)?;
        }
        write!(f, " {}", self.query)
    }
}

impl Display for InsertValues {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "INSERT INTO {}", self.target)?;
        if !self.columns.is_empty() {
            write!(f, " ({})", Commas(&self.columns))?;
        }
        write!(f, " VALUES ({})", Commas(&self.values))
    }
}

impl Display for Show {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let extended = |extended: bool| if_true(extended, " EXTENDED");
        match self {
            Show::Streams { extended: e } => write!(f, "STREAMS{}", extended(*e)),
            Show::Tables { extended: e } => write!(f, "TABLES{}", extended(*e)),
            Show::Topics { all, extended: e } => {
                write!(f, "{}TOPICS{}", if_true(*all, "ALL "), extended(*e))
            }
            Show::Queries { extended: e } => write!(f, "QUERIES{}", extended(*e)),
            Show::Properties => f.write_str("PROPERTIES"),
            Show::Functions => f.write_str("FUNCTIONS"),
            Show::Types => f.write_str("TYPES"),
            Show::Variables => f.write_str("VARIABLES"),
            Show::Connectors { kind: None } => f.write_str("CONNECTORS"),
            Show::Connectors { kind: Some(kind) } => write!(f, "{kind} CONNECTORS"),
            Show::ConnectorPlugins => f.write_str("CONNECTOR PLUGINS"),
        }
    }
}

impl Display for Describe {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Describe::Source { name, extended } => {
                write!(f, "DESCRIBE {name}{}", if_true(*extended, " EXTENDED"))
            }
            Describe::Streams { extended } => {
                write!(f, "DESCRIBE STREAMS{}", if_true(*extended, " EXTENDED"))
            }
            Describe::Tables { extended } => {
                write!(f, "DESCRIBE TABLES{}", if_true(*extended, " EXTENDED"))
            }
            Describe::Function(name) => write!(f, "DESCRIBE FUNCTION {name}"),
            Describe::Connector(name) => write!(f, "DESCRIBE CONNECTOR {name}"),
        }
    }
}

impl Display for Print {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "PRINT {}", self.topic)?;
        if self.from_beginning {
            f.write_str(" FROM BEGINNING")?;
        }
        if let Some(interval) = self.interval {
            write!(f, " INTERVAL {interval}")?;
        }
        if let Some(limit) = self.limit {
            write!(f, " LIMIT {limit}")?;
        }
        Ok(())
    }
}

impl Display for QueryTarget {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            QueryTarget::All => f.write_str("ALL"),
            QueryTarget::Query(id) => write!(f, "{id}"),
        }
    }
}

impl Display for PropertyAssignment {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", Quoted(&self.name), Quoted(&self.value))
    }
}

impl Display for AssertTopic {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ASSERT {}TOPIC {}",
            if_true(self.not_exists, "NOT EXISTS "),
            self.topic
        )?;
        if !self.properties.is_empty() {
            write!(f, " WITH {}", self.properties)?;
        }
        if let Some(timeout) = &self.timeout {
            write!(f, " TIMEOUT {timeout}")?;
        }
        Ok(())
    }
}

impl Display for AssertSchema {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ASSERT {}SCHEMA",
            if_true(self.not_exists, "NOT EXISTS ")
        )?;
        if let Some(subject) = &self.subject {
            write!(f, " SUBJECT {subject}")?;
        }
        if let Some(id) = self.id {
            write!(f, " ID {id}")?;
        }
        if let Some(timeout) = &self.timeout {
            write!(f, " TIMEOUT {timeout}")?;
        }
        Ok(())
    }
}

impl Display for ConnectorKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectorKind::Source => "SOURCE",
            ConnectorKind::Sink => "SINK",
        })
    }
}

impl Display for CreateConnector {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CREATE {} CONNECTOR {}{}",
            self.kind,
            if_true(self.if_not_exists, "IF NOT EXISTS "),
            self.name
        )?;
        if !self.properties.is_empty() {
            write!(f, " WITH {}", self.properties)?;
        }
        Ok(())
    }
}

impl Display for Properties {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "({})", Commas(&self.0))
    }
}

impl Display for Property {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}
