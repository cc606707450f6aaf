//! [`check_expr`]: rejects expression forms sqlparser accepts but ksqlDB does not have.
//!
//! sqlparser's expression parser serves many dialects; a few of their forms parse with our
//! dialect too. Those that ksqlDB lacks are reported here, at their position, rather than
//! reaching the planner (and rather than printing as text that reads back differently).

use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, Expr, Spanned, Subscript, UnaryOperator, Value, Visit, visit_expressions,
};

use crate::error::{ParseError, Position};

/// Checks every expression inside `node` (an `Expr`, a `SelectItem`, …).
pub fn check_expr<V: Visit>(node: &V) -> Result<(), ParseError> {
    // Number literals written after a unary minus, checked with their sign (the minus is
    // visited before the number it negates).
    let mut negated = Vec::new();
    let outcome = visit_expressions(node, |expr| {
        if let Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: operand,
        } = expr
            && let Expr::Value(value) = operand.as_ref()
            && matches!(value.value, Value::Number(..))
        {
            negated.push(operand.span().start);
        }
        let error = match expr {
            Expr::Value(value) => match &value.value {
                Value::Number(text, _) => {
                    let start = expr.span().start;
                    number_out_of_range(text, negated.contains(&start), start)
                }
                _ => unsupported(expr),
            },
            _ => unsupported(expr),
        };
        match error {
            Some(error) => ControlFlow::Break(error),
            None => ControlFlow::Continue(()),
        }
    });
    match outcome {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// ksqlDB's range checks on number literals: an integer must fit a BIGINT, a number with an
/// exponent (a DOUBLE) must be finite.
fn number_out_of_range(
    text: &str,
    negative: bool,
    start: sqlparser::tokenizer::Location,
) -> Option<ParseError> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    let message = if text.contains(['e', 'E']) {
        let infinite = signed.parse::<f64>().is_ok_and(|v| v.is_infinite());
        infinite.then(|| format!("Number overflows DOUBLE: {signed}"))
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        let digits = signed.trim_start_matches('-').trim_start_matches('0');
        let canonical = if negative {
            format!("-{digits}")
        } else {
            digits.to_string()
        };
        (!digits.is_empty() && canonical.parse::<i64>().is_err())
            .then(|| format!("Invalid numeric literal: {signed}"))
    } else {
        None
    };
    // ksqlDB reports these one column right of the literal's first character (its AST
    // builder adds one to a column that is already 1-based); scripts written against it
    // see the same position here.
    message.map(|m| ParseError::new(m, Position::new(start.line, start.column + 1)).preparing())
}

fn unsupported(expr: &Expr) -> Option<ParseError> {
    let not_ksql = |what: &str| {
        Some(ParseError::new(
            format!("Syntax Error: {what} are not supported in ksqlDB expressions"),
            Position::from(expr.span().start),
        ))
    };
    match expr {
        Expr::Value(value) if matches!(value.value, Value::Placeholder(_)) => {
            not_ksql("parameter placeholders ('?', '$1', '@name')")
        }
        Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => not_ksql("subqueries"),
        Expr::AtTimeZone { .. } => not_ksql("AT TIME ZONE conversions (use CONVERT_TZ)"),
        Expr::Collate { .. } => not_ksql("COLLATE clauses"),
        // `source.column` (then `[i]` subscripts) is a qualified name; a `.` after any other
        // expression (`f(x).y`, `a[1].b`, `1 .e`) is not ksqlDB.
        Expr::CompoundFieldAccess { root, access_chain } => {
            let mut qualifying = matches!(**root, Expr::Identifier(_));
            access_chain.iter().find_map(|access| match access {
                AccessExpr::Dot(Expr::Identifier(_)) if qualifying => None,
                AccessExpr::Dot(field) => Some(ParseError::new(
                    "Syntax Error: '.' only qualifies a column with its source name; use '->' \
                     to read a struct field",
                    Position::from(field.span().start),
                )),
                AccessExpr::Subscript(Subscript::Slice { lower_bound, .. }) => {
                    Some(ParseError::new(
                        "Syntax Error: array slices are not supported; use SLICE(array, from, to)",
                        Position::from(
                            lower_bound.as_ref().map_or(expr.span(), |b| b.span()).start,
                        ),
                    ))
                }
                AccessExpr::Subscript(Subscript::Index { .. }) => {
                    qualifying = false;
                    None
                }
            })
        }
        _ => None,
    }
}
