//! `ARRAY[…]`, ksqlDB's array constructor, as the scalar function `array_of` (the planner
//! writes every `ARRAY[e, …]` as `array_of(e, …)`). Its elements take ksqlDB's common
//! type: numbers widen (INT, BIGINT, DECIMAL, DOUBLE), string literals among numbers are
//! read as numbers (`'2e1'` is a DECIMAL), structs merge their fields (`STRUCT<X, Y>` and
//! `STRUCT<Y, Z>` make `STRUCT<X, Y, Z>`, missing fields NULL); other elements are
//! coerced as DataFusion's `make_array` coerces them.
//!
//! A function rather than DataFusion's array literal because a lambda's parameters are
//! visible in a function's arguments but not in an array literal's elements
//! (`TRANSFORM(a, x => ARRAY[x, x + 1])`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, new_null_array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::types::SqlType;

/// The name `ARRAY[…]` is planned as.
pub const NAME: &str = "array_of";

pub fn functions() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(ArrayOf {
        signature: Signature::user_defined(Volatility::Immutable),
    })]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayOf {
    signature: Signature,
}

impl ScalarUDFImpl for ArrayOf {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// ksqlDB's cases are left as they are (the elements are converted when evaluated:
    /// a cast cannot merge structs, and a string literal's type depends on its text);
    /// the others take `make_array`'s coercion.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || is_ksql_mix(arg_types) {
            return Ok(arg_types.to_vec());
        }
        datafusion::functions_nested::make_array::make_array_udf().coerce_types(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal(
            "array_of answers its type from its arguments' fields".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let elements: Vec<(&DataType, Option<&ScalarValue>)> = args
            .arg_fields
            .iter()
            .zip(args.scalar_arguments)
            .map(|(field, literal)| (field.data_type(), *literal))
            .collect();
        let element = element_type(&elements)?;
        Ok(Arc::new(Field::new(
            NAME,
            DataType::new_list(element, true),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::List(item) = args.return_field.data_type() else {
            return Err(DataFusionError::Internal(
                "array_of returns an array".into(),
            ));
        };
        let rows = args.number_rows;
        // A constant element is converted once and read at its one row, not repeated.
        let elements = args
            .args
            .iter()
            .map(|arg| {
                let (values, constant) = match arg {
                    ColumnarValue::Scalar(value) => (value.to_array_of_size(1)?, true),
                    ColumnarValue::Array(values) => (values.clone(), false),
                };
                Ok((convert(&values, item.data_type())?, constant))
            })
            .collect::<Result<Vec<_>>>()?;
        let width = elements.len();
        let values: ArrayRef = if width == 0 {
            new_null_array(item.data_type(), 0)
        } else {
            // Row by row, each element in turn.
            let sources: Vec<&dyn Array> = elements.iter().map(|(e, _)| e.as_ref()).collect();
            let order: Vec<(usize, usize)> = (0..rows)
                .flat_map(|row| {
                    elements
                        .iter()
                        .enumerate()
                        .map(move |(element, (_, constant))| {
                            (element, if *constant { 0 } else { row })
                        })
                })
                .collect();
            arrow::compute::interleave(&sources, &order)?
        };
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows));
        Ok(ColumnarValue::Array(Arc::new(ListArray::try_new(
            item.clone(),
            offsets,
            values,
            None,
        )?)))
    }
}

/// Whether the element types are a mix ksqlDB resolves differently from DataFusion:
/// structs of different fields, or numbers of several types or with strings.
fn is_ksql_mix(types: &[DataType]) -> bool {
    let typed: Vec<&DataType> = types.iter().filter(|t| !t.is_null()).collect();
    let Some(first) = typed.first() else {
        return false;
    };
    if typed.iter().all(|t| t == first) {
        return false;
    }
    typed.iter().all(|t| matches!(t, DataType::Struct(_)))
        || (typed.iter().any(|t| is_number(t))
            && typed.iter().all(|t| is_number(t) || *t == &DataType::Utf8))
}

/// The elements' type: ksqlDB's common type for its mixes, otherwise the (already
/// coerced) first element's.
fn element_type(elements: &[(&DataType, Option<&ScalarValue>)]) -> Result<DataType> {
    let types: Vec<DataType> = elements.iter().map(|(t, _)| (*t).clone()).collect();
    if !is_ksql_mix(&types) {
        return Ok(types.first().cloned().unwrap_or(DataType::Null));
    }
    let typed: Vec<&(&DataType, Option<&ScalarValue>)> =
        elements.iter().filter(|(t, _)| !t.is_null()).collect();
    if typed.iter().all(|(t, _)| matches!(t, DataType::Struct(_))) {
        let merged = typed
            .iter()
            .map(|(t, _)| (*t).clone())
            .reduce(|a, b| merge_structs(&a, &b).unwrap_or(a));
        return Ok(merged.unwrap_or(DataType::Null));
    }
    let mut numbers = typed.iter().filter(|(t, _)| is_number(t)).map(|(t, _)| *t);
    let first = numbers.next().cloned().unwrap_or(DataType::Null);
    let mut common = numbers.fold(first, |a, b| widen(&a, b));
    for (data_type, literal) in &typed {
        if is_number(data_type) {
            continue;
        }
        let text = match literal {
            Some(ScalarValue::Utf8(Some(text))) => text,
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "invalid input syntax for type {}: an ARRAY mixes numbers with a \
                     string that is not a literal",
                    type_name(&common)
                )));
            }
        };
        let decimal = decimal_literal(text).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "invalid input syntax for type {}: \"{text}\"",
                type_name(&common)
            ))
        })?;
        common = widen(&common, &decimal.data_type());
    }
    Ok(common)
}

fn type_name(data_type: &DataType) -> String {
    SqlType::from_arrow(data_type).map_or_else(|| data_type.to_string(), |t| t.to_string())
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

/// An element's values as the array's element type: structs field by field (a field the
/// element lacks is NULL, a NULL struct stays NULL), string literals read as numbers,
/// anything else cast.
fn convert(values: &ArrayRef, element: &DataType) -> Result<ArrayRef> {
    if values.data_type() == element {
        return Ok(values.clone());
    }
    if let (DataType::Struct(_), DataType::Struct(wanted)) = (values.data_type(), element) {
        return crate::types::struct_by_name(values.as_struct(), wanted, convert);
    }
    if values.data_type() == &DataType::Utf8 && is_number(element) {
        let texts = values.as_string::<i32>();
        let numbers = texts
            .iter()
            .map(|text| match text {
                None => ScalarValue::try_from(element),
                Some(text) => decimal_literal(text)
                    .ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "invalid input syntax for type {}: \"{text}\"",
                            type_name(element)
                        ))
                    })?
                    .cast_to(element),
            })
            .collect::<Result<Vec<_>>>()?;
        return if numbers.is_empty() {
            Ok(new_null_array(element, 0))
        } else {
            ScalarValue::iter_to_array(numbers)
        };
    }
    Ok(arrow::compute::cast(values, element)?)
}

#[cfg(test)]
mod tests {
    use crate::functions::test_support::{eval, eval_error};

    #[test]
    fn elements_take_ksqldbs_common_type() {
        assert_eq!(eval("array_of(1, 2)"), "[1, 2]");
        assert_eq!(eval("arrow_typeof(array_of(1, 2.5e0))"), "List(Float64)");
        assert_eq!(
            eval("arrow_typeof(array_of(CAST(1 AS INT), CAST(2 AS BIGINT)))"),
            "List(Int64)"
        );
        assert_eq!(eval("array_of(1, '2e1', NULL)"), "[1, 20, NULL]");
        assert_eq!(
            eval("arrow_typeof(array_of(CAST(1 AS INT), '1.50'))"),
            "List(Decimal128(12, 2))"
        );
        assert_eq!(eval("array_of('a', NULL, 'b')"), "[a, NULL, b]");
        assert!(eval_error("array_of(1, 'x')").contains("invalid input syntax"));
    }

    #[test]
    fn structs_merge_their_fields_and_null_structs_stay_null() {
        assert_eq!(
            eval("array_of(NULL, named_struct('X', 30, 'Y', 40), named_struct('Y', 30, 'Z', 40))"),
            "[NULL, {X: 30, Y: 40, Z: NULL}, {X: NULL, Y: 30, Z: 40}]"
        );
    }

    #[test]
    fn lambda_parameters_reach_the_elements() {
        assert_eq!(
            eval("transform(array_of(40, 50), x -> array_of(x, x + 1))"),
            "[[40, 41], [50, 51]]"
        );
    }
}
