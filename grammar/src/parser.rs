//! [`KsqlParser`]: the statement-level front layer, in the style of DataFusion's `DFParser`.
//!
//! It owns ksqlDB's statements and clause order (`WINDOW`, `PARTITION BY`, `EMIT`, `WITHIN`,
//! `WITH (…)`) and hands expressions, select items and literals to sqlparser's `Parser`
//! configured with [`KsqlDialect`]. Entry points: [`crate::parse_statements`],
//! [`crate::parse_script`] and [`crate::parse_statement`].

use std::fmt::Display;

use sqlparser::ast::{Expr, Ident, SelectItem, Spanned, Value};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::ast::*;
use crate::dialect::{KsqlDialect, is_clause_word};
use crate::error::{ParseError, Position};
use crate::types::parse_type;
use crate::validate::check_expr;

type Result<T, E = ParseError> = std::result::Result<T, E>;

static DIALECT: KsqlDialect = KsqlDialect;

/// Parses one statement from its tokens; see [`crate::parse_script`] for whole scripts.
pub struct KsqlParser<'a> {
    parser: Parser<'a>,
}

impl std::fmt::Debug for KsqlParser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KsqlParser")
            .field("next", &self.parser.peek_token_ref().token)
            .finish()
    }
}

impl KsqlParser<'static> {
    /// A parser over the tokens of exactly one statement (no `;`), ending in an EOF token
    /// placed where the statement ends so that "the statement ended" errors have a position.
    pub fn new(tokens: Vec<TokenWithSpan>) -> Self {
        Self {
            parser: Parser::new(&DIALECT).with_tokens_with_locations(tokens),
        }
    }
}

impl KsqlParser<'_> {
    /// Parses one whole statement: every token must belong to it.
    pub fn parse_statement(&mut self) -> Result<Statement> {
        let statement = self.parse_statement_body()?;
        if self.parser.peek_token_ref().token != Token::EOF {
            return self.expected("the end of the statement (a ';')");
        }
        Ok(statement)
    }

    /// Parses `name type [KEY | …], …` (a column list without its parentheses) up to the end.
    pub fn parse_table_elements(&mut self) -> Result<Vec<ColumnDef>> {
        let columns = self.comma_separated(Self::parse_column_def)?;
        if self.parser.peek_token_ref().token != Token::EOF {
            return self.expected("',' or the end of the column list");
        }
        Ok(columns)
    }

    fn parse_statement_body(&mut self) -> Result<Statement> {
        let first = match &self.parser.peek_token_ref().token {
            Token::Word(word) if word.quote_style.is_none() => word.value.clone(),
            _ => String::new(),
        };
        match first.as_str() {
            "SELECT" => Ok(Statement::Query(Box::new(self.parse_query()?))),
            "CREATE" => self.parse_create(),
            "INSERT" => self.parse_insert(),
            "DROP" => self.parse_drop(),
            "ALTER" => self.parse_alter(),
            "SHOW" | "LIST" => self.parse_show(),
            "DESCRIBE" => self.parse_describe(),
            "EXPLAIN" => self.parse_explain(),
            "PRINT" => self.parse_print(),
            "TERMINATE" | "PAUSE" | "RESUME" => self.parse_query_control(),
            "SET" => {
                self.advance();
                Ok(Statement::SetProperty(self.parse_property_assignment()?))
            }
            "UNSET" => {
                self.advance();
                Ok(Statement::UnsetProperty(
                    self.parse_string("a property name")?,
                ))
            }
            "DEFINE" => self.parse_define(),
            "UNDEFINE" => {
                self.advance();
                Ok(Statement::UndefineVariable(
                    self.parse_ident("the variable name")?,
                ))
            }
            "ASSERT" => self.parse_assert(),
            "RUN" if self.peek_nth_word(1, "SCRIPT") => Err(self.error_here(
                "RUN SCRIPT is a command of the riffle shell, not a statement the server runs",
            )),
            _ => self.expected(
                "a statement (SELECT, CREATE, INSERT, DROP, ALTER, SHOW, LIST, DESCRIBE, \
                 EXPLAIN, PRINT, TERMINATE, PAUSE, RESUME, SET, UNSET, DEFINE, UNDEFINE or ASSERT)",
            ),
        }
    }

    // ---- SELECT -------------------------------------------------------------------------

    fn parse_query(&mut self) -> Result<Query> {
        self.expect_word("SELECT")?;
        let projection: Vec<SelectItem> = match self.parser.parse_projection() {
            Ok(projection) => projection,
            // `SELECT a, FROM s`: sqlparser reports this one token late.
            Err(_) if self.current_is_word("FROM") => {
                self.parser.prev_token();
                return self.expected("an expression");
            }
            Err(error) => return Err(ParseError::from_sqlparser(error, self.position())),
        };
        self.reject_reserved_select_items(&projection)?;
        for item in &projection {
            check_expr(item)?;
        }
        self.expect_word("FROM")?;
        let from = self.parse_relation()?;
        let window = if self.parse_word("WINDOW") {
            Some(self.parse_window()?)
        } else {
            None
        };
        let selection = if self.parse_word("WHERE") {
            Some(self.parse_expr()?)
        } else {
            None
        };
        let group_by = if self.parse_words(&["GROUP", "BY"]) {
            self.parse_grouping_list()?
        } else {
            Vec::new()
        };
        let partition_by = if self.parse_words(&["PARTITION", "BY"]) {
            if self.parser.peek_token_ref().token == Token::LParen
                && self.parser.peek_nth_token_ref(1).token == Token::RParen
            {
                return Err(self.error_here("PARTITION BY requires at least one expression"));
            }
            self.parse_grouping_list()?
        } else {
            Vec::new()
        };
        let having = if self.parse_word("HAVING") {
            Some(self.parse_expr()?)
        } else {
            None
        };
        let emit = if self.parse_word("EMIT") {
            if self.parse_word("CHANGES") {
                Some(EmitMode::Changes)
            } else if self.parse_word("FINAL") {
                Some(EmitMode::Final)
            } else {
                return self.expected("CHANGES or FINAL after EMIT");
            }
        } else {
            None
        };
        let limit = if self.parse_word("LIMIT") {
            // ksqlDB's words for the two common mistakes in a pull query.
            match &self.parser.peek_token_ref().token {
                _ if emit.is_some() => {}
                Token::Minus => {
                    return Err(self.error_here(
                        "Pull queries don't support negative integers in the LIMIT clause. See \
                         https://cnfl.io/queries for more info."
                            .to_string(),
                    ));
                }
                Token::Number(digits, _) if !digits.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(self.error_here(
                        "Failed to prepare statement: Value must be integer for command: LIMIT"
                            .to_string(),
                    ));
                }
                _ => {}
            }
            Some(self.parse_uint("a row count after LIMIT")?)
        } else {
            None
        };
        if let Some(word) = self.peek_clause_word() {
            return Err(self.error_here(format!(
                "Syntax Error: the {word} clause is out of place; ksqlDB's clause order is \
                 SELECT … FROM … [WINDOW …] [WHERE …] [GROUP BY …] [PARTITION BY …] [HAVING …] \
                 [EMIT CHANGES | EMIT FINAL] [LIMIT n]"
            )));
        }
        Ok(Query {
            projection,
            from,
            window,
            selection,
            group_by,
            partition_by,
            having,
            emit,
            limit,
        })
    }

    /// sqlparser reads `SELECT a b` with `b` as an alias; a ksqlDB clause word in that place
    /// means a missing `FROM` or a misplaced clause, which we report instead.
    fn reject_reserved_select_items(&self, projection: &[SelectItem]) -> Result<()> {
        for item in projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item
                && alias.quote_style == Some('\'')
            {
                return Err(ParseError::new(
                    format!(
                        "Syntax Error: '{}' is a string, not a column alias; quote aliases \
                         with backticks or double quotes",
                        alias.value
                    ),
                    Position::from(item.span().start),
                ));
            }
        }
        Ok(())
    }

    /// `GROUP BY` and `PARTITION BY` take ksqlDB's value expressions, `a, b` or `(a, b)`:
    /// no comparison or boolean operator outside parentheses (`GROUP BY name AND age` is a
    /// syntax error at `AND`), and a parenthesized list only as the whole list
    /// (`GROUP BY a, (b, c)` is one).
    fn parse_grouping_list(&mut self) -> Result<Vec<Expr>> {
        let mut expressions = self.comma_separated(|this| {
            let limit = sqlparser::dialect::Dialect::prec_value(
                &DIALECT,
                sqlparser::dialect::Precedence::Eq,
            );
            let expr = this.sql(|p| p.parse_subexpr(limit))?;
            check_expr(&expr)?;
            Ok(expr)
        })?;
        if let [Expr::Tuple(items)] = expressions.as_mut_slice() {
            return Ok(std::mem::take(items));
        }
        if let Some(Expr::Tuple(items)) = expressions.iter().find(|e| matches!(e, Expr::Tuple(_))) {
            // At the comma after the first expression, as ksqlDB points.
            let after_first = items[0].span().end;
            return Err(ParseError::new(
                "Syntax Error: expected ')', but found ','; a parenthesized list of \
                 expressions is only the whole GROUP BY or PARTITION BY list",
                Position::from(after_first),
            ));
        }
        Ok(expressions)
    }

    fn parse_relation(&mut self) -> Result<Relation> {
        let source = self.parse_source_ref()?;
        let mut joins = Vec::new();
        while let Some(kind) = self.parse_join_kind()? {
            let source = self.parse_source_ref()?;
            let within = if self.parse_word("WITHIN") {
                Some(self.parse_join_window()?)
            } else {
                None
            };
            if !self.parse_word("ON") {
                return self.expected("ON and the join condition");
            }
            let on = self.parse_expr()?;
            joins.push(Join {
                kind,
                source,
                within,
                on,
            });
        }
        Ok(Relation { source, joins })
    }

    fn parse_join_kind(&mut self) -> Result<Option<JoinKind>> {
        let kind = if self.parse_word("JOIN") {
            return Ok(Some(JoinKind::Inner));
        } else if self.parse_word("INNER") {
            JoinKind::Inner
        } else if self.parse_word("LEFT") {
            self.parse_word("OUTER");
            JoinKind::Left
        } else if self.parse_word("RIGHT") {
            self.parse_word("OUTER");
            JoinKind::Right
        } else if self.parse_word("FULL") {
            self.parse_word("OUTER");
            JoinKind::Full
        } else {
            return Ok(None);
        };
        self.expect_word("JOIN")?;
        Ok(Some(kind))
    }

    /// `name [[AS] alias]`; ksqlDB sources are always named streams or tables.
    fn parse_source_ref(&mut self) -> Result<SourceRef> {
        if self.parser.peek_token_ref().token == Token::LParen {
            return Err(self.error_here(
                "Syntax Error: subqueries are not supported; ksqlDB reads FROM a named stream \
                 or table",
            ));
        }
        let name = self.parse_ident("a stream or table name")?;
        let alias = if self.parse_word("AS") {
            if matches!(&self.parser.peek_token_ref().token,
                Token::Word(word) if word.quote_style.is_none() && is_clause_word(&word.value))
            {
                return self.expected("an alias after AS (quote it if it is a keyword)");
            }
            Some(self.parse_ident("an alias after AS")?)
        } else {
            match &self.parser.peek_token_ref().token {
                Token::Word(word) if word.quote_style.is_some() || !is_clause_word(&word.value) => {
                    Some(self.parse_ident("an alias")?)
                }
                _ => None,
            }
        };
        Ok(SourceRef { name, alias })
    }

    /// After `WITHIN`: `1 HOUR` or `(10 SECONDS, 1 MINUTE)`, then `[GRACE PERIOD …]`.
    fn parse_join_window(&mut self) -> Result<JoinWindow> {
        let (before, after) = if self.parser.consume_token(&Token::LParen) {
            let before = self.parse_time_span()?;
            self.expect_token(Token::Comma)?;
            let after = self.parse_time_span()?;
            self.expect_token(Token::RParen)?;
            (before, Some(after))
        } else {
            (self.parse_time_span()?, None)
        };
        let grace = self.parse_grace_period()?;
        Ok(JoinWindow {
            before,
            after,
            grace,
        })
    }

    fn parse_grace_period(&mut self) -> Result<Option<TimeSpan>> {
        if self.parse_words(&["GRACE", "PERIOD"]) {
            Ok(Some(self.parse_time_span()?))
        } else {
            Ok(None)
        }
    }

    /// After `WINDOW`: `[name] TUMBLING (…) | HOPPING (…) | SESSION (…)`.
    fn parse_window(&mut self) -> Result<WindowSpec> {
        // ksqlDB still accepts a window name before the type; it has no meaning, so it is
        // not kept.
        const WINDOW_TYPES: [&str; 3] = ["TUMBLING", "HOPPING", "SESSION"];
        if matches!(self.parser.peek_token_ref().token, Token::Word(_))
            && !WINDOW_TYPES.iter().any(|w| self.peek_word(w))
            && WINDOW_TYPES.iter().any(|w| self.peek_nth_word(1, w))
        {
            self.advance();
        }
        if self.parse_word("TUMBLING") {
            self.expect_token(Token::LParen)?;
            self.expect_word("SIZE")?;
            let size = self.parse_time_span()?;
            let (retention, grace) = self.parse_window_options()?;
            Ok(WindowSpec::Tumbling {
                size,
                retention,
                grace,
            })
        } else if self.parse_word("HOPPING") {
            self.expect_token(Token::LParen)?;
            self.expect_word("SIZE")?;
            let size = self.parse_time_span()?;
            self.expect_token(Token::Comma)?;
            self.expect_word("ADVANCE")?;
            self.expect_word("BY")?;
            let advance = self.parse_time_span()?;
            let (retention, grace) = self.parse_window_options()?;
            Ok(WindowSpec::Hopping {
                size,
                advance,
                retention,
                grace,
            })
        } else if self.parse_word("SESSION") {
            self.expect_token(Token::LParen)?;
            let gap = self.parse_time_span()?;
            let (retention, grace) = self.parse_window_options()?;
            Ok(WindowSpec::Session {
                gap,
                retention,
                grace,
            })
        } else {
            self.expected("a window type (TUMBLING, HOPPING or SESSION)")
        }
    }

    /// `[, RETENTION n unit] [, GRACE PERIOD n unit] )`
    fn parse_window_options(&mut self) -> Result<(Option<TimeSpan>, Option<TimeSpan>)> {
        let mut retention = None;
        let mut grace = None;
        while self.parser.consume_token(&Token::Comma) {
            if retention.is_none() && grace.is_none() && self.parse_word("RETENTION") {
                retention = Some(self.parse_time_span()?);
            } else if grace.is_none() && self.parse_words(&["GRACE", "PERIOD"]) {
                grace = Some(self.parse_time_span()?);
            } else {
                return self.expected("RETENTION or GRACE PERIOD (in that order)");
            }
        }
        self.expect_token(Token::RParen)?;
        Ok((retention, grace))
    }

    /// `10 SECONDS`
    fn parse_time_span(&mut self) -> Result<TimeSpan> {
        let value = self.parse_uint("a duration (such as 10 SECONDS)")?;
        let unit = match &self.parser.peek_token_ref().token {
            Token::Word(word) if word.quote_style.is_none() => TimeUnit::from_word(&word.value),
            _ => None,
        };
        match unit {
            Some(unit) => {
                self.advance();
                Ok(TimeSpan::new(value, unit))
            }
            None => self.expected("a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS)"),
        }
    }

    // ---- CREATE ---------------------------------------------------------------------------

    fn parse_create(&mut self) -> Result<Statement> {
        self.expect_word("CREATE")?;
        let or_replace = self.parse_words(&["OR", "REPLACE"]);
        if !or_replace {
            if self.parse_word("TYPE") {
                return self.parse_create_type();
            }
            if self.peek_nth_word(1, "CONNECTOR")
                && (self.peek_word("SOURCE") || self.peek_word("SINK"))
            {
                return self.parse_create_connector();
            }
        }
        let is_source = self.parse_word("SOURCE");
        let kind = self.parse_source_kind("STREAM or TABLE after CREATE")?;
        let if_not_exists = self.parse_words(&["IF", "NOT", "EXISTS"]);
        let name = self.parse_ident("the name of the stream or table to create")?;
        let columns = if self.parser.peek_token_ref().token == Token::LParen {
            self.parse_column_list()?
        } else {
            Vec::new()
        };
        let properties = self.parse_optional_with()?;
        if self.peek_word("AS") {
            if is_source {
                return Err(self.error_here(format!(
                    "Syntax Error: CREATE SOURCE {kind} cannot have AS SELECT; a source \
                     {} is read-only",
                    kind.to_string().to_lowercase()
                )));
            }
            if !columns.is_empty() {
                return Err(self.error_here(format!(
                    "Syntax Error: CREATE {kind} … AS SELECT takes its columns from the query; \
                     remove the column list"
                )));
            }
            self.advance();
            let query = self.parse_query()?;
            return Ok(Statement::CreateAsSelect(Box::new(CreateAsSelect {
                kind,
                or_replace,
                if_not_exists,
                name,
                properties,
                query,
            })));
        }
        Ok(Statement::CreateSource(CreateSource {
            kind,
            or_replace,
            is_source,
            if_not_exists,
            name,
            columns,
            properties,
        }))
    }

    fn parse_source_kind(&mut self, what: &str) -> Result<SourceKind> {
        if self.parse_word("STREAM") {
            Ok(SourceKind::Stream)
        } else if self.parse_word("TABLE") {
            Ok(SourceKind::Table)
        } else {
            self.expected(what)
        }
    }

    /// `( column, … )`
    fn parse_column_list(&mut self) -> Result<Vec<ColumnDef>> {
        self.expect_token(Token::LParen)?;
        let mut columns = vec![self.parse_column_def()?];
        while self.parser.consume_token(&Token::Comma) {
            columns.push(self.parse_column_def()?);
        }
        self.expect_token(Token::RParen)?;
        Ok(columns)
    }

    /// `name type [KEY | PRIMARY KEY | HEADERS | HEADER('key')]`
    fn parse_column_def(&mut self) -> Result<ColumnDef> {
        let name = self.parse_ident("a column name")?;
        let data_type = self.sql(parse_type)?;
        let constraint = if self.parse_word("KEY") {
            Some(ColumnConstraint::Key)
        } else if self.parse_words(&["PRIMARY", "KEY"]) {
            Some(ColumnConstraint::PrimaryKey)
        } else if self.parse_word("HEADERS") {
            Some(ColumnConstraint::Headers)
        } else if self.parse_word("HEADER") {
            self.expect_token(Token::LParen)?;
            let key = self.parse_string("the header key, as a string")?;
            self.expect_token(Token::RParen)?;
            Some(ColumnConstraint::Header(key))
        } else {
            None
        };
        Ok(ColumnDef {
            name,
            data_type,
            constraint,
        })
    }

    fn parse_create_type(&mut self) -> Result<Statement> {
        let if_not_exists = self.parse_words(&["IF", "NOT", "EXISTS"]);
        let name = self.parse_ident("the type name")?;
        self.expect_word("AS")?;
        let data_type = self.sql(parse_type)?;
        Ok(Statement::CreateType(CreateType {
            if_not_exists,
            name,
            data_type,
        }))
    }

    fn parse_create_connector(&mut self) -> Result<Statement> {
        let kind = if self.parse_word("SOURCE") {
            ConnectorKind::Source
        } else {
            self.expect_word("SINK")?;
            ConnectorKind::Sink
        };
        self.expect_word("CONNECTOR")?;
        let if_not_exists = self.parse_words(&["IF", "NOT", "EXISTS"]);
        let name = self.parse_ident("the connector name")?;
        if !self.peek_word("WITH") {
            return self.expected("WITH and the connector's configuration");
        }
        let properties = self.parse_optional_with()?;
        Ok(Statement::CreateConnector(CreateConnector {
            kind,
            if_not_exists,
            name,
            properties,
        }))
    }

    /// `[WITH (name = literal, …)]`
    fn parse_optional_with(&mut self) -> Result<Properties> {
        if !self.parse_word("WITH") {
            return Ok(Properties::default());
        }
        self.expect_token(Token::LParen)?;
        let mut properties = vec![self.parse_property()?];
        while self.parser.consume_token(&Token::Comma) {
            properties.push(self.parse_property()?);
        }
        self.expect_token(Token::RParen)?;
        Ok(Properties(properties))
    }

    fn parse_property(&mut self) -> Result<Property> {
        let token = self.parser.next_token();
        let name = match token.token {
            Token::Word(word) => word.into_ident(token.span),
            Token::SingleQuotedString(text) => Ident::with_quote('\'', text),
            _ => {
                self.parser.prev_token();
                return self.expected("a property name");
            }
        };
        self.expect_token(Token::Eq)?;
        let value = self.parse_literal()?;
        Ok(Property { name, value })
    }

    /// A literal property value: a string, a (signed) number, `TRUE`, `FALSE` or `NULL`.
    fn parse_literal(&mut self) -> Result<Value> {
        let sign = if self.parser.consume_token(&Token::Minus) {
            "-"
        } else {
            let _ = self.parser.consume_token(&Token::Plus);
            ""
        };
        let value = match &self.parser.peek_token_ref().token {
            Token::Number(..) | Token::SingleQuotedString(_) => {
                self.sql(|p| p.parse_value())?.value
            }
            Token::Word(word) if word.quote_style.is_none() => match word.value.as_str() {
                "TRUE" | "FALSE" | "NULL" => self.sql(|p| p.parse_value())?.value,
                _ => return self.expected("a literal value (a 'string', a number, TRUE or FALSE)"),
            },
            _ => return self.expected("a literal value (a 'string', a number, TRUE or FALSE)"),
        };
        match value {
            Value::Number(digits, long) if !sign.is_empty() => {
                Ok(Value::Number(format!("{sign}{digits}"), long))
            }
            _ if !sign.is_empty() => Err(self.error_here("Syntax Error: only numbers take a sign")),
            value => Ok(value),
        }
    }

    // ---- INSERT ---------------------------------------------------------------------------

    fn parse_insert(&mut self) -> Result<Statement> {
        self.expect_word("INSERT")?;
        self.expect_word("INTO")?;
        let target = self.parse_ident("the stream or table to insert into")?;
        if self.parser.peek_token_ref().token == Token::LParen || self.peek_word("VALUES") {
            let columns = if self.parser.consume_token(&Token::LParen) {
                let columns = self.comma_separated(|p| p.parse_ident("a column name"))?;
                self.expect_token(Token::RParen)?;
                columns
            } else {
                Vec::new()
            };
            self.expect_word("VALUES")?;
            self.expect_token(Token::LParen)?;
            let values = self.parse_expr_list()?;
            self.expect_token(Token::RParen)?;
            return Ok(Statement::InsertValues(InsertValues {
                target,
                columns,
                values,
            }));
        }
        let properties = self.parse_optional_with()?;
        if !self.peek_word("SELECT") {
            return self.expected("SELECT, VALUES or a column list after INSERT INTO name");
        }
        let query = self.parse_query()?;
        Ok(Statement::InsertInto(Box::new(InsertInto {
            target,
            properties,
            query,
        })))
    }

    // ---- DROP / ALTER -------------------------------------------------------------------------

    fn parse_drop(&mut self) -> Result<Statement> {
        self.expect_word("DROP")?;
        if self.parse_word("TYPE") {
            let if_exists = self.parse_words(&["IF", "EXISTS"]);
            let name = self.parse_ident("the type name")?;
            return Ok(Statement::DropType(DropType { if_exists, name }));
        }
        if self.parse_word("CONNECTOR") {
            let if_exists = self.parse_words(&["IF", "EXISTS"]);
            let name = self.parse_ident("the connector name")?;
            return Ok(Statement::DropConnector { if_exists, name });
        }
        let kind = self.parse_source_kind("STREAM, TABLE, TYPE or CONNECTOR after DROP")?;
        let if_exists = self.parse_words(&["IF", "EXISTS"]);
        let name = self.parse_ident("the stream or table to drop")?;
        let delete_topic = self.parse_words(&["DELETE", "TOPIC"]);
        Ok(Statement::DropSource(DropSource {
            kind,
            if_exists,
            name,
            delete_topic,
        }))
    }

    fn parse_alter(&mut self) -> Result<Statement> {
        self.expect_word("ALTER")?;
        if self.parse_word("SYSTEM") {
            return Ok(Statement::AlterSystem(self.parse_property_assignment()?));
        }
        let kind = self.parse_source_kind("STREAM, TABLE or SYSTEM after ALTER")?;
        let name = self.parse_ident("the stream or table to alter")?;
        let mut add_columns = Vec::new();
        loop {
            self.expect_word("ADD")?;
            self.parse_word("COLUMN");
            add_columns.push(self.parse_column_def()?);
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        Ok(Statement::AlterSource(AlterSource {
            kind,
            name,
            add_columns,
        }))
    }

    // ---- Introspection ------------------------------------------------------------------------

    fn parse_show(&mut self) -> Result<Statement> {
        self.advance(); // SHOW or LIST
        let show = if self.parse_word("STREAMS") {
            Show::Streams {
                extended: self.parse_word("EXTENDED"),
            }
        } else if self.parse_word("TABLES") {
            Show::Tables {
                extended: self.parse_word("EXTENDED"),
            }
        } else if self.peek_word("TOPICS") || self.peek_word("ALL") {
            let all = self.parse_word("ALL");
            self.expect_word("TOPICS")?;
            Show::Topics {
                all,
                extended: self.parse_word("EXTENDED"),
            }
        } else if self.parse_word("QUERIES") {
            Show::Queries {
                extended: self.parse_word("EXTENDED"),
            }
        } else if self.parse_word("PROPERTIES") {
            Show::Properties
        } else if self.parse_word("FUNCTIONS") {
            Show::Functions
        } else if self.parse_word("TYPES") {
            Show::Types
        } else if self.parse_word("VARIABLES") {
            Show::Variables
        } else if self.parse_word("CONNECTORS") {
            Show::Connectors { kind: None }
        } else if self.parse_words(&["CONNECTOR", "PLUGINS"]) {
            Show::ConnectorPlugins
        } else if self.peek_nth_word(1, "CONNECTORS")
            && (self.peek_word("SOURCE") || self.peek_word("SINK"))
        {
            let kind = if self.parse_word("SOURCE") {
                ConnectorKind::Source
            } else {
                self.advance();
                ConnectorKind::Sink
            };
            self.advance(); // CONNECTORS
            Show::Connectors { kind: Some(kind) }
        } else {
            return self.expected(
                "what to list: STREAMS, TABLES, TOPICS, QUERIES, PROPERTIES, FUNCTIONS, TYPES, \
                 VARIABLES or CONNECTORS",
            );
        };
        Ok(Statement::Show(show))
    }

    fn parse_describe(&mut self) -> Result<Statement> {
        self.expect_word("DESCRIBE")?;
        let next_is_end = |parser: &Self, n: usize| {
            matches!(parser.parser.peek_nth_token_ref(n).token, Token::EOF)
                || parser.peek_nth_word(n, "EXTENDED")
        };
        let describe = if self.peek_word("STREAMS") && next_is_end(self, 1) {
            self.advance();
            Describe::Streams {
                extended: self.parse_word("EXTENDED"),
            }
        } else if self.peek_word("TABLES") && next_is_end(self, 1) {
            self.advance();
            Describe::Tables {
                extended: self.parse_word("EXTENDED"),
            }
        } else if self.peek_word("FUNCTION") && !next_is_end(self, 1) {
            self.advance();
            Describe::Function(self.parse_ident("a function name")?)
        } else if self.peek_word("CONNECTOR") && !next_is_end(self, 1) {
            self.advance();
            Describe::Connector(self.parse_ident("a connector name")?)
        } else {
            let name = self.parse_ident("a stream or table name")?;
            Describe::Source {
                name,
                extended: self.parse_word("EXTENDED"),
            }
        };
        Ok(Statement::Describe(describe))
    }

    fn parse_explain(&mut self) -> Result<Statement> {
        self.expect_word("EXPLAIN")?;
        if self.peek_word("SELECT") || self.peek_word("CREATE") || self.peek_word("INSERT") {
            let statement = self.parse_statement_body()?;
            return Ok(Statement::Explain(Explain::Statement(Box::new(statement))));
        }
        Ok(Statement::Explain(Explain::QueryId(
            self.parse_ident("a statement or a query id after EXPLAIN")?,
        )))
    }

    fn parse_print(&mut self) -> Result<Statement> {
        self.expect_word("PRINT")?;
        let topic = self.parse_resource_name("the topic to print")?;
        let from_beginning = self.parse_words(&["FROM", "BEGINNING"]);
        let interval = if self.parse_word("INTERVAL") || self.parse_word("SAMPLE") {
            Some(self.parse_uint("how often to print a record (INTERVAL n)")?)
        } else {
            None
        };
        let limit = if self.parse_word("LIMIT") {
            Some(self.parse_uint("a record count after LIMIT")?)
        } else {
            None
        };
        Ok(Statement::Print(Print {
            topic,
            from_beginning,
            interval,
            limit,
        }))
    }

    fn parse_query_control(&mut self) -> Result<Statement> {
        let verb = self.parser.next_token().token.to_string();
        let target = if self.parse_word("ALL") {
            QueryTarget::All
        } else {
            QueryTarget::Query(self.parse_ident("a query id or ALL")?)
        };
        Ok(match verb.as_str() {
            "TERMINATE" => Statement::Terminate(target),
            "PAUSE" => Statement::Pause(target),
            _ => Statement::Resume(target),
        })
    }

    /// `'name' = 'value'`
    fn parse_property_assignment(&mut self) -> Result<PropertyAssignment> {
        let name = self.parse_string("a property name, as a string")?;
        self.expect_token(Token::Eq)?;
        let value = self.parse_string("a property value, as a string")?;
        Ok(PropertyAssignment { name, value })
    }

    fn parse_define(&mut self) -> Result<Statement> {
        self.expect_word("DEFINE")?;
        let name = self.parse_ident("the variable name")?;
        self.expect_token(Token::Eq)?;
        let value = self.parse_string("the variable's value, as a string")?;
        Ok(Statement::DefineVariable { name, value })
    }

    fn parse_assert(&mut self) -> Result<Statement> {
        self.expect_word("ASSERT")?;
        let not_exists = self.parse_words(&["NOT", "EXISTS"]);
        if self.parse_word("TOPIC") {
            let topic = self.parse_resource_name("the topic name")?;
            let properties = self.parse_optional_with()?;
            let timeout = self.parse_timeout()?;
            return Ok(Statement::AssertTopic(AssertTopic {
                not_exists,
                topic,
                properties,
                timeout,
            }));
        }
        if self.parse_word("SCHEMA") {
            let subject = if self.parse_word("SUBJECT") {
                Some(self.parse_resource_name("the subject name")?)
            } else {
                None
            };
            let id = if self.parse_word("ID") {
                Some(self.parse_uint("a schema id")?)
            } else {
                None
            };
            if subject.is_none() && id.is_none() {
                return self.expected("SUBJECT name or ID n");
            }
            let timeout = self.parse_timeout()?;
            return Ok(Statement::AssertSchema(AssertSchema {
                not_exists,
                subject,
                id,
                timeout,
            }));
        }
        if !not_exists
            && (self.peek_word("VALUES")
                || self.peek_word("NULL")
                || self.peek_word("STREAM")
                || self.peek_word("TABLE"))
        {
            return Err(self.error_here(
                "ASSERT VALUES, ASSERT NULL VALUES, ASSERT STREAM and ASSERT TABLE belong to the \
                 test runner, not to the server; the server accepts ASSERT TOPIC and ASSERT SCHEMA",
            ));
        }
        self.expected("TOPIC or SCHEMA after ASSERT")
    }

    fn parse_timeout(&mut self) -> Result<Option<TimeSpan>> {
        if self.parse_word("TIMEOUT") {
            Ok(Some(self.parse_time_span()?))
        } else {
            Ok(None)
        }
    }

    // ---- Tokens -------------------------------------------------------------------------------

    fn parse_expr(&mut self) -> Result<Expr> {
        let expr = self.sql(|p| p.parse_expr())?;
        check_expr(&expr)?;
        Ok(expr)
    }

    fn parse_expr_list(&mut self) -> Result<Vec<Expr>> {
        self.comma_separated(Self::parse_expr)
    }

    /// An identifier (a word, or a `"quoted"` or `` `quoted` `` name); `what` names it in
    /// the error when something else is found.
    fn parse_ident(&mut self, what: &str) -> Result<Ident> {
        let token = self.parser.peek_token();
        match token.token {
            Token::Word(word) => {
                self.advance();
                Ok(word.into_ident(token.span))
            }
            _ => self.expected(what),
        }
    }

    /// An identifier or a `'string'` (topic and subject names that keep their case).
    fn parse_resource_name(&mut self, what: &str) -> Result<Ident> {
        let token = self.parser.peek_token();
        match token.token {
            Token::Word(word) => {
                self.advance();
                Ok(word.into_ident(token.span))
            }
            Token::SingleQuotedString(text) => {
                self.advance();
                Ok(Ident::with_quote_and_span('\'', token.span, text))
            }
            _ => self.expected(what),
        }
    }

    fn parse_string(&mut self, what: &str) -> Result<String> {
        match &self.parser.peek_token_ref().token {
            Token::SingleQuotedString(text) => {
                let text = text.clone();
                self.advance();
                Ok(text)
            }
            _ => self.expected(what),
        }
    }

    fn parse_uint(&mut self, what: &str) -> Result<u64> {
        match &self.parser.peek_token_ref().token {
            Token::Number(digits, _) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                match digits.parse() {
                    Ok(value) => {
                        self.advance();
                        Ok(value)
                    }
                    Err(_) => Err(self.error_here(format!("{digits} is too large"))),
                }
            }
            _ => self.expected(what),
        }
    }

    fn comma_separated<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut items = vec![item(self)?];
        while self.parser.consume_token(&Token::Comma) {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn advance(&mut self) {
        self.parser.next_token();
    }

    fn current_is_word(&self, expected: &str) -> bool {
        matches!(
            &self.parser.get_current_token().token,
            Token::Word(word) if word.quote_style.is_none() && word.value == expected
        )
    }

    fn peek_word(&self, expected: &str) -> bool {
        self.peek_nth_word(0, expected)
    }

    fn peek_nth_word(&self, n: usize, expected: &str) -> bool {
        matches!(
            &self.parser.peek_nth_token_ref(n).token,
            Token::Word(word) if word.quote_style.is_none() && word.value == expected
        )
    }

    /// The unquoted clause keyword at the current token, if any.
    fn peek_clause_word(&self) -> Option<String> {
        match &self.parser.peek_token_ref().token {
            Token::Word(word)
                if word.quote_style.is_none()
                    && matches!(
                        word.value.as_str(),
                        "WINDOW" | "WHERE" | "GROUP" | "PARTITION" | "HAVING" | "EMIT" | "LIMIT"
                    ) =>
            {
                let mut clause = word.value.clone();
                if matches!(clause.as_str(), "GROUP" | "PARTITION") {
                    clause.push_str(" BY");
                }
                Some(clause)
            }
            _ => None,
        }
    }

    fn parse_word(&mut self, expected: &str) -> bool {
        if self.peek_word(expected) {
            self.advance();
            true
        } else {
            false
        }
    }

    /// Consumes all of `words` in sequence, or none of them.
    fn parse_words(&mut self, words: &[&str]) -> bool {
        if words
            .iter()
            .enumerate()
            .all(|(n, w)| self.peek_nth_word(n, w))
        {
            for _ in words {
                self.advance();
            }
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, expected: &str) -> Result<()> {
        if self.parse_word(expected) {
            Ok(())
        } else {
            self.expected(expected)
        }
    }

    fn expect_token(&mut self, expected: Token) -> Result<()> {
        if self.parser.consume_token(&expected) {
            Ok(())
        } else {
            self.expected(format!("'{expected}'"))
        }
    }

    fn position(&self) -> Position {
        Position::from(self.parser.peek_token_ref().span.start)
    }

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(message, self.position())
    }

    /// "expected X, but found Y" at the next token.
    fn expected<T>(&self, what: impl Display) -> Result<T> {
        let found = &self.parser.peek_token_ref().token;
        let message = match found {
            Token::EOF => format!("Syntax Error: expected {what}, but the statement ended"),
            Token::SingleQuotedString(_) => {
                format!("Syntax Error: expected {what}, but found the string {found}")
            }
            found => format!("Syntax Error: expected {what}, but found '{found}'"),
        };
        Err(self.error_here(message))
    }

    /// Runs a sqlparser parse function, converting its error.
    fn sql<T>(
        &mut self,
        parse: impl FnOnce(&mut Parser<'_>) -> Result<T, ParserError>,
    ) -> Result<T> {
        let result = parse(&mut self.parser);
        result.map_err(|error| ParseError::from_sqlparser(error, self.position()))
    }
}
