//! ksqlDB's rules for `GROUP BY`, checked on the statement before DataFusion plans it (whose
//! own errors name other things): aggregates neither nested nor grouped on, no duplicate
//! grouping, at least one aggregate, and every column used outside an aggregate in the
//! projection or in `HAVING` grouped on. Entry point: [`check_grouping`].

use std::ops::ControlFlow;

use riffle_grammar::ast::Query;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, Value, visit_expressions,
};

use super::PlanError;
use super::aggregate::WINDOW_BOUNDS;

/// Fails with ksqlDB's message at the first rule `query` breaks. `star_columns` are what `*`
/// stands for; `is_aggregate` tells aggregate functions by name. A query whose projection
/// calls aggregates is an aggregation (of one group) even without `GROUP BY` or `WINDOW`.
pub fn check_grouping(
    query: &Query,
    star_columns: &[String],
    is_aggregate: &dyn Fn(&str) -> bool,
) -> Result<(), PlanError> {
    let fail = |message: String| Err(PlanError::Plan(message));
    let projection: Vec<Expr> = query
        .projection
        .iter()
        .flat_map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                vec![e.clone()]
            }
            _ => star_columns
                .iter()
                .map(|c| Expr::Identifier(sqlparser::ast::Ident::new(c)))
                .collect(),
        })
        .collect();
    let clauses: Vec<&Expr> = projection.iter().chain(&query.having).collect();
    for expr in &clauses {
        if let Some(nested) = nested_aggregate(expr, is_aggregate) {
            return fail(format!("Aggregate functions can not be nested: {nested}"));
        }
    }
    for expr in &query.group_by {
        if let Some(name) = first_aggregate(expr, is_aggregate) {
            return fail(format!(
                "GROUP BY does not support aggregate functions: {name} is an aggregate function."
            ));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for expr in &query.group_by {
        let key = ksql_text(&unqualified(expr));
        if seen.contains(&key) {
            return fail(format!(
                "Duplicate GROUP BY expression: {}",
                ksql_text(expr)
            ));
        }
        seen.push(key);
    }
    // Without GROUP BY there is nothing to check, unless a WINDOW or an aggregate call makes
    // it an aggregation (of one group), in which no column may be used outside an aggregate.
    let aggregates = clauses
        .iter()
        .any(|e| first_aggregate(e, is_aggregate).is_some());
    if query.group_by.is_empty() && query.window.is_none() && !aggregates {
        return Ok(());
    }
    if !query.group_by.is_empty() && !aggregates {
        return fail(
            "GROUP BY requires aggregate functions in either the SELECT or HAVING clause.".into(),
        );
    }
    let grouped = Grouped::new(&query.group_by);
    let not_grouped: Vec<String> = projection
        .iter()
        .filter(|e| !grouped.ungrouped_columns(e, is_aggregate).is_empty())
        .map(ksql_text)
        .collect();
    if !not_grouped.is_empty() {
        return fail(format!(
            "Non-aggregate SELECT expression(s) not part of GROUP BY: {}\nEither add the \
             column(s) to the GROUP BY or remove them from the SELECT.",
            not_grouped.join(", ")
        ));
    }
    if let Some(having) = &query.having {
        let columns = grouped.ungrouped_columns(having, is_aggregate);
        if !columns.is_empty() {
            return fail(format!(
                "Non-aggregate HAVING expression not part of GROUP BY: {}",
                columns.join(", ")
            ));
        }
    }
    Ok(())
}

/// The expressions a projection selects (`*` and `source.*` left out).
pub fn selected_expressions(projection: &[SelectItem]) -> impl Iterator<Item = &Expr> {
    projection.iter().filter_map(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    })
}

/// The `GROUP BY` expressions, as ksqlDB compares them.
struct Grouped {
    /// Each expression's text, without source qualifiers.
    expressions: Vec<String>,
    /// The columns grouped on directly.
    columns: Vec<String>,
}

impl Grouped {
    fn new(group_by: &[Expr]) -> Grouped {
        let unqualified: Vec<Expr> = group_by.iter().map(unqualified).collect();
        Grouped {
            expressions: unqualified.iter().map(ksql_text).collect(),
            columns: unqualified
                .iter()
                .filter_map(|e| match e {
                    Expr::Identifier(ident) => Some(ident.value.clone()),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The columns `expr` uses outside aggregates and outside any part of it that is a
    /// `GROUP BY` expression, which are not grouped on themselves.
    fn ungrouped_columns(&self, expr: &Expr, is_aggregate: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut found = Vec::new();
        self.collect(expr, is_aggregate, &mut found);
        found
    }

    fn collect(&self, expr: &Expr, is_aggregate: &dyn Fn(&str) -> bool, found: &mut Vec<String>) {
        let expr = unqualified(expr);
        // Expressions are visited in pre-order: a part that is grouped on or aggregated
        // covers the nodes of its subtree, which come right after it.
        let (mut index, mut covered_until) = (0usize, 0usize);
        let _ = visit_expressions(&expr, |e: &Expr| {
            let here = index;
            index += 1;
            if here < covered_until {
                return ControlFlow::<()>::Continue(());
            }
            let aggregated = matches!(e, Expr::Function(f) if is_aggregate(&f.name.to_string()));
            if aggregated || self.expressions.contains(&ksql_text(e)) {
                covered_until = here + subtree_size(e);
            } else if let Expr::Identifier(ident) = e {
                let name = &ident.value;
                if !self.columns.contains(name)
                    && !WINDOW_BOUNDS.contains(&name.as_str())
                    && !found.contains(name)
                {
                    found.push(name.clone());
                }
            }
            ControlFlow::Continue(())
        });
    }
}

/// How many expressions the visitor meets in `expr` (itself included).
fn subtree_size(expr: &Expr) -> usize {
    let mut count = 0;
    let _ = visit_expressions(expr, |_: &Expr| {
        count += 1;
        ControlFlow::<()>::Continue(())
    });
    count
}

/// The name of the first aggregate function call in `expr`.
fn first_aggregate(expr: &Expr, is_aggregate: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut found = None;
    let _ = visit_expressions(expr, |e: &Expr| {
        if let Expr::Function(function) = e
            && is_aggregate(&function.name.to_string())
        {
            found = Some(function.name.to_string().to_uppercase());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// An aggregate call with another inside its arguments, as ksqlDB prints it.
fn nested_aggregate(expr: &Expr, is_aggregate: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut found = None;
    let _ = visit_expressions(expr, |e: &Expr| {
        if let Expr::Function(function) = e
            && is_aggregate(&function.name.to_string())
            && function_arguments(function)
                .iter()
                .any(|a| first_aggregate(a, is_aggregate).is_some())
        {
            found = Some(ksql_text(e));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

fn function_arguments(function: &sqlparser::ast::Function) -> Vec<&Expr> {
    match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `expr` with every `source.column` reference made `column`, and the names of named
/// arguments (`STRUCT(A := …)`) made strings, so that they do not read as columns.
fn unqualified(expr: &Expr) -> Expr {
    let mut expr = expr.clone();
    let _ = sqlparser::ast::visit_expressions_mut(&mut expr, |e: &mut Expr| {
        match e {
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                *e = Expr::Identifier(parts[1].clone());
            }
            Expr::Function(function) => {
                if let FunctionArguments::List(list) = &mut function.args {
                    for arg in &mut list.args {
                        if let FunctionArg::ExprNamed { name, .. } = arg
                            && let Expr::Identifier(ident) = name
                        {
                            *name = Expr::value(Value::SingleQuotedString(ident.value.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    expr
}

/// An expression as ksqlDB prints it in messages: names upper case, binary operations in
/// parentheses (`(F1 * SUM(F2))`), function arguments separated by `, `.
pub fn ksql_text(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => parts
            .iter()
            .map(|p| p.value.clone())
            .collect::<Vec<_>>()
            .join("."),
        Expr::Nested(inner) => ksql_text(inner),
        Expr::BinaryOp { left, op, right } => {
            format!("({} {op} {})", ksql_text(left), ksql_text(right))
        }
        Expr::UnaryOp { op, expr } => format!("{op}{}", ksql_text(expr)),
        Expr::Function(function) => {
            let arguments: Vec<String> = match &function.args {
                FunctionArguments::List(list) => list
                    .args
                    .iter()
                    .map(|arg| match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => ksql_text(e),
                        other => other.to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            format!(
                "{}({})",
                function.name.to_string().to_uppercase(),
                arguments.join(", ")
            )
        }
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(s) => format!("'{s}'"),
            Value::Null => "null".into(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<(), String> {
        let statement = riffle_grammar::parse_statement(sql).expect("parses");
        let riffle_grammar::ast::Statement::Query(query) = statement else {
            panic!("a query");
        };
        let aggregates = ["COUNT", "SUM", "MAX"];
        check_grouping(
            &query,
            &["ID".into(), "F0".into(), "F1".into()],
            &|name: &str| aggregates.contains(&name.to_uppercase().as_str()),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn columns_outside_aggregates_must_be_grouped_on() {
        assert_eq!(
            check("SELECT f0, COUNT(*) FROM t GROUP BY f0 EMIT CHANGES;"),
            Ok(())
        );
        assert_eq!(
            check("SELECT f0, f0 * SUM(f1) FROM t GROUP BY f0 EMIT CHANGES;"),
            Ok(())
        );
        let error =
            check("SELECT f1 * SUM(f0) FROM t GROUP BY f0 EMIT CHANGES;").expect_err("refused");
        assert!(
            error.contains(
                "Non-aggregate SELECT expression(s) not part of GROUP BY: (F1 * SUM(F0))"
            ),
            "{error}"
        );
        let error = check("SELECT f0, f1, COUNT(*) FROM t GROUP BY f1 + f0 EMIT CHANGES;")
            .expect_err("refused");
        assert!(error.contains("GROUP BY: F0, F1"), "{error}");
        assert_eq!(
            check("SELECT f1 + f0, COUNT(*) FROM t GROUP BY f1 + f0 EMIT CHANGES;"),
            Ok(())
        );
        let error = check(
            "SELECT SUBSTRING(f0, 0, 2), COUNT(*) FROM t GROUP BY SUBSTRING(f0, 0, 2) \
             HAVING LEN(f0) < 2 EMIT CHANGES;",
        )
        .expect_err("refused");
        assert!(
            error.contains("Non-aggregate HAVING expression not part of GROUP BY: F0"),
            "{error}"
        );
    }

    #[test]
    fn aggregates_are_neither_nested_nor_grouped_on_and_groups_are_not_repeated() {
        let error =
            check("SELECT f0, SUM(COUNT()) FROM t GROUP BY f0 EMIT CHANGES;").expect_err("refused");
        assert!(
            error.contains("Aggregate functions can not be nested: SUM(COUNT())"),
            "{error}"
        );
        let error =
            check("SELECT COUNT(*) FROM t GROUP BY SUM(f0) EMIT CHANGES;").expect_err("refused");
        assert!(error.contains("SUM is an aggregate function."), "{error}");
        let error =
            check("SELECT COUNT(*) FROM t GROUP BY f0, t.f0 EMIT CHANGES;").expect_err("refused");
        assert!(
            error.contains("Duplicate GROUP BY expression: T.F0"),
            "{error}"
        );
        let error = check("SELECT f0 FROM t GROUP BY f0 EMIT CHANGES;").expect_err("refused");
        assert!(
            error.contains("GROUP BY requires aggregate functions"),
            "{error}"
        );
    }
}
