//! Rewrites our sqlparser AST into the forms DataFusion's `SqlToRel` plans.
//!
//! `s -> f` (ksqlDB's struct dereference, kept as a binary `->` so it prints back as
//! written) becomes the field access `s.f`; `STRUCT(a := x)` becomes `named_struct('A', x)`
//! (`STRUCT()` becomes `empty_struct()`) and `MAP(k := v)` becomes `make_map(k, v)`;
//! `ARRAY_SORT` is told to put NULLs last, as ksqlDB's does; `CAST(x AS DECIMAL(p, s))`
//! becomes `decimal_cast(x, p, s)`, which casts as ksqlDB does.
//!
//! Two of ksqlDB's semantics are rewrites too: a comparison is never NULL (`a = b` is false
//! when either side is NULL), and a string compared with `ROWTIME`, `WINDOWSTART` or
//! `WINDOWEND` is a point in time (`ROWTIME > '2020-01-01T00:00'`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArgOperator,
    FunctionArguments, Ident, ObjectName, SelectItem, Statement, Value, VisitMut, VisitorMut,
};

/// Rewrites every expression of `statement` in place; fails on a constructor ksqlDB
/// refuses (`STRUCT(a := 1, a := 2)`).
pub fn for_datafusion(
    statement: &mut Statement,
    table_functions: &std::collections::HashSet<String>,
) -> Result<(), super::PlanError> {
    match statement.visit(&mut DereferenceRewriter { table_functions }) {
        ControlFlow::Break(message) => Err(super::PlanError::Plan(message)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Number literals typed as ksqlDB types them: an integer that fits 32 bits is an INT
/// (DataFusion reads every integer literal as BIGINT), so `1 AS K` is an INT column and
/// `ROWPARTITION + 3` an INT sum; a number with an exponent is a DOUBLE.
fn int_literal(expr: &mut Expr) {
    let Expr::Value(value) = expr else { return };
    let Value::Number(text, _) = &value.value else {
        return;
    };
    if text.contains(['e', 'E']) {
        // A number with an exponent is a DOUBLE (DataFusion would read it as a DECIMAL,
        // which cannot hold 4.9E-324).
        let text = text.clone();
        *expr = Expr::Cast {
            kind: sqlparser::ast::CastKind::Cast,
            expr: Box::new(Expr::value(Value::SingleQuotedString(text))),
            data_type: sqlparser::ast::DataType::Double(sqlparser::ast::ExactNumberInfo::None),
            array: false,
            format: None,
        };
        return;
    }
    if text.parse::<i32>().is_err() {
        return;
    }
    let literal = std::mem::replace(expr, Expr::value(Value::Null));
    *expr = Expr::Cast {
        kind: sqlparser::ast::CastKind::Cast,
        expr: Box::new(literal),
        data_type: sqlparser::ast::DataType::Int(None),
        array: false,
        format: None,
    };
}

/// Makes comparisons false instead of NULL when a side is NULL, as ksqlDB's are. In a
/// filter, comparisons reached through `AND`/`OR` only are left alone: there NULL and false
/// both drop the row, and the plain comparison is cheaper.
pub fn null_safe_comparisons(projection: &mut [SelectItem], selection: Option<&mut Expr>) {
    for item in projection {
        if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
            let _ = expr.visit(&mut ComparisonGuard);
        }
    }
    if let Some(predicate) = selection {
        guard_below_connectives(predicate);
    }
}

fn guard_below_connectives(expr: &mut Expr) {
    match expr {
        Expr::BinaryOp {
            op: BinaryOperator::And | BinaryOperator::Or,
            left,
            right,
        } => {
            guard_below_connectives(left);
            guard_below_connectives(right);
        }
        Expr::Nested(inner) => guard_below_connectives(inner),
        Expr::BinaryOp { op, left, right } if is_comparison(op) => {
            let _ = left.visit(&mut ComparisonGuard);
            let _ = right.visit(&mut ComparisonGuard);
        }
        other => {
            let _ = other.visit(&mut ComparisonGuard);
        }
    }
}

/// Whether an operator compares (`=`, `<>`, `<`, `<=`, `>`, `>=`).
pub(crate) fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

/// Wraps every comparison `c` as `(c) IS TRUE`.
struct ComparisonGuard;

impl VisitorMut for ComparisonGuard {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        if matches!(expr, Expr::BinaryOp { op, .. } if is_comparison(op)) {
            let comparison = std::mem::replace(expr, Expr::value(Value::Null));
            *expr = Expr::IsTrue(Box::new(Expr::Nested(Box::new(comparison))));
        }
        ControlFlow::Continue(())
    }
}

/// Whether `expr` is a column of epoch milliseconds that ksqlDB compares with timestamp
/// strings: `ROWTIME` or a window bound, bare or qualified.
fn is_rowtime(expr: &Expr) -> bool {
    let is_time = |name: &str| matches!(name, "ROWTIME" | "WINDOWSTART" | "WINDOWEND");
    match expr {
        Expr::Identifier(ident) => is_time(&ident.value),
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|p| is_time(&p.value)),
        _ => false,
    }
}

/// A string literal next to `ROWTIME` as the epoch milliseconds it names.
fn rowtime_literal(expr: &mut Expr) {
    if let Expr::Value(value) = expr
        && let Value::SingleQuotedString(text) = &value.value
        && let Some(millis) = parse_timestamp(text)
    {
        *expr = Expr::value(Value::Number(millis.to_string(), false));
    }
}

/// Parses ksqlDB's timestamp literals: `yyyy[-MM[-dd[THH[:mm[:ss[.SSS]]]]]]` with an
/// optional zone `Z`, `±HH`, `±HHMM` or `±HH:MM` (UTC when absent).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let (local, offset_minutes) = split_zone(text)?;
    let (date, time) = match local.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (local, None),
    };
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: i64 = date_parts.next().map_or(Some(1), |d| d.parse().ok())?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut millis) = (0i64, 0i64, 0i64, 0i64);
    if let Some(time) = time {
        let (hms, fraction) = match time.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (time, None),
        };
        let mut parts = hms.split(':');
        hour = parts.next()?.parse().ok()?;
        minute = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        second = parts.next().map_or(Some(0), |s| s.parse().ok())?;
        // Hour 24 (with nothing after it) is the end of the day: the next day's start.
        let end_of_day = hour == 24 && minute == 0 && second == 0 && fraction.is_none();
        if parts.next().is_some() || (hour > 23 && !end_of_day) || minute > 59 || second > 59 {
            return None;
        }
        if let Some(fraction) = fraction {
            let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
            millis = digits.parse().ok()?;
        }
    }
    let days = crate::functions::time_format::days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// The text without its zone, and the zone's offset from UTC in minutes.
fn split_zone(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix('Z') {
        return Some((local, 0));
    }
    // A zone sign comes after the time (`T…+0445`), never in the date's dashes.
    let Some(t) = text.find('T') else {
        return Some((text, 0));
    };
    let Some(at) = text[t..].find(['+', '-']).map(|i| i + t) else {
        return Some((text, 0));
    };
    let offset = crate::functions::time_format::zone_offset_minutes(&text[at..])?;
    Some((&text[..at], offset))
}

struct DereferenceRewriter<'a> {
    /// The table functions' names, lower case.
    table_functions: &'a std::collections::HashSet<String>,
}

impl VisitorMut for DereferenceRewriter<'_> {
    type Break = String;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        rewrite_constructor(expr)?;
        array_constructor(expr);
        substring_call(expr);
        decimal_cast(expr);
        table_function(expr, self.table_functions);
        int_literal(expr);
        match expr {
            Expr::BinaryOp { op, left, right } if is_comparison(op) => {
                if is_rowtime(left) {
                    rowtime_literal(right);
                } else if is_rowtime(right) {
                    rowtime_literal(left);
                }
            }
            Expr::Between {
                expr, low, high, ..
            } if is_rowtime(expr) => {
                rowtime_literal(low);
                rowtime_literal(high);
            }
            _ => {}
        }
        if let Expr::BinaryOp {
            op: BinaryOperator::Arrow,
            left,
            right,
        } = expr
            && let Expr::Identifier(_) = right.as_ref()
        {
            let Expr::Identifier(name) =
                std::mem::replace(right.as_mut(), Expr::value(Value::Null))
            else {
                unreachable!("checked above")
            };
            // A string field, so that DataFusion never reads `s->b` as column `b` of a
            // source named `s`.
            let field = Expr::value(Value::SingleQuotedString(name.value));
            let root = std::mem::replace(left.as_mut(), Expr::value(Value::Null));
            *expr = match root {
                // Extend an existing chain: `a->b->c` is one access path.
                Expr::CompoundFieldAccess {
                    root,
                    mut access_chain,
                } => {
                    access_chain.push(AccessExpr::Dot(field));
                    Expr::CompoundFieldAccess { root, access_chain }
                }
                root => Expr::CompoundFieldAccess {
                    root: Box::new(root),
                    access_chain: vec![AccessExpr::Dot(field)],
                },
            };
        }
        ControlFlow::Continue(())
    }
}

/// `ARRAY[e, …]` → `array_of(e, …)` (see `functions::array_constructor`). `ARRAY[]` stays
/// DataFusion's.
fn array_constructor(expr: &mut Expr) {
    let Expr::Array(array) = expr else {
        return;
    };
    if array.elem.is_empty() {
        return;
    }
    let elements = std::mem::take(&mut array.elem);
    *expr = call(
        crate::functions::array_constructor::NAME,
        elements
            .into_iter()
            .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
            .collect(),
    );
}

/// `SUBSTRING(s, p[, n])` (which sqlparser reads as SQL's `SUBSTRING(s FROM p FOR n)`)
/// → a call of the function `substring`, ksqlDB's (see `functions::strings`).
fn substring_call(expr: &mut Expr) {
    let Expr::Substring {
        expr: input,
        substring_from,
        substring_for,
        ..
    } = expr
    else {
        return;
    };
    let input = std::mem::replace(input.as_mut(), Expr::value(Value::Null));
    let from = substring_from
        .take()
        .map_or_else(|| Expr::value(Value::Number("1".into(), false)), |e| *e);
    let args = std::iter::once(input)
        .chain(std::iter::once(from))
        .chain(substring_for.take().map(|e| *e))
        .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
        .collect();
    *expr = call("substring", args);
}

/// `CAST(x AS DECIMAL(p, s))` → `decimal_cast(x, p, s)`, which casts as ksqlDB does
/// (`functions::decimal_cast`).
fn decimal_cast(expr: &mut Expr) {
    use sqlparser::ast::{CastKind, DataType as SqlDataType, ExactNumberInfo};
    let Expr::Cast {
        kind: CastKind::Cast,
        expr: value,
        data_type: SqlDataType::Decimal(info),
        array: false,
        format: None,
    } = expr
    else {
        return;
    };
    let (precision, scale) = match *info {
        ExactNumberInfo::PrecisionAndScale(precision, scale) => (precision, scale),
        ExactNumberInfo::Precision(precision) => (precision, 0),
        ExactNumberInfo::None => return,
    };
    let number = |n: String| {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(Value::Number(n, false))))
    };
    let value = std::mem::replace(value.as_mut(), Expr::value(Value::Null));
    *expr = call(
        crate::functions::decimal_cast::NAME,
        vec![
            FunctionArg::Unnamed(FunctionArgExpr::Expr(value)),
            number(precision.to_string()),
            number(scale.to_string()),
        ],
    );
}

/// A call of `name` with `args`.
fn call(name: &str, args: Vec<FunctionArg>) -> Expr {
    riffle_grammar::ast::function_call(Ident::new(name), args)
}

/// A table function's call `f(…)` → `unnest(f(…))`: `f` makes the array of its rows (see
/// `plan::explode`).
fn table_function(expr: &mut Expr, table_functions: &std::collections::HashSet<String>) {
    let Expr::Function(function) = expr else {
        return;
    };
    if !table_functions.contains(&function.name.to_string().to_lowercase()) {
        return;
    }
    let table_call = std::mem::replace(expr, Expr::value(Value::Null));
    *expr = call(
        "unnest",
        vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(table_call))],
    );
}

/// `DATEADD(DAYS, 1, d)` and the other time arithmetic: the unit keyword (read as a
/// column name) becomes the text the functions take, `DATEADD('DAYS', 1, d)`.
fn time_unit_argument(function: &mut sqlparser::ast::Function) {
    let name = function.name.to_string().to_lowercase();
    if !crate::functions::time_arithmetic::NAMES.contains(&name.as_str()) {
        return;
    }
    let FunctionArguments::List(list) = &mut function.args else {
        return;
    };
    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
        && let Expr::Identifier(unit) = first
        && unit.quote_style.is_none()
        && crate::functions::time_arithmetic::is_time_unit(&unit.value.to_uppercase())
    {
        *first = Expr::value(Value::SingleQuotedString(unit.value.to_uppercase()));
    }
}

/// `x => body` and `(x, y) => body`, which the grammar keeps as `=>`-named arguments (so
/// that they print back as written), → sqlparser lambdas, which DataFusion plans for its
/// higher-order functions (`TRANSFORM`, `FILTER`, `REDUCE`).
fn lambda_arguments(function: &mut sqlparser::ast::Function) {
    use sqlparser::ast::{
        LambdaFunction, LambdaFunctionParameter, LambdaSyntax, OneOrManyWithParens,
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return;
    };
    for arg in &mut list.args {
        let FunctionArg::ExprNamed {
            name,
            arg: FunctionArgExpr::Expr(body),
            operator: FunctionArgOperator::RightArrow,
        } = arg
        else {
            continue;
        };
        // Quoted: DataFusion lower-cases unquoted lambda parameters even with identifier
        // normalization off, while it reads the body's references as written.
        let parameter = |name: Ident| LambdaFunctionParameter {
            name: Ident::with_quote('"', name.value),
            data_type: None,
        };
        let params = match name {
            Expr::Identifier(name) => OneOrManyWithParens::One(parameter(name.clone())),
            Expr::Tuple(names) => OneOrManyWithParens::Many(
                names
                    .iter()
                    .filter_map(|n| match n {
                        Expr::Identifier(name) => Some(parameter(name.clone())),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => continue,
        };
        let mut body = std::mem::replace(body, Expr::value(Value::Null));
        guard_operands(&mut body);
        *arg = FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Lambda(LambdaFunction {
            params,
            body: Box::new(body),
            syntax: LambdaSyntax::Arrow,
        })));
    }
}

/// Each operand of `+ - * / %` in a lambda's body that is not a literal →
/// `lambda_operand(operand)`, which fails on a NULL number as ksqlDB's lambdas do (see
/// `functions::lambdas`).
fn guard_operands(body: &mut Expr) {
    use crate::functions::lambdas::OPERAND;
    let guarded = |e: &Expr| match e {
        Expr::Value(_) => true,
        Expr::Function(f) => f.name.to_string() == OPERAND,
        _ => false,
    };
    let _ = sqlparser::ast::visit_expressions_mut(body, |expr| {
        if let Expr::BinaryOp {
            op:
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo,
            left,
            right,
        } = expr
        {
            for operand in [left, right] {
                if !guarded(operand) {
                    let value = std::mem::replace(operand.as_mut(), Expr::value(Value::Null));
                    **operand = call(
                        OPERAND,
                        vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(value))],
                    );
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `STRUCT(A := x, …)` → `named_struct('A', x, …)` (`STRUCT()` → `empty_struct()`);
/// `MAP(k := v, …)` → `make_map(k, v, …)`.
fn rewrite_constructor(expr: &mut Expr) -> ControlFlow<String> {
    let Expr::Function(function) = expr else {
        return ControlFlow::Continue(());
    };
    lambda_arguments(function);
    time_unit_argument(function);
    let upper = function.name.to_string().to_uppercase();
    if (upper == "GREATEST" || upper == "LEAST")
        && let FunctionArguments::List(list) = &mut function.args
    {
        // `GREATEST(*)` compares nothing, as ksqlDB sees it.
        list.args
            .retain(|arg| !matches!(arg, FunctionArg::Unnamed(FunctionArgExpr::Wildcard)));
    }
    let name = function.name.to_string().to_uppercase();
    if name == "COUNT" {
        // ksqlDB's `COUNT()` counts rows, as `COUNT(*)` does; so does `COUNT(1)` (any
        // literal but NULL), made the same call so that one query may hold both.
        // (An INT literal is already `CAST(1 AS INT)` here.)
        let counts_rows = |arg: &FunctionArg| {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) = arg else {
                return false;
            };
            let literal = match expr {
                Expr::Cast { expr, .. } => expr.as_ref(),
                other => other,
            };
            matches!(literal, Expr::Value(v) if !matches!(v.value, Value::Null))
        };
        match &mut function.args {
            FunctionArguments::List(list) if list.args.is_empty() => {
                list.args
                    .push(FunctionArg::Unnamed(FunctionArgExpr::Wildcard));
            }
            FunctionArguments::List(list) if list.args.len() == 1 && counts_rows(&list.args[0]) => {
                list.args[0] = FunctionArg::Unnamed(FunctionArgExpr::Wildcard);
            }
            FunctionArguments::None => {
                function.args = FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)],
                    clauses: Vec::new(),
                });
            }
            _ => {}
        }
        return ControlFlow::Continue(());
    }
    if name == "COALESCE"
        && matches!(&function.args, FunctionArguments::List(l) if l.args.is_empty())
    {
        // DataFusion's own message for this names its coercion internals.
        return ControlFlow::Break("Function 'COALESCE' does not accept parameters ().".into());
    }
    if name == "ARRAY_SORT"
        && let FunctionArguments::List(list) = &mut function.args
        && (1..=2).contains(&list.args.len())
    {
        // ksqlDB moves NULLs to the end whichever the direction; DataFusion puts them
        // first unless told.
        if list.args.len() == 1 {
            list.args
                .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                    Value::SingleQuotedString("ASC".into()),
                ))));
        }
        list.args
            .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                Value::SingleQuotedString("NULLS LAST".into()),
            ))));
        return ControlFlow::Continue(());
    }
    let target = match name.as_str() {
        "STRUCT" => "named_struct",
        "MAP" => "make_map",
        _ => return ControlFlow::Continue(()),
    };
    let empty = match &function.args {
        FunctionArguments::List(list) => list.args.is_empty(),
        FunctionArguments::None => true,
        FunctionArguments::Subquery(_) => false,
    };
    if target == "named_struct" && empty {
        // DataFusion's `named_struct` needs a field; a STRUCT without any is ours.
        function.name = ObjectName::from(vec![Ident::new(crate::functions::EMPTY_STRUCT)]);
        return ControlFlow::Continue(());
    }
    let FunctionArguments::List(list) = &mut function.args else {
        return ControlFlow::Continue(());
    };
    let mut field_names = std::collections::HashSet::new();
    let mut args = Vec::with_capacity(list.args.len() * 2);
    for arg in list.args.drain(..) {
        match arg {
            FunctionArg::ExprNamed {
                name,
                arg: FunctionArgExpr::Expr(value),
                operator: FunctionArgOperator::Assignment,
            } => {
                let key = match (target, name) {
                    ("named_struct", Expr::Identifier(field)) => {
                        if !field_names.insert(field.value.clone()) {
                            return ControlFlow::Break(
                                "Duplicate field names found in STRUCT: ".to_string()
                                    + &field.value,
                            );
                        }
                        Expr::value(Value::SingleQuotedString(field.value))
                    }
                    (_, key) => key,
                };
                args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(key)));
                args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value)));
            }
            other => args.push(other),
        }
    }
    list.args = args;
    function.name = ObjectName::from(vec![Ident::new(target)]);
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::parse_timestamp;

    #[test]
    fn timestamp_literals_parse_with_partial_fields_and_zones() {
        assert_eq!(
            parse_timestamp("2018-01-01T00:00:00.001"),
            Some(1_514_764_800_001)
        );
        assert_eq!(
            parse_timestamp("2018-01-01T00:00:01"),
            Some(1_514_764_801_000)
        );
        assert_eq!(parse_timestamp("2018"), Some(1_514_764_800_000));
        assert_eq!(
            parse_timestamp("2019-01-01T00:00:00+0445"),
            Some(1_546_283_700_000)
        );
        assert_eq!(
            parse_timestamp("2020-02-10T08:31:44.001+0000"),
            Some(1_581_323_504_001)
        );
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Some(-1_000));
        assert_eq!(
            parse_timestamp("2020-02-24T24"),
            parse_timestamp("2020-02-25"),
            "hour 24 ends the day"
        );
        assert_eq!(parse_timestamp("2020-02-24T24:01"), None);
        assert_eq!(parse_timestamp("2019-13-01"), None);
        assert_eq!(parse_timestamp("not a time"), None);
    }
}
