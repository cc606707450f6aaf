//! [`KsqlDialect`]: the expression-level rules of ksqlDB, as a sqlparser `Dialect`.
//!
//! Statements and clauses belong to the front layer ([`crate::parser`]); this dialect only
//! teaches sqlparser's expression parser what ksqlDB adds or forbids inside expressions:
//! backtick identifiers, `->` struct dereference, `CAST` to ksqlDB types, lambdas `x => …`
//! and constructors `STRUCT(a := 1)` / `MAP('k' := v)` (parsed as named function arguments).

use sqlparser::ast::{
    AccessExpr, BinaryOperator, CastKind, Expr, FunctionArg, FunctionArgExpr, FunctionArgOperator,
    Ident, Subscript,
};
use sqlparser::dialect::{Dialect, Precedence};
use sqlparser::keywords::{self, Keyword};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::types::parse_type;

/// The dialect handed to sqlparser's tokenizer and expression parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct KsqlDialect;

/// Words that start a ksqlDB clause after a source or select item, so they are never read as
/// an implicit alias (`FROM s EMIT CHANGES` must not alias `s` as `EMIT`).
pub(crate) const CLAUSE_WORDS: &[&str] = &[
    "EMIT",
    "WITHIN",
    "WINDOW",
    "PARTITION",
    "GROUP",
    "WHERE",
    "HAVING",
    "LIMIT",
    "ON",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "FROM",
    "GRACE",
    "WITH",
    "AS",
    "SELECT",
];

/// Words that may be followed by `(` without being a function call.
const NOT_FUNCTIONS: &[&str] = &["NOT", "EXISTS", "CASE", "INTERVAL"];

pub(crate) fn is_clause_word(word: &str) -> bool {
    CLAUSE_WORDS
        .iter()
        .any(|clause| clause.eq_ignore_ascii_case(word))
}

impl Dialect for KsqlDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"' || ch == '`'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '@'
    }

    // ksqlDB accepts identifiers that start with digits, such as `1R`.
    fn supports_numeric_prefix(&self) -> bool {
        true
    }

    fn identifier_quote_style(&self, _identifier: &str) -> Option<char> {
        Some('`')
    }

    // Function calls, with their named arguments and lambdas, are parsed by
    // `parse_function_call` below.
    fn supports_named_fn_args_with_rarrow_operator(&self) -> bool {
        false
    }

    // `->` is struct dereference in ksqlDB, never a lambda arrow.
    fn supports_lambda_functions(&self) -> bool {
        false
    }

    fn supports_group_by_expr(&self) -> bool {
        false
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        match parser.peek_nth_token_ref(1).token {
            Token::LParen => {}
            // `source.column`: read here, in one pass. sqlparser reads what follows a `.` by
            // trying an arbitrary expression and re-parsing on failure, which takes time
            // exponential in the nesting of invalid input.
            Token::Period if matches!(parser.peek_token_ref().token, Token::Word(_)) => {
                return Some(parse_qualified_name(parser));
            }
            _ if parser.peek_keyword(Keyword::INTERVAL) => {
                let found = parser.peek_token();
                return Some(parser.expected(
                    "an expression (ksqlDB has no INTERVAL literals; durations are numbers of \
                     milliseconds)",
                    found,
                ));
            }
            _ => return None,
        }
        // CAST targets are ksqlDB types (`MAP<STRING, INT>`, `STRUCT<A INT>`), parsed by our
        // own type parser rather than sqlparser's.
        if parser.peek_keyword(Keyword::CAST) {
            return Some(parse_cast(parser));
        }
        match &parser.peek_token_ref().token {
            Token::Word(word)
                if word.quote_style.is_some() || !NOT_FUNCTIONS.contains(&word.value.as_str()) =>
            {
                Some(parse_function_call(parser))
            }
            _ => None,
        }
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        _precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        match parser.peek_token_ref().token {
            Token::Arrow => Some(parse_dereference(parser, expr)),
            // sqlparser reads subscripts only right after a name; ksqlDB allows them after
            // any primary expression, such as a dereference: `s->items[1]`.
            Token::LBracket => Some(parse_subscripts(parser, expr)),
            _ => None,
        }
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match parser.peek_token_ref().token {
            // Dereference binds like member access: `a->b[1] + 1` is `((a->b)[1]) + 1`.
            Token::Arrow => Some(Ok(self.prec_value(Precedence::Period))),
            // ksqlDB has none of these as expression operators; ending the expression
            // there lets the statement parser report the token.
            Token::Assignment
            | Token::RArrow
            | Token::DoubleColon
            | Token::Colon
            | Token::LongArrow
            | Token::HashArrow
            | Token::HashLongArrow
            | Token::AtArrow
            | Token::ArrowAt => Some(Ok(self.prec_unknown())),
            _ => None,
        }
    }

    fn is_select_item_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        explicit
            || (!keywords::RESERVED_FOR_COLUMN_ALIAS.contains(kw)
                && !current_word_is_clause(parser))
    }

    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        explicit
            || (!keywords::RESERVED_FOR_TABLE_ALIAS.contains(kw) && !current_word_is_clause(parser))
    }
}

/// The alias candidate has just been consumed when sqlparser asks the dialect.
fn current_word_is_clause(parser: &Parser) -> bool {
    match &parser.get_current_token().token {
        Token::Word(word) if word.quote_style.is_none() => is_clause_word(&word.value),
        _ => false,
    }
}

/// `CAST ( expr AS type )`, with a ksqlDB type.
fn parse_cast(parser: &mut Parser) -> Result<Expr, ParserError> {
    parser.expect_keyword(Keyword::CAST)?;
    parser.expect_token(&Token::LParen)?;
    let expr = parser.parse_expr()?;
    parser.expect_keyword(Keyword::AS)?;
    let data_type = parse_type(parser)?;
    parser.expect_token(&Token::RParen)?;
    Ok(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    })
}

/// `a.b[.c…]`: a column qualified by its source (or a longer dotted name).
fn parse_qualified_name(parser: &mut Parser) -> Result<Expr, ParserError> {
    let mut parts = vec![parser.parse_identifier()?];
    while parser.peek_token_ref().token == Token::Period
        && matches!(parser.peek_nth_token_ref(1).token, Token::Word(_))
    {
        parser.next_token();
        parts.push(parser.parse_identifier()?);
    }
    Ok(Expr::CompoundIdentifier(parts))
}

/// `name(arg, …)`: every ksqlDB function call, including the constructors `STRUCT(a := 1)` and
/// `MAP('k' := v)`, and lambdas `x => …` / `(x, y) => …` as arguments.
///
/// We parse calls ourselves rather than through sqlparser, whose support for expression-named
/// arguments re-parses each argument after a failed attempt: exponential in the nesting depth
/// of calls. Here every argument is read once, deciding its form by looking ahead at tokens.
fn parse_function_call(parser: &mut Parser) -> Result<Expr, ParserError> {
    let name = parser.parse_identifier()?;
    parser.expect_token(&Token::LParen)?;
    let mut args = Vec::new();
    if !parser.consume_token(&Token::RParen) {
        loop {
            args.push(parse_function_arg(parser)?);
            if parser.consume_token(&Token::RParen) {
                break;
            }
            parser.expect_token(&Token::Comma)?;
        }
    }
    Ok(crate::ast::function_call(name, args))
}

/// One argument: `*`, a lambda, `name := value`, or an expression.
fn parse_function_arg(parser: &mut Parser) -> Result<FunctionArg, ParserError> {
    if parser.peek_token_ref().token == Token::Mul
        && matches!(
            parser.peek_nth_token_ref(1).token,
            Token::RParen | Token::Comma
        )
    {
        parser.next_token();
        return Ok(FunctionArg::Unnamed(FunctionArgExpr::Wildcard));
    }
    if let Some(params) = lambda_params(parser) {
        for _ in 0..params.tokens {
            parser.next_token();
        }
        let body = parser.parse_expr()?;
        let name = match <[Ident; 1]>::try_from(params.names) {
            Ok([single]) => Expr::Identifier(single),
            Err(names) => Expr::Tuple(names.into_iter().map(Expr::Identifier).collect()),
        };
        return Ok(FunctionArg::ExprNamed {
            name,
            arg: FunctionArgExpr::Expr(body),
            operator: FunctionArgOperator::RightArrow,
        });
    }
    let expr = parser.parse_expr()?;
    if parser.consume_token(&Token::Assignment) {
        let value = parser.parse_expr()?;
        return Ok(FunctionArg::ExprNamed {
            name: expr,
            arg: FunctionArgExpr::Expr(value),
            operator: FunctionArgOperator::Assignment,
        });
    }
    Ok(FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)))
}

/// A lambda's parameters, found by looking ahead: `x =>` or `(x, y, …) =>`.
struct LambdaParams {
    names: Vec<Ident>,
    /// Tokens up to and including `=>`.
    tokens: usize,
}

fn lambda_params(parser: &Parser) -> Option<LambdaParams> {
    let word = |n: usize| match &parser.peek_nth_token_ref(n) {
        TokenWithSpan {
            token: Token::Word(word),
            span,
        } => Some(word.clone().into_ident(*span)),
        _ => None,
    };
    let token = |n: usize| &parser.peek_nth_token_ref(n).token;
    if let Some(name) = word(0) {
        return (*token(1) == Token::RArrow).then(|| LambdaParams {
            names: vec![name],
            tokens: 2,
        });
    }
    if *token(0) != Token::LParen {
        return None;
    }
    let mut names = Vec::new();
    let mut n = 1;
    loop {
        names.push(word(n)?);
        match token(n + 1) {
            Token::Comma => n += 2,
            Token::RParen if *token(n + 2) == Token::RArrow => {
                return Some(LambdaParams {
                    names,
                    tokens: n + 3,
                });
            }
            _ => return None,
        }
    }
}

/// `expr[index][index]…`
fn parse_subscripts(parser: &mut Parser, expr: &Expr) -> Result<Expr, ParserError> {
    let mut access_chain = Vec::new();
    while parser.consume_token(&Token::LBracket) {
        let index = parser.parse_expr()?;
        parser.expect_token(&Token::RBracket)?;
        access_chain.push(AccessExpr::Subscript(Subscript::Index { index }));
    }
    Ok(Expr::CompoundFieldAccess {
        root: Box::new(expr.clone()),
        access_chain,
    })
}

/// `expr -> field` or, in a select list, `expr -> *`. Kept as a binary `->` so that the
/// printed text reads back the same; the planner turns it into a field access.
fn parse_dereference(parser: &mut Parser, expr: &Expr) -> Result<Expr, ParserError> {
    parser.expect_token(&Token::Arrow)?;
    let field = if parser.consume_token(&Token::Mul) {
        Expr::Wildcard(sqlparser::ast::helpers::attached_token::AttachedToken(
            parser.get_current_token().clone(),
        ))
    } else {
        // An unquoted clause word here is a missing field name (`s-> FROM t`), not a field.
        if let Token::Word(word) = &parser.peek_token_ref().token
            && word.quote_style.is_none()
            && is_clause_word(&word.value)
        {
            let found = parser.peek_token();
            return parser.expected("a field name after '->'", found);
        }
        Expr::Identifier(parser.parse_identifier()?)
    };
    Ok(Expr::BinaryOp {
        left: Box::new(expr.clone()),
        op: BinaryOperator::Arrow,
        right: Box::new(field),
    })
}
