//! [`check_expr`]: rejects expression forms sqlparser accepts but ksqlDB does not have.
//!
//! sqlparser's expression parser serves many dialects; a few of their forms parse with our
//! dialect too. Those that ksqlDB lacks are reported here, at their position, rather than
//! reaching the planner (and rather than printing as text that reads back differently).

use std::ops::ControlFlow;

use sqlparser::ast::{AccessExpr, Expr, Spanned, Subscript, Value, Visit, visit_expressions};

use crate::error::{ParseError, Position};

/// Checks every expression inside `node` (an `Expr`, a `SelectItem`, …).
pub fn check_expr<V: Visit>(node: &V) -> Result<(), ParseError> {
    let outcome = visit_expressions(node, |expr| match unsupported(expr) {
        Some(error) => ControlFlow::Break(error),
        None => ControlFlow::Continue(()),
    });
    match outcome {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
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
