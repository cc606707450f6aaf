//! What a pull query's `WHERE` says about a table's key columns, checked as ksqlDB checks
//! it: `IN` lists on a key must hold values of the key's type and no NULL; with table scans
//! off (`ksql.query.pull.table.scan.enabled=false`) every disjunct must pin every key column
//! with one comparison to a value. Entry point: [`check_key_conditions`].

use sqlparser::ast::{BinaryOperator, Expr, Value};

use super::rewrite::is_comparison;
use crate::types::SqlType;

/// Checks a pull query's `WHERE` against the table's key columns; `scans` is whether a
/// query may read the whole table. The error is ksqlDB's message.
pub fn check_key_conditions(
    selection: Option<&Expr>,
    keys: &[(String, SqlType)],
    scans: bool,
) -> Result<(), String> {
    let Some(selection) = selection else {
        return match scans {
            true => Ok(()),
            false => Err(SCAN_NEEDED.into()),
        };
    };
    let mut disjuncts = Vec::new();
    split(selection, BinaryOperator::Or, &mut disjuncts);
    for disjunct in disjuncts {
        let mut conjuncts = Vec::new();
        split(disjunct, BinaryOperator::And, &mut conjuncts);
        let mut pinned: Vec<&str> = Vec::new();
        for condition in conjuncts {
            if let Some(key) = key_condition(condition, keys, scans)? {
                if pinned.contains(&key) && !scans {
                    return Err(
                        "A comparison condition on the key column cannot be combined \
                                with other comparisons such as an IN predicate"
                            .into(),
                    );
                }
                pinned.push(key);
            }
        }
        if scans {
            continue;
        }
        if pinned.is_empty() {
            return Err(format!(
                "WHERE clause missing key column for disjunct: ({disjunct})"
            ));
        }
        if keys
            .iter()
            .any(|(name, _)| !pinned.contains(&name.as_str()))
        {
            return Err("Multi-column sources must specify every key in the WHERE clause".into());
        }
    }
    Ok(())
}

const SCAN_NEEDED: &str = "Query requires table scan to be enabled. Table scans can be enabled \
                           by setting ksql.query.pull.table.scan.enabled=true";

/// The operands of a chain of `op`, without parentheses.
fn split<'a>(expr: &'a Expr, op: BinaryOperator, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::Nested(inner) => split(inner, op, out),
        Expr::BinaryOp { left, op: o, right } if *o == op => {
            split(left, op.clone(), out);
            split(right, op, out);
        }
        other => out.push(other),
    }
}

fn bare(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => bare(inner),
        other => other,
    }
}

/// The column an expression is, when it is one.
fn column(expr: &Expr) -> Option<&str> {
    match bare(expr) {
        Expr::Identifier(ident) => Some(ident.value.as_str()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.as_str()),
        _ => None,
    }
}

/// Whether an expression names a column that `wanted` accepts.
fn mentions(expr: &Expr, wanted: impl Fn(&str) -> bool) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        if column(e).is_some_and(&wanted) {
            found = true;
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    found
}

/// What a condition that does not compare a key column directly says: nothing about the
/// keys, unless (without scans) it uses a key inside an expression.
fn without_direct_key<'a>(
    condition: &Expr,
    keys: &[(String, SqlType)],
    scans: bool,
) -> Result<Option<&'a str>, String> {
    if !scans && mentions(condition, |name| keys.iter().any(|(k, _)| k == name)) {
        return Err(NOT_DIRECT.into());
    }
    Ok(None)
}

/// The key column a condition constrains (`None` for a condition on other columns).
fn key_condition<'a>(
    condition: &Expr,
    keys: &'a [(String, SqlType)],
    scans: bool,
) -> Result<Option<&'a str>, String> {
    let find_key = |expr: &Expr| column(expr).and_then(|name| keys.iter().find(|(k, _)| k == name));
    match bare(condition) {
        Expr::InList {
            expr,
            list,
            negated: false,
        } => {
            let Some((key, key_type)) = find_key(expr) else {
                return without_direct_key(expr, keys, scans);
            };
            for value in list {
                if mentions(value, |_| true) {
                    return match scans {
                        true => Ok(None),
                        false => Err(NOT_RESOLVABLE.into()),
                    };
                }
                check_key_value(key, key_type, value)?;
            }
            Ok(Some(key.as_str()))
        }
        Expr::BinaryOp { left, op, right } if is_comparison(op) => {
            let (key, other) = match (find_key(left), find_key(right)) {
                (Some(key), _) => (key, right.as_ref()),
                (None, Some(key)) => (key, left.as_ref()),
                (None, None) => return without_direct_key(condition, keys, scans),
            };
            if scans {
                return Ok(Some(key.0.as_str()));
            }
            if mentions(other, |_| true) {
                return Err(NOT_RESOLVABLE.into());
            }
            if matches!(op, BinaryOperator::NotEq) {
                let listed: Vec<String> = keys
                    .iter()
                    .map(|(name, ty)| format!("`{name}` {ty} KEY"))
                    .collect();
                return Err(format!(
                    "Bound on key columns '[{}]' must currently be '='. ",
                    listed.join(", ")
                ));
            }
            Ok(Some(key.0.as_str()))
        }
        _ => Ok(None),
    }
}

const NOT_DIRECT: &str = "A comparison must directly reference a key column.";
const NOT_RESOLVABLE: &str =
    "A comparison must be between a key column and a resolvable expression.";

/// A value an `IN` list compares a key to: not NULL, and of a type the key's converts from.
fn check_key_value(key: &str, key_type: &SqlType, value: &Expr) -> Result<(), String> {
    let Expr::Value(literal) = bare(value) else {
        return Ok(());
    };
    let numeric_key = matches!(
        key_type,
        SqlType::Integer | SqlType::BigInt | SqlType::Double | SqlType::Decimal { .. }
    );
    match &literal.value {
        Value::Null => Err(format!(
            "Primary key columns can not be NULL: ({key} = null)"
        )),
        Value::SingleQuotedString(text) if numeric_key => Err(format!(
            "'{text}' can not be converted to the type of the key column: {key} {key_type} KEY"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql_where: &str, keys: &[(&str, SqlType)], scans: bool) -> Result<(), String> {
        let query = riffle_grammar::parse_statement(&format!("SELECT * FROM T WHERE {sql_where};"))
            .expect("parses");
        let riffle_grammar::ast::Statement::Query(query) = query else {
            panic!("a query");
        };
        let keys: Vec<(String, SqlType)> = keys
            .iter()
            .map(|(name, ty)| (name.to_string(), ty.clone()))
            .collect();
        check_key_conditions(query.selection.as_ref(), &keys, scans)
    }

    #[test]
    fn in_lists_on_a_key_hold_values_of_its_type() {
        let id = [("ID", SqlType::Integer)];
        assert_eq!(
            check("ID IN ('10', 8)", &id, true),
            Err("'10' can not be converted to the type of the key column: ID INTEGER KEY".into())
        );
        assert_eq!(
            check("ID IN (NULL)", &id, true),
            Err("Primary key columns can not be NULL: (ID = null)".into())
        );
        assert_eq!(check("ID IN (8, 9) AND COUNT > 1", &id, true), Ok(()));
        assert_eq!(check("COUNT > 1 OR ID < 3", &id, true), Ok(()), "a scan");
    }

    #[test]
    fn without_scans_every_disjunct_pins_every_key_once() {
        let id = [("ID", SqlType::String)];
        assert_eq!(check("ID = '1' OR ID IN ('2', '3')", &id, false), Ok(()));
        assert_eq!(
            check("COUNT = 100", &id, false),
            Err("WHERE clause missing key column for disjunct: (COUNT = 100)".into())
        );
        assert_eq!(
            check("ID != '100'", &id, false),
            Err("Bound on key columns '[`ID` STRING KEY]' must currently be '='. ".into())
        );
        assert!(
            check("'0' < ID AND ID < '100'", &id, false)
                .is_err_and(|e| e.starts_with("A comparison condition on the key column"))
        );
        assert_eq!(
            check("ID = COUNT - 1", &id, false),
            Err(NOT_RESOLVABLE.into())
        );
        assert_eq!(
            check("ID IN (2, COUNT + 1)", &id, false),
            Err(NOT_RESOLVABLE.into())
        );
        assert_eq!(check("ID + 10 = 20", &id, false), Err(NOT_DIRECT.into()));
        let two = [("A", SqlType::Integer), ("B", SqlType::Integer)];
        assert_eq!(
            check("A = 10", &two, false),
            Err("Multi-column sources must specify every key in the WHERE clause".into())
        );
        assert_eq!(check("A = 10 AND B = 2", &two, false), Ok(()));
    }
}
