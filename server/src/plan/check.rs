//! ksqlDB's type rules for comparisons, checked on the planned expressions before they run.
//!
//! DataFusion coerces freely (`ID >= 'not an int'` casts the string); ksqlDB refuses to
//! compare a number with a string, orders no ARRAY, MAP or STRUCT, and rejects a comparison
//! with a bare `NULL`, in a comparison or in arithmetic, and arithmetic on what is not a
//! number. Entry points: [`check_comparisons`],
//! [`check_arithmetic`].

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator};

use super::PlanError;
use crate::types::SqlType;

/// Where an expression sits, for the error's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    Select,
    Where,
    Having,
}

/// Fails with ksqlDB's message at the first comparison it would refuse.
pub fn check_comparisons(expr: &Expr, schema: &DFSchema, clause: Clause) -> Result<(), PlanError> {
    let mut problem = None;
    let _ = expr.apply(|node| {
        if let Expr::BinaryExpr(binary) = node
            && let Some(name) = operator_name(binary.op)
        {
            problem = refuse(binary, name, schema);
            if problem.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match problem {
        None => Ok(()),
        Some(message) => Err(PlanError::Plan(match clause {
            Clause::Select => message,
            Clause::Where => format!("Error in WHERE expression: {message}"),
            Clause::Having => format!("Error in HAVING expression: {message}"),
        })),
    }
}

/// Fails with ksqlDB's message at the first arithmetic it would refuse: on a bare `NULL`
/// (`1 + NULL`) or on operands that are not numbers (`TRUE + 1.5`).
pub fn check_arithmetic(expr: &Expr, schema: &DFSchema) -> Result<(), PlanError> {
    let mut problem = None;
    let _ = expr.apply(|node| {
        if let Expr::BinaryExpr(binary) = node
            && binary.op.is_numerical_operators()
        {
            problem = refuse_arithmetic(binary, schema);
            if problem.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    problem.map_or(Ok(()), |message| Err(PlanError::Plan(message)))
}

fn refuse_arithmetic(binary: &BinaryExpr, schema: &DFSchema) -> Option<String> {
    let statement = format!(
        "({} {} {})",
        text(&binary.left),
        symbol(binary.op),
        text(&binary.right)
    );
    if is_null_literal(&binary.left) || is_null_literal(&binary.right) {
        let operand_type = |operand: &Expr| {
            if is_null_literal(operand) {
                return "null".to_string();
            }
            operand
                .get_type(schema)
                .map_or_else(|_| "unknown".into(), |t| type_name(&t))
        };
        return Some(format!(
            "Error processing expression: {statement}. Arithmetic on types {} and {} are not \
             supported.",
            operand_type(&binary.left),
            operand_type(&binary.right),
        ));
    }
    let left = binary.left.get_type(schema).ok()?;
    let right = binary.right.get_type(schema).ok()?;
    let not_a_number = |t: &DataType| {
        matches!(
            SqlType::from_arrow(t),
            Some(
                SqlType::Boolean
                    | SqlType::Bytes
                    | SqlType::Array(_)
                    | SqlType::Map(..)
                    | SqlType::Struct(_)
            )
        )
    };
    (not_a_number(&left) || not_a_number(&right)).then(|| {
        format!(
            "Error processing expression: {statement}. Unsupported arithmetic types. {} {}",
            base_type_name(&left),
            base_type_name(&right)
        )
    })
}

/// A `NULL` literal, maybe cast by DataFusion's coercion.
fn is_null_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(value, _) => value.is_null(),
        Expr::Cast(cast) => is_null_literal(&cast.expr),
        Expr::TryCast(cast) => is_null_literal(&cast.expr),
        _ => false,
    }
}

fn refuse(binary: &BinaryExpr, name: &str, schema: &DFSchema) -> Option<String> {
    let left = binary.left.get_type(schema).ok()?;
    let right = binary.right.get_type(schema).ok()?;
    if left == DataType::Null || right == DataType::Null {
        return Some(format!(
            "Comparison with NULL not supported: {} {} {}\nUse 'IS NULL' or 'IS NOT NULL' \
             instead.\nStatement: ({} {} {})",
            type_name(&left),
            symbol(binary.op),
            type_name(&right),
            text(&binary.left),
            symbol(binary.op),
            text(&binary.right),
        ));
    }
    if comparable(&left, &right, binary.op) {
        return None;
    }
    Some(format!(
        "Cannot compare {} ({}) to {} ({}) with {name}.\nStatement: ({} {} {})",
        text(&binary.left),
        type_name(&left),
        text(&binary.right),
        type_name(&right),
        text(&binary.left),
        symbol(binary.op),
        text(&binary.right),
    ))
}

fn comparable(left: &DataType, right: &DataType, op: Operator) -> bool {
    let equality = matches!(op, Operator::Eq | Operator::NotEq);
    let (Some(l), Some(r)) = (SqlType::from_arrow(left), SqlType::from_arrow(right)) else {
        // Types with no ksqlDB name are DataFusion's business.
        return true;
    };
    let numeric = |t: &SqlType| {
        matches!(
            t,
            SqlType::Integer | SqlType::BigInt | SqlType::Double | SqlType::Decimal { .. }
        )
    };
    let temporal = |t: &SqlType| matches!(t, SqlType::Timestamp | SqlType::Date | SqlType::Time);
    match (&l, &r) {
        _ if numeric(&l) && numeric(&r) => true,
        (SqlType::String, SqlType::String) | (SqlType::Bytes, SqlType::Bytes) => true,
        (SqlType::Boolean, SqlType::Boolean) => true,
        _ if temporal(&l) && (temporal(&r) || r == SqlType::String) => true,
        _ if temporal(&r) && l == SqlType::String => true,
        (SqlType::Array(_), SqlType::Array(_))
        | (SqlType::Map(..), SqlType::Map(..))
        | (SqlType::Struct(_), SqlType::Struct(_)) => equality,
        _ => false,
    }
}

fn operator_name(op: Operator) -> Option<&'static str> {
    Some(match op {
        Operator::Eq => "EQUAL",
        Operator::NotEq => "NOT_EQUAL",
        Operator::Lt => "LESS_THAN",
        Operator::LtEq => "LESS_THAN_OR_EQUAL",
        Operator::Gt => "GREATER_THAN",
        Operator::GtEq => "GREATER_THAN_OR_EQUAL",
        _ => return None,
    })
}

fn symbol(op: Operator) -> String {
    match op {
        Operator::NotEq => "<>".into(),
        other => other.to_string(),
    }
}

fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "NULL".into(),
        other => SqlType::from_arrow(other).map_or_else(|| other.to_string(), |t| t.to_string()),
    }
}

/// A type without its parameters, as ksqlDB names its base types (`DECIMAL`, `ARRAY`).
fn base_type_name(data_type: &DataType) -> String {
    let name = type_name(data_type);
    match name.find(['(', '<']) {
        Some(end) => name[..end].to_string(),
        None => name,
    }
}

/// An operand as ksqlDB prints it: columns by name, strings quoted, function names in
/// capitals, `ARRAY[…]` and `MAP(k:=v, …)` as written.
fn text(expr: &Expr) -> String {
    match expr {
        Expr::Column(column) => column.name.clone(),
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => {
            format!("'{s}'")
        }
        Expr::Literal(value, _) if value.is_null() => "null".into(),
        Expr::Literal(value, _) => value.to_string(),
        Expr::Cast(cast) => text(&cast.expr),
        Expr::TryCast(cast) => text(&cast.expr),
        Expr::BinaryExpr(binary) => format!(
            "({} {} {})",
            text(&binary.left),
            symbol(binary.op),
            text(&binary.right)
        ),
        Expr::AggregateFunction(call) => format!(
            "{}({})",
            call.func.name().to_uppercase(),
            call.params
                .args
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Expr::ScalarFunction(call) => {
            let list = |args: &[Expr]| args.iter().map(text).collect::<Vec<_>>().join(", ");
            match (call.func.name(), call.args.as_slice()) {
                ("make_array" | crate::functions::array_constructor::NAME, elements) => {
                    format!("ARRAY[{}]", list(elements))
                }
                ("map", [Expr::ScalarFunction(keys), Expr::ScalarFunction(values)])
                    if keys.func.name() == "make_array" && values.func.name() == "make_array" =>
                {
                    let entries = keys
                        .args
                        .iter()
                        .zip(&values.args)
                        .map(|(key, value)| format!("{}:={}", text(key), text(value)))
                        .collect::<Vec<_>>();
                    format!("MAP({})", entries.join(", "))
                }
                (name, args) => format!("{}({})", name.to_uppercase(), list(args)),
            }
        }
        other => other.to_string(),
    }
}
