//! Tokens in ksqlDB's lexical rules, on top of sqlparser's tokenizer.
//!
//! [`tokenize`] applies the rules sqlparser does not know: unquoted identifiers and keywords
//! are upper-cased (`foo` is `FOO`), `"double"` and `` `back` `` quoted identifiers keep their
//! case and are printed with backticks, and an unsubstituted `${name}` variable is reported.
//! [`split_statements`] cuts a script at its top-level semicolons.

use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer, Whitespace};

use sqlparser::dialect::Dialect;

use crate::dialect::KsqlDialect;
use crate::error::{ParseError, Position};

/// Tokenizes `sql` with ksqlDB's identifier rules.
pub fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, ParseError> {
    let mut tokens = tokenize_unchecked(sql)?;
    check_tokens(&tokens)?;
    for TokenWithSpan { token, .. } in &mut tokens {
        if let Token::Word(word) = token {
            match word.quote_style {
                None => {
                    word.value = word.value.to_uppercase();
                    // A few letters upper-case to a letter and a combining mark (`ǰ` is `J̌`),
                    // which is not an identifier character: such a name stays quoted so that
                    // it prints as text that reads back as the same name.
                    if !word
                        .value
                        .chars()
                        .all(|c| KsqlDialect.is_identifier_part(c))
                    {
                        word.quote_style = Some('`');
                    }
                }
                Some(_) => word.quote_style = Some('`'),
            }
        }
    }
    Ok(tokens)
}

/// sqlparser's tokens, before ksqlDB's rules are applied (for splitting scripts).
pub fn tokenize_unchecked(sql: &str) -> Result<Vec<TokenWithSpan>, ParseError> {
    Tokenizer::new(&KsqlDialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(ParseError::from_tokenizer)
}

/// Rejects tokens ksqlDB does not have where sqlparser would accept them.
fn check_tokens(tokens: &[TokenWithSpan]) -> Result<(), ParseError> {
    for (index, TokenWithSpan { token, span }) in tokens.iter().enumerate() {
        let position = Position::from(span.start);
        match token {
            // ksqlDB writes `.` only between names (`source.column`, `source.*`).
            Token::Period if !period_between_names(tokens, index) => {
                return Err(ParseError::new(
                    "Syntax Error: '.' only qualifies a column with its source name; use '->' \
                     to read a struct field",
                    position,
                ));
            }
            Token::Placeholder(text) if text == "$" => {
                if let Some(name) = variable_name_after(&tokens[index + 1..]) {
                    return Err(ParseError::new(
                        format!(
                            "Variable '${{{name}}}' is not defined: define it with \
                             DEFINE {name} = '<value>'; before using it"
                        ),
                        position,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the `.` at `index` follows a name and precedes a name or `*`.
fn period_between_names(tokens: &[TokenWithSpan], index: usize) -> bool {
    let before = tokens[..index].iter().rev().find(|t| !is_trivia(&t.token));
    let after = tokens[index + 1..].iter().find(|t| !is_trivia(&t.token));
    let is_name = |token: Option<&TokenWithSpan>| match token.map(|t| &t.token) {
        Some(Token::Word(word)) => {
            word.quote_style.is_some()
                || !matches!(
                    word.value.to_uppercase().as_str(),
                    "NULL" | "TRUE" | "FALSE"
                )
        }
        _ => false,
    };
    is_name(before) && (is_name(after) || matches!(after.map(|t| &t.token), Some(Token::Mul)))
}

/// The `name` of a `${name}` reference whose `$` has just been seen.
fn variable_name_after(tokens: &[TokenWithSpan]) -> Option<String> {
    let mut rest = tokens.iter().map(|t| &t.token);
    match (rest.next(), rest.next(), rest.next()) {
        (Some(Token::LBrace), Some(Token::Word(word)), Some(Token::RBrace)) => {
            Some(word.value.clone())
        }
        _ => None,
    }
}

/// One statement of a script: its tokens (without the terminating `;`), where it starts and
/// where it ends (at its `;`, or after its last token).
#[derive(Debug, Clone)]
pub struct StatementTokens {
    pub tokens: Vec<TokenWithSpan>,
    pub start: Position,
    pub end: Span,
    /// Whether the statement was terminated by `;` (ksqlDB requires it).
    pub terminated: bool,
}

/// Splits a token stream at top-level semicolons, dropping statements that hold only
/// whitespace and comments.
pub fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<StatementTokens> {
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    for token in tokens {
        if token.token == Token::SemiColon {
            push_statement(
                &mut statements,
                std::mem::take(&mut current),
                Some(token.span),
            );
        } else if token.token != Token::EOF {
            current.push(token);
        }
    }
    push_statement(&mut statements, current, None);
    statements
}

fn push_statement(
    statements: &mut Vec<StatementTokens>,
    tokens: Vec<TokenWithSpan>,
    semicolon: Option<Span>,
) {
    let Some(first) = tokens.iter().find(|t| !is_trivia(&t.token)) else {
        return;
    };
    let start = first.span.start.into();
    let end = semicolon.unwrap_or_else(|| {
        let last = tokens
            .iter()
            .rev()
            .find(|t| !is_trivia(&t.token))
            .unwrap_or(first);
        Span::new(last.span.end, last.span.end)
    });
    statements.push(StatementTokens {
        start,
        end,
        tokens,
        terminated: semicolon.is_some(),
    });
}

/// Whitespace and comments.
pub fn is_trivia(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// Whether a whitespace token is a comment (`--` or `/* */`).
pub fn is_comment(token: &Token) -> bool {
    matches!(
        token,
        Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<String> {
        tokenize(sql)
            .expect("valid tokens")
            .into_iter()
            .filter_map(|t| match t.token {
                Token::Word(w) => Some(w.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn unquoted_identifiers_are_upper_cased_and_quoted_keep_case() {
        assert_eq!(
            words("select foo, \"Bar\", `baz` from s"),
            ["SELECT", "FOO", "`Bar`", "`baz`", "FROM", "S"]
        );
    }

    #[test]
    fn names_whose_upper_case_is_not_an_identifier_stay_quoted() {
        assert_eq!(
            words("select ǰx from s"),
            ["SELECT", "`J\u{30c}X`", "FROM", "S"]
        );
    }

    #[test]
    fn undefined_variables_are_named_with_their_position() {
        let error = tokenize("SELECT * FROM ${src};").expect_err("undefined variable");
        assert_eq!(error.position, Position::new(1, 15));
        assert!(
            error.message.contains("'${src}' is not defined"),
            "{}",
            error.message
        );
    }

    #[test]
    fn scripts_split_at_top_level_semicolons() {
        let tokens = tokenize("SHOW STREAMS; -- note\n SELECT ';' FROM s;  ").expect("tokens");
        let statements = split_statements(tokens);
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[1].start, Position::new(2, 2));
        assert!(statements.iter().all(|s| s.terminated));
    }
}
