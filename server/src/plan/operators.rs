//! ksqlDB's meaning of operators and constructors that DataFusion reads otherwise, as
//! expression planners consulted while SQL becomes a logical plan:
//! - [`KsqlOperators`]: `+` between two strings concatenates them (`'a' + 'b'` is `'ab'`;
//!   NULL on either side gives NULL).
//! - [`KsqlArrayLiterals`]: `ARRAY[…]` elements take ksqlDB's common type — numbers widen
//!   (INT, BIGINT, DECIMAL, DOUBLE), string literals among numbers are read as numbers
//!   (`'2e1'` is a DECIMAL), structs merge their fields (`STRUCT<X, Y>` and `STRUCT<Y, Z>`
//!   make `STRUCT<X, Y, Z>`, missing fields NULL).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator, cast, lit};
use sqlparser::ast::BinaryOperator;

use crate::types::SqlType;

#[derive(Debug)]
pub struct KsqlOperators;

impl ExprPlanner for KsqlOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let is_text = |e: &Expr| {
            matches!(
                e.get_type(schema),
                Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            )
        };
        if expr.op == BinaryOperator::Plus && is_text(&expr.left) && is_text(&expr.right) {
            return Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(expr.left),
                Operator::StringConcat,
                Box::new(expr.right),
            ))));
        }
        Ok(PlannerResult::Original(expr))
    }
}

#[derive(Debug)]
pub struct KsqlArrayLiterals;

impl ExprPlanner for KsqlArrayLiterals {
    /// Casts the elements to their common type when they differ, then leaves the array to
    /// DataFusion's planner.
    fn plan_array_literal(
        &self,
        exprs: Vec<Expr>,
        schema: &DFSchema,
    ) -> Result<PlannerResult<Vec<Expr>>> {
        let types = exprs
            .iter()
            .map(|e| e.get_type(schema))
            .collect::<Result<Vec<_>>>()?;
        let Some(common) = common_type(&exprs, &types)? else {
            return Ok(PlannerResult::Original(exprs));
        };
        let coerced = exprs
            .into_iter()
            .zip(&types)
            .map(|(expr, data_type)| coerce(expr, data_type, &common))
            .collect::<Result<Vec<_>>>()?;
        Ok(PlannerResult::Original(coerced))
    }
}

/// The elements' common type when DataFusion's would differ from ksqlDB's: numbers with
/// string literals or of several types, or structs of different fields. `None` leaves the
/// elements as they are.
fn common_type(exprs: &[Expr], types: &[DataType]) -> Result<Option<DataType>> {
    let typed: Vec<(&Expr, &DataType)> = exprs
        .iter()
        .zip(types)
        .filter(|(_, t)| **t != DataType::Null)
        .collect();
    let Some((_, first)) = typed.first() else {
        return Ok(None);
    };
    if typed.iter().all(|(_, t)| t == first) {
        return Ok(None);
    }
    if typed.iter().all(|(_, t)| matches!(t, DataType::Struct(_))) {
        let merged = typed
            .iter()
            .map(|(_, t)| (*t).clone())
            .reduce(|a, b| merge_structs(&a, &b).unwrap_or(a));
        return Ok(merged);
    }
    let numbers: Vec<&DataType> = typed
        .iter()
        .filter(|(_, t)| is_number(t))
        .map(|(_, t)| *t)
        .collect();
    let string_literal = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(Some(_)), _));
    if numbers.is_empty()
        || typed
            .iter()
            .any(|(e, t)| !is_number(t) && !string_literal(e))
    {
        return Ok(None);
    }
    let mut common = numbers[1..]
        .iter()
        .fold(numbers[0].clone(), |a, b| widen(&a, b));
    for (expr, _) in &typed {
        if let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = expr {
            let decimal = decimal_literal(text).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "invalid input syntax for type {}: \"{text}\"",
                    SqlType::from_arrow(&common)
                        .map_or_else(|| common.to_string(), |t| t.to_string())
                ))
            })?;
            common = widen(&common, &decimal.data_type());
        }
    }
    Ok(Some(common))
}

fn is_number(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Decimal128(..)
    )
}

/// The narrowest number type holding both, as ksqlDB widens: INT < BIGINT < DECIMAL <
/// DOUBLE, two DECIMALs keeping the larger integer part and scale.
fn widen(a: &DataType, b: &DataType) -> DataType {
    let as_decimal = |t: &DataType| match t {
        DataType::Int32 => Some((10u8, 0i8)),
        DataType::Int64 => Some((19, 0)),
        DataType::Decimal128(p, s) => Some((*p, *s)),
        _ => None,
    };
    match (a, b) {
        _ if a == b => a.clone(),
        (DataType::Float64, _) | (_, DataType::Float64) => DataType::Float64,
        (DataType::Int32 | DataType::Int64, DataType::Int32 | DataType::Int64) => DataType::Int64,
        _ => match (as_decimal(a), as_decimal(b)) {
            (Some((p1, s1)), Some((p2, s2))) => {
                let scale = s1.max(s2);
                let integer = (p1 as i16 - s1 as i16).max(p2 as i16 - s2 as i16);
                let precision = (integer + scale as i16).clamp(1, 38) as u8;
                DataType::Decimal128(precision, scale)
            }
            _ => a.clone(),
        },
    }
}

/// A string literal read as a number, as ksqlDB reads `'2e1'` among numbers: a DECIMAL
/// with the digits it has (`'2e1'` is DECIMAL(2, 0), `'1.50'` DECIMAL(3, 2)).
fn decimal_literal(text: &str) -> Option<ScalarValue> {
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let fraction = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i64);
    let scale = u8::try_from((fraction - exponent).max(0)).ok()?;
    let unscaled = crate::types::decimal::parse_decimal(text, 38, scale).ok()?;
    let digits = unscaled
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d + 1) as u8;
    let precision = digits.max(scale).max(1);
    Some(ScalarValue::Decimal128(
        Some(unscaled),
        precision,
        scale as i8,
    ))
}

/// Two structs' fields together, in order of appearance; a field both have takes the
/// common type of its two types.
fn merge_structs(a: &DataType, b: &DataType) -> Option<DataType> {
    let (DataType::Struct(left), DataType::Struct(right)) = (a, b) else {
        return None;
    };
    let mut fields: Vec<Field> = left.iter().map(|f| f.as_ref().clone()).collect();
    for field in right.iter() {
        match fields.iter_mut().find(|f| f.name() == field.name()) {
            Some(existing) if existing.data_type() != field.data_type() => {
                let merged = match (existing.data_type(), field.data_type()) {
                    (DataType::Struct(_), DataType::Struct(_)) => {
                        merge_structs(existing.data_type(), field.data_type())?
                    }
                    (x, y) if is_number(x) && is_number(y) => widen(x, y),
                    _ => return None,
                };
                *existing = existing.clone().with_data_type(merged);
            }
            Some(_) => {}
            None => fields.push(field.as_ref().clone().with_nullable(true)),
        }
    }
    Some(DataType::Struct(Fields::from(fields)))
}

/// `expr` (of `data_type`) as an element of type `common`.
fn coerce(expr: Expr, data_type: &DataType, common: &DataType) -> Result<Expr> {
    if data_type == common {
        return Ok(expr);
    }
    if let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = &expr
        && let Some(decimal) = decimal_literal(text)
    {
        return Ok(cast(lit(decimal), common.clone()));
    }
    if let (DataType::Struct(own), DataType::Struct(wanted)) = (data_type, common) {
        // Field by field: a field the element lacks is NULL.
        let mut arguments = Vec::with_capacity(wanted.len() * 2);
        for field in wanted.iter() {
            arguments.push(lit(field.name().as_str()));
            let value = match own.find(field.name()) {
                Some((_, own_field)) => coerce(
                    datafusion::functions::core::expr_fn::get_field(
                        expr.clone(),
                        field.name().as_str(),
                    ),
                    own_field.data_type(),
                    field.data_type(),
                )?,
                None => lit(ScalarValue::try_from(field.data_type())?),
            };
            arguments.push(value);
        }
        let named_struct = datafusion::functions::core::expr_fn::named_struct(arguments);
        // A NULL struct stays NULL.
        return Ok(Expr::Case(datafusion::logical_expr::Case::new(
            None,
            vec![(
                Box::new(expr.is_null()),
                Box::new(lit(ScalarValue::try_from(common)?)),
            )],
            Some(Box::new(named_struct)),
        )));
    }
    Ok(cast(expr, common.clone()))
}

/// The planners, in the order DataFusion consults them: array literals before DataFusion's
/// own (which would make the array), operators after them.
pub fn with_ksql_planners(defaults: Vec<Arc<dyn ExprPlanner>>) -> Vec<Arc<dyn ExprPlanner>> {
    let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![Arc::new(KsqlArrayLiterals)];
    planners.extend(defaults);
    planners.push(Arc::new(KsqlOperators));
    planners
}
