//! Parse errors with the line and column of the offending token.
//!
//! [`ParseError`] is the only error type of the crate; sqlparser's own errors are converted
//! by [`ParseError::from_sqlparser`] so that every message reads as a sentence and carries a
//! position.

use std::fmt;

use sqlparser::parser::ParserError;
use sqlparser::tokenizer::{Location, TokenizerError};

/// A position in the SQL text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    pub fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }

    /// Moves a position found in a statement's own text to where that statement starts in a
    /// larger script.
    pub fn offset_by(self, origin: Position) -> Position {
        if self.line <= 1 {
            Position::new(origin.line, origin.column + self.column.saturating_sub(1))
        } else {
            Position::new(origin.line + self.line - 1, self.column)
        }
    }
}

impl From<Location> for Position {
    fn from(location: Location) -> Self {
        Position::new(location.line, location.column)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}", self.line, self.column)
    }
}

/// A statement the user wrote that is not valid ksqlDB SQL.
///
/// The message names what was found and what was expected; `position` points at the first
/// character of the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{position}: {message}", if *.preparing { "Failed to prepare statement: " } else { "" })]
pub struct ParseError {
    pub message: String,
    pub position: Position,
    /// Found while building the statement from valid syntax (a literal out of range),
    /// which ksqlDB reports as "Failed to prepare statement: …".
    pub preparing: bool,
}

impl ParseError {
    pub fn new(message: impl Into<String>, position: impl Into<Position>) -> Self {
        Self {
            message: message.into(),
            position: position.into(),
            preparing: false,
        }
    }

    /// The same error, found while preparing the statement rather than reading its syntax.
    pub fn preparing(mut self) -> Self {
        self.preparing = true;
        self
    }

    /// Converts sqlparser's error, whose position is only embedded in its message text
    /// (`"… at Line: 1, Column: 8"`); `fallback` is used when the message has none.
    pub fn from_sqlparser(error: ParserError, fallback: Position) -> Self {
        let text = match error {
            ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
            ParserError::RecursionLimitExceeded => {
                return ParseError::new(
                    "the statement nests expressions or types too deeply; simplify it",
                    fallback,
                );
            }
        };
        let (message, position) = split_location(&text).unwrap_or((&text, fallback));
        ParseError::new(rephrase(message), position)
    }

    pub fn from_tokenizer(error: TokenizerError) -> Self {
        let position = if error.location.line == 0 {
            Position::new(1, 1)
        } else {
            error.location.into()
        };
        ParseError::new(rephrase(&error.message), position)
    }

    /// The same error, with its position moved by the start of the statement in a script.
    pub fn offset_by(mut self, origin: Position) -> Self {
        self.position = self.position.offset_by(origin);
        self
    }
}

fn split_location(text: &str) -> Option<(&str, Position)> {
    let (message, location) = text.rsplit_once(" at Line: ")?;
    let (line, column) = location.split_once(", Column: ")?;
    let position = Position::new(line.trim().parse().ok()?, column.trim().parse().ok()?);
    Some((message, position))
}

/// Turns sqlparser's `Expected: X, found: Y` into a sentence.
fn rephrase(message: &str) -> String {
    let expectation = message
        .strip_prefix("Expected: ")
        .or_else(|| message.strip_prefix("Expected "));
    if let Some(rest) = expectation
        && let Some((expected, found)) = rest.rsplit_once(", found: ")
    {
        // Punctuation reads better quoted: "expected ','" rather than "expected ,".
        let expected = if expected.chars().any(char::is_alphanumeric) {
            expected.to_string()
        } else {
            format!("'{expected}'")
        };
        return if found == "EOF" {
            format!("Syntax Error: expected {expected}, but the statement ended")
        } else if found.starts_with('\'') {
            format!("Syntax Error: expected {expected}, but found the string {found}")
        } else {
            format!("Syntax Error: expected {expected}, but found '{found}'")
        };
    }
    let mut sentence = message.to_string();
    if let Some(first) = sentence.get(0..1) {
        let upper = first.to_uppercase();
        sentence.replace_range(0..1, &upper);
    }
    sentence
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlparser_messages_become_sentences_with_positions() {
        let error = ParseError::from_sqlparser(
            ParserError::ParserError(
                "Expected: an expression, found: FROM at Line: 2, Column: 8".into(),
            ),
            Position::new(1, 1),
        );
        assert_eq!(error.position, Position::new(2, 8));
        assert_eq!(
            error.to_string(),
            "line 2:8: Syntax Error: expected an expression, but found 'FROM'"
        );
    }

    #[test]
    fn end_of_input_is_named() {
        let error = ParseError::from_sqlparser(
            ParserError::ParserError("Expected: ), found: EOF at Line: 1, Column: 20".into()),
            Position::new(1, 1),
        );
        assert_eq!(
            error.message,
            "Syntax Error: expected ')', but the statement ended"
        );
    }

    #[test]
    fn positions_move_with_the_statement_start() {
        let origin = Position::new(3, 5);
        assert_eq!(Position::new(1, 1).offset_by(origin), Position::new(3, 5));
        assert_eq!(Position::new(1, 4).offset_by(origin), Position::new(3, 8));
        assert_eq!(Position::new(2, 4).offset_by(origin), Position::new(4, 4));
    }
}
