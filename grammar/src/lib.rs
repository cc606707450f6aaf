//! `riffle-grammar`: ksqlDB-dialect SQL text to a typed AST, with positions in errors.
//!
//! ```
//! use riffle_grammar::{parse_statement, ast::{Statement, EmitMode}};
//!
//! let statement = parse_statement("select * from pageviews emit changes;").unwrap();
//! let Statement::Query(query) = &statement else { panic!("a query") };
//! assert_eq!(query.emit, Some(EmitMode::Changes));
//! assert_eq!(statement.to_string(), "SELECT * FROM PAGEVIEWS EMIT CHANGES");
//! ```
//!
//! The crate is a hand-written front layer ([`parser::KsqlParser`]) that owns the statements
//! and calls sqlparser for expressions; see `DESIGN.md` for why. It depends on nothing but
//! `sqlparser`.

pub mod ast;
pub mod dialect;
pub mod error;
pub mod lexer;
pub mod parser;
pub mod types;
mod validate;
pub mod variables;

use sqlparser::tokenizer::{Token, TokenWithSpan};

pub use ast::Statement;
pub use error::{ParseError, Position};
pub use variables::substitute_variables;

use lexer::StatementTokens;
use parser::KsqlParser;

/// A statement of a script, with its own text and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedStatement {
    pub statement: Statement,
    /// The statement as written, from its first token to its `;` inclusive.
    pub text: String,
    pub position: Position,
}

/// Parses a script of `;`-terminated statements.
///
/// Every statement must end with `;`, as in ksqlDB; an empty script gives no statements.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>, ParseError> {
    Ok(parse_script(sql)?
        .into_iter()
        .map(|parsed| parsed.statement)
        .collect())
}

/// Parses a script of `;`-terminated statements, keeping each statement's text.
pub fn parse_script(sql: &str) -> Result<Vec<ParsedStatement>, ParseError> {
    let mut line_starts = vec![0];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let statements = lexer::split_statements(lexer::tokenize(sql)?);
    let mut parsed = Vec::with_capacity(statements.len());
    for statement in statements {
        if !statement.terminated {
            return Err(ParseError::new(
                "Syntax Error: the statement is missing its terminating ';'",
                statement.end.end,
            ));
        }
        let start = byte_offset(sql, &line_starts, statement.start);
        let end = byte_offset(sql, &line_starts, statement.end.end.into());
        let position = statement.start;
        parsed.push(ParsedStatement {
            statement: parse_tokens(statement)?,
            text: sql.get(start..end).unwrap_or_default().to_string(),
            position,
        });
    }
    Ok(parsed)
}

/// One statement's text in a script, found without parsing it (so `${variables}` may still
/// be in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementText {
    pub text: String,
    pub position: Position,
}

/// Splits a script at its top-level `;` (outside strings, quoted names and comments),
/// keeping each statement's text for variable substitution and parsing.
pub fn split_script(sql: &str) -> Result<Vec<StatementText>, ParseError> {
    let mut line_starts = vec![0];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let statements = lexer::split_statements(lexer::tokenize_unchecked(sql)?);
    Ok(statements
        .into_iter()
        .map(|statement| {
            let start = byte_offset(sql, &line_starts, statement.start);
            let end = byte_offset(sql, &line_starts, statement.end.end.into());
            StatementText {
                text: sql.get(start..end).unwrap_or_default().to_string(),
                position: statement.start,
            }
        })
        .collect())
}

/// Parses exactly one statement; its terminating `;` is optional.
pub fn parse_statement(sql: &str) -> Result<Statement, ParseError> {
    let mut statements = lexer::split_statements(lexer::tokenize(sql)?).into_iter();
    let Some(first) = statements.next() else {
        return Err(ParseError::new(
            "Syntax Error: expected a statement, but the text is empty",
            Position::new(1, 1),
        ));
    };
    if let Some(second) = statements.next() {
        return Err(ParseError::new(
            "Syntax Error: expected one statement, but found a second one",
            second.start,
        ));
    }
    parse_tokens(first)
}

/// Parses a column list without its parentheses, as schemas are written in test
/// expectations: `ID STRING KEY, V BIGINT`.
pub fn parse_table_elements(sql: &str) -> Result<Vec<ast::ColumnDef>, ParseError> {
    let mut tokens = lexer::tokenize(sql)?;
    let end = tokens
        .iter()
        .rev()
        .find(|t| !lexer::is_trivia(&t.token) && t.token != Token::EOF)
        .map_or(sqlparser::tokenizer::Span::empty(), |t| {
            sqlparser::tokenizer::Span::new(t.span.end, t.span.end)
        });
    tokens.retain(|t| t.token != Token::EOF);
    tokens.push(TokenWithSpan::new(Token::EOF, end));
    KsqlParser::new(tokens).parse_table_elements()
}

fn parse_tokens(statement: StatementTokens) -> Result<Statement, ParseError> {
    let mut tokens = statement.tokens;
    tokens.push(TokenWithSpan::new(Token::EOF, statement.end));
    KsqlParser::new(tokens).parse_statement()
}

/// The byte offset of a 1-based line and character column.
fn byte_offset(sql: &str, line_starts: &[usize], position: Position) -> usize {
    let Some(&line_start) = line_starts.get(position.line.saturating_sub(1) as usize) else {
        return sql.len();
    };
    let line = &sql[line_start..];
    let column = position.column.saturating_sub(1) as usize;
    line_start
        + line
            .char_indices()
            .nth(column)
            .map_or(line.len(), |(offset, _)| offset)
}
