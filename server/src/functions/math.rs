//! ksqlDB's math functions where DataFusion's differ: `GREATEST` and `LEAST` (with
//! ksqlDB's type resolution), `SIGN`, `SQRT` (NaN below zero), `LOG` (natural logarithm;
//! with a base, NaN for bases ≤ 0 or 1), `CEIL` and `FLOOR` (whole numbers of the
//! argument's type: INT stays INT, DECIMAL keeps its scale), `ROUND`, which breaks ties
//! towards positive infinity (`ROUND(-1.5)` is -1) on the decimal digits a DOUBLE prints
//! as and keeps a DECIMAL's type when given a number of places, and `TRUNC`, which cuts
//! towards zero on those digits. DECIMALs are rounded exactly in both widths (128 and 256
//! bits).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowNativeTypeOp, AsArray, Float64Array, Int32Array, Int64Array,
    PrimitiveArray,
};
use arrow::datatypes::{DataType, Decimal128Type, Decimal256Type, DecimalType, i256};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::ScalarUDF;

use super::udf::{KsqlFunction, any_null, doubles, integers, is_number, null_rows, row_failure};
use crate::types::SqlType;

pub fn functions() -> Vec<ScalarUDF> {
    let mut functions = extremes();
    functions.extend([
        KsqlFunction::udf("sign", |args| one_number(args, DataType::Int32), sign),
        KsqlFunction::udf(
            "sqrt",
            |args| one_number(args, DataType::Float64),
            |args, _| doubles_map(&args[0], f64::sqrt),
        ),
        KsqlFunction::udf("log", log_type, log),
        KsqlFunction::udf("round", round_type, round),
        KsqlFunction::udf("trunc", trunc_type, trunc),
        KsqlFunction::udf("ceil", whole_type, |args, _| {
            whole(&args[0], Rounding::Ceiling)
        }),
        KsqlFunction::udf("floor", whole_type, |args, _| {
            whole(&args[0], Rounding::Floor)
        }),
    ]);
    functions
}

fn one_number(args: &[DataType], result: DataType) -> Option<DataType> {
    match args {
        [t] if is_number(t) => Some(result),
        _ => None,
    }
}

fn doubles_map(array: &ArrayRef, f: impl Fn(f64) -> f64) -> Result<ArrayRef, DataFusionError> {
    let out: Float64Array = doubles(array)?.iter().map(|v| v.map(&f)).collect();
    Ok(Arc::new(out))
}

/// `SIGN(x)`: -1, 0 or 1 as an INT (0 for NaN).
fn sign(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    let out: Int32Array = doubles(&args[0])?
        .iter()
        .map(|v| {
            v.map(|v| match v {
                v if v > 0.0 => 1,
                v if v < 0.0 => -1,
                _ => 0,
            })
        })
        .collect();
    Ok(Arc::new(out))
}

fn whole_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [DataType::Null] => Some(DataType::Float64),
        [
            t @ (DataType::Int32
            | DataType::Int64
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)),
        ] => Some(t.clone()),
        _ => None,
    }
}

/// `CEIL(x)` and `FLOOR(x)`: the nearest whole number above or below, of `x`'s type
/// (a DECIMAL keeps its scale: `CEIL(1.1)` is `2.0`).
fn whole(input: &ArrayRef, rounding: Rounding) -> Result<ArrayRef, DataFusionError> {
    fn at_scale<T: DecimalType>(
        input: &ArrayRef,
        rounding: Rounding,
    ) -> Result<ArrayRef, DataFusionError>
    where
        T::Native: Unscaled,
    {
        let (precision, scale) = decimal_shape(input.data_type());
        let unit = T::Native::ten_to(scale.max(0) as u32);
        let out: PrimitiveArray<T> = input
            .as_primitive::<T>()
            .unary(|v| to_multiple(v, unit, rounding));
        Ok(Arc::new(out.with_precision_and_scale(precision, scale)?))
    }
    match input.data_type() {
        DataType::Int32 | DataType::Int64 => Ok(input.clone()),
        DataType::Decimal128(..) => at_scale::<Decimal128Type>(input, rounding),
        DataType::Decimal256(..) => at_scale::<Decimal256Type>(input, rounding),
        _ => doubles_map(
            input,
            match rounding {
                Rounding::Ceiling => f64::ceil,
                _ => f64::floor,
            },
        ),
    }
}

fn log_type(args: &[DataType]) -> Option<DataType> {
    (matches!(args.len(), 1 | 2) && args.iter().all(is_number)).then_some(DataType::Float64)
}

/// `LOG(x)`: the natural logarithm; `LOG(base, x)`: the logarithm in `base`, NaN when the
/// base is not above 0 or is 1.
fn log(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef, DataFusionError> {
    if args.len() == 1 {
        return doubles_map(&args[0], f64::ln);
    }
    let (bases, values) = (doubles(&args[0])?, doubles(&args[1])?);
    let out: Float64Array = bases
        .iter()
        .zip(values.iter())
        .map(|(base, value)| {
            let (base, value) = (base?, value?);
            Some(if base <= 0.0 || base == 1.0 {
                f64::NAN
            } else {
                value.ln() / base.ln()
            })
        })
        .collect();
    Ok(Arc::new(out))
}

fn round_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale)] => Some(
            decimal_type(precision.saturating_sub((*scale).max(0) as u8).max(1), 0),
        ),
        [t @ (DataType::Int32 | DataType::Int64)] => Some(t.clone()),
        [t] if is_number(t) => Some(DataType::Int64),
        [
            t @ (DataType::Decimal128(..) | DataType::Decimal256(..)),
            places,
        ] if places.is_integer() || places.is_null() => Some(t.clone()),
        [t, places] if is_number(t) && (places.is_integer() || places.is_null()) => {
            Some(DataType::Float64)
        }
        _ => None,
    }
}

/// The Arrow type of `DECIMAL(precision, scale)`: 128 bits up to 38 digits, 256 beyond.
fn decimal_type(precision: u8, scale: u8) -> DataType {
    SqlType::Decimal { precision, scale }.to_arrow()
}

/// A decimal type's precision and scale (0 and 0 for any other type).
fn decimal_shape(data_type: &DataType) -> (u8, i8) {
    match data_type {
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            (*precision, *scale)
        }
        _ => (0, 0),
    }
}

/// `ROUND(x)`: the nearest whole number (INT and BIGINT stay, DOUBLE becomes BIGINT,
/// DECIMAL loses its scale); `ROUND(x, places)`: rounded to `places` decimal places
/// (negative rounds left of the point). Ties go towards positive infinity.
fn round(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    let input = &args[0];
    match (input.data_type(), result) {
        (DataType::Decimal128(..) | DataType::Decimal256(..), _) => {
            to_places(args, result, Rounding::HalfUp)
        }
        (_, DataType::Int32 | DataType::Int64) if args.len() == 1 => {
            if input.data_type().is_integer() {
                return Ok(arrow::compute::cast(input, result)?);
            }
            let out: Int64Array = doubles(input)?
                .iter()
                .map(|v| v.map(round_half_up))
                .collect();
            Ok(Arc::new(out))
        }
        _ => doubles_to_places(args, Rounding::HalfUp),
    }
}

fn trunc_type(args: &[DataType]) -> Option<DataType> {
    match args {
        [
            t @ (DataType::Int32
            | DataType::Int64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)),
        ] => Some(t.clone()),
        [
            t @ (DataType::Decimal128(..) | DataType::Decimal256(..)),
            places,
        ] if places.is_integer() || places.is_null() => Some(t.clone()),
        [t] if is_number(t) => Some(DataType::Float64),
        [t, places] if is_number(t) && (places.is_integer() || places.is_null()) => {
            Some(DataType::Float64)
        }
        _ => None,
    }
}

/// `TRUNC(x)`: `x` without its fraction; `TRUNC(x, places)`: cut to `places` decimal places
/// (negative cuts left of the point), towards zero. A DECIMAL keeps its type; a DOUBLE is
/// cut on the decimal digits it prints as (`TRUNC(0.29, 2)` is 0.29), and is never -0.0.
fn trunc(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef, DataFusionError> {
    match args[0].data_type() {
        DataType::Int32 | DataType::Int64 => Ok(args[0].clone()),
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            to_places(args, result, Rounding::Down)
        }
        _ if args.len() == 1 => doubles_map(&args[0], |v| v.trunc() + 0.0),
        _ => doubles_to_places(args, Rounding::Down),
    }
}

/// A DOUBLE argument rounded to its row's places (the second argument); NULL where either
/// is. Every slot is computed, the NULL ones too (any double is a valid input), so the
/// loop has no branch on NULLs.
fn doubles_to_places(args: &[ArrayRef], rounding: Rounding) -> Result<ArrayRef, DataFusionError> {
    let values = doubles(&args[0])?;
    let places = integers(&args[1])?;
    let nulls = null_rows(args);
    let rounded: Vec<f64> = values
        .values()
        .iter()
        .zip(places.values().iter())
        .map(|(&value, &places)| double_to_places(value, places, rounding))
        .collect();
    Ok(Arc::new(Float64Array::new(rounded.into(), nulls)))
}

/// A DECIMAL argument rounded to its row's places (the second argument, or none), as
/// the `result` type: the argument's, or a scale of 0 when no places are given.
fn to_places(
    args: &[ArrayRef],
    result: &DataType,
    rounding: Rounding,
) -> Result<ArrayRef, DataFusionError> {
    let places = args.get(1).map(integers).transpose()?;
    let out = match args[0].data_type() {
        DataType::Decimal128(..) => {
            decimals_to_places::<Decimal128Type>(args, places.as_ref(), result, rounding)?
        }
        _ => decimals_to_places::<Decimal256Type>(args, places.as_ref(), result, rounding)?,
    };
    // A 256-bit decimal that lost its scale may fit in 128 bits.
    if out.data_type() == result {
        Ok(out)
    } else {
        Ok(arrow::compute::cast(&out, result)?)
    }
}

fn decimals_to_places<T: DecimalType>(
    args: &[ArrayRef],
    places: Option<&Int64Array>,
    result: &DataType,
    rounding: Rounding,
) -> Result<ArrayRef, DataFusionError>
where
    T::Native: Unscaled,
{
    let values = args[0].as_primitive::<T>();
    let (_, scale) = decimal_shape(args[0].data_type());
    let (precision, result_scale) = decimal_shape(result);
    let limit = T::Native::ten_to(u32::from(precision));
    let scale_unit = T::Native::ten_to(scale.max(0) as u32);
    let out: PrimitiveArray<T> = (0..values.len())
        .map(|row| {
            if any_null(args, row) {
                return None;
            }
            let place = places.map_or(0, |p| p.value(row));
            let dropped = i64::from(scale).saturating_sub(place);
            let value = values.value(row);
            let rounded = match u32::try_from(dropped) {
                Ok(0) | Err(_) => value,
                Ok(dropped) if dropped > T::Native::DIGITS => T::Native::ZERO,
                Ok(dropped) => to_multiple(value, T::Native::ten_to(dropped), rounding),
            };
            // Back to the result's scale: the input's, or none.
            let scaled = if result_scale == 0 {
                rounded.div_wrapping(scale_unit)
            } else {
                rounded
            };
            if scaled.max(scaled.neg_wrapping()) >= limit {
                return row_failure(row, "the rounded value does not fit its DECIMAL type");
            }
            Some(scaled)
        })
        .collect();
    Ok(Arc::new(
        out.with_precision_and_scale(precision, result_scale)?,
    ))
}

/// Java's `Math.round`: the nearest integer, ties up.
fn round_half_up(value: f64) -> i64 {
    let floor = value.floor();
    let rounded = if value - floor >= 0.5 {
        floor + 1.0
    } else {
        floor
    };
    rounded as i64
}

/// Where a value between two multiples goes.
#[derive(Clone, Copy, Debug)]
enum Rounding {
    /// To the nearer, ties towards positive infinity (ksqlDB's `ROUND`: half up above zero,
    /// half down below it).
    HalfUp,
    /// Towards zero (`TRUNC`).
    Down,
    /// Towards negative infinity (`FLOOR`).
    Floor,
    /// Towards positive infinity (`CEIL`).
    Ceiling,
}

/// A DECIMAL's unscaled value, of either width (Arrow's `Decimal128` and `Decimal256`).
trait Unscaled: ArrowNativeTypeOp + Ord {
    /// The most digits a value holds.
    const DIGITS: u32;

    fn ten_to(power: u32) -> Self {
        Self::usize_as(10).pow_wrapping(power)
    }
}

impl Unscaled for i128 {
    const DIGITS: u32 = 38;
}

impl Unscaled for i256 {
    const DIGITS: u32 = 76;
}

/// `value` rounded to a multiple of `unit` (a power of ten the width holds).
fn to_multiple<T: Unscaled>(value: T, unit: T, rounding: Rounding) -> T {
    divided(value, unit, rounding).mul_wrapping(unit)
}

/// `value` without its last `dropped` digits (0 to the width's digits), rounded.
fn without_digits<T: Unscaled>(value: T, dropped: u32, rounding: Rounding) -> T {
    divided(value, T::ten_to(dropped), rounding)
}

/// `value / divisor`, rounded.
fn divided<T: Unscaled>(value: T, divisor: T, rounding: Rounding) -> T {
    let (quotient, remainder) = (value.div_wrapping(divisor), value.mod_wrapping(divisor));
    let up = quotient.add_wrapping(T::ONE);
    let down = quotient.sub_wrapping(T::ONE);
    match rounding {
        Rounding::Down => quotient,
        Rounding::Floor if remainder < T::ZERO => down,
        Rounding::Ceiling if remainder > T::ZERO => up,
        Rounding::Floor | Rounding::Ceiling => quotient,
        Rounding::HalfUp => {
            let half = divisor.div_wrapping(T::usize_as(2));
            if remainder >= half {
                up
            } else if remainder.neg_wrapping() > half {
                down
            } else {
                quotient
            }
        }
    }
}

/// A DOUBLE rounded to `places` on its shortest decimal digits (Java's
/// `BigDecimal.valueOf`); never -0.0.
fn double_to_places(value: f64, places: i64, rounding: Rounding) -> f64 {
    if value == 0.0 {
        return 0.0;
    }
    scaled_double_to_places(value, places, rounding)
        .unwrap_or_else(|| printed_double_to_places(value, places, rounding))
}

/// Powers of ten that are exact doubles.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// How far `scaled_double_to_places` reaches: products with 10^places below 2^31.
const SCALED_LIMIT: f64 = 2_147_483_648.0;

/// `double_to_places` without printing the value, for a value whose product with
/// 10^places is below `SCALED_LIMIT` (2^31); `None` for others.
///
/// There the product is within 2^-21 of the value's printed digits times 10^places (one
/// rounding of the product, and half an ulp between a double and its shortest digits, each
/// at most 2^-53 of it), so a product further than `MARGIN` from where the rounding changes
/// (a whole number; for `HalfUp` a half) rounds as the digits do. Closer than that, the
/// digits are on the side of the boundary that the value is of the boundary's own double
/// (rounding to the nearest double keeps order, and at this size no two decimals with
/// that few digits share a double). The whole number divided by 10^places is what
/// `decimal_to_double` computes.
fn scaled_double_to_places(value: f64, places: i64, rounding: Rounding) -> Option<f64> {
    const MARGIN: f64 = 1e-6;
    let power = *POWERS_OF_TEN.get(usize::try_from(places).ok()?)?;
    let scaled = value * power;
    if scaled.is_nan() || scaled.abs() >= SCALED_LIMIT {
        return None;
    }
    // Whole numbers by conversion, not by `floor` and `round` (calls into libm without
    // SSE4.1): below 2^31 every product converts exactly.
    let floor = {
        let toward_zero = scaled as i64 as f64;
        if toward_zero > scaled {
            toward_zero - 1.0
        } else {
            toward_zero
        }
    };
    let nearest = if scaled - floor >= 0.5 {
        floor + 1.0
    } else {
        floor
    };
    let whole = if (scaled - nearest).abs() < MARGIN {
        let boundary = nearest / power;
        if value == boundary {
            // The digits fit `places` already.
            return Some(value);
        }
        let below = if value > boundary {
            nearest
        } else {
            nearest - 1.0
        };
        match rounding {
            Rounding::HalfUp => nearest,
            Rounding::Floor => below,
            Rounding::Ceiling => below + 1.0,
            Rounding::Down if value > 0.0 => below,
            Rounding::Down => below + 1.0,
        }
    } else {
        match rounding {
            Rounding::HalfUp if (scaled - floor - 0.5).abs() < MARGIN => {
                // Ties go up: below the half's own double is below the half.
                let half = (2.0 * floor + 1.0) / (2.0 * power);
                if value >= half { floor + 1.0 } else { floor }
            }
            Rounding::HalfUp => nearest,
            Rounding::Floor => floor,
            Rounding::Ceiling => floor + 1.0,
            Rounding::Down if scaled < 0.0 => floor + 1.0,
            Rounding::Down => floor,
        }
    };
    Some(whole / power + 0.0)
}

/// `double_to_places` on the value's printed digits.
fn printed_double_to_places(value: f64, places: i64, rounding: Rounding) -> f64 {
    if !value.is_finite() {
        return value;
    }
    let mut buffer = ryu::Buffer::new();
    let Some((unscaled, scale)) = shortest_decimal(buffer.format_finite(value.abs())) else {
        return value;
    };
    let dropped = scale.saturating_sub(places);
    if dropped <= 0 {
        return value;
    }
    let signed = if value < 0.0 { -unscaled } else { unscaled };
    let rounded = match u32::try_from(dropped) {
        Ok(dropped) if dropped <= i128::DIGITS => without_digits(signed, dropped, rounding),
        _ => 0,
    };
    if rounded == 0 {
        return 0.0;
    }
    decimal_to_double(rounded, places).unwrap_or(value)
}

/// The shortest text of a positive double (`123.45`, `1e16`, `1.2345e-7`, as `ryu` writes
/// it) as digits and a scale: the value is `unscaled × 10^-scale`.
fn shortest_decimal(text: &str) -> Option<(i128, i64)> {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
        None => (text, 0),
    };
    let mut unscaled: i128 = 0;
    let mut fraction_digits = 0i64;
    let mut after_point = false;
    for byte in mantissa.bytes() {
        match byte {
            b'.' => after_point = true,
            b'0'..=b'9' => {
                unscaled = unscaled * 10 + i128::from(byte - b'0');
                fraction_digits += i64::from(after_point);
            }
            _ => return None,
        }
    }
    Some((unscaled, fraction_digits - exponent))
}

/// `unscaled × 10^-scale` as the nearest double: one exact division or multiplication
/// when both operands are exact doubles (the correctly rounded result), else read from
/// text.
fn decimal_to_double(unscaled: i128, scale: i64) -> Option<f64> {
    if unscaled.unsigned_abs() < 1 << 53 && scale.unsigned_abs() < 23 {
        let power = POWERS_OF_TEN[scale.unsigned_abs() as usize];
        let mantissa = unscaled as f64;
        return Some(if scale >= 0 {
            mantissa / power
        } else {
            mantissa * power
        });
    }
    format!("{unscaled}e{}", -scale).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{eval, eval_error};
    use super::*;

    #[test]
    fn sign_sqrt_and_log_follow_java() {
        assert_eq!(eval("sign(CAST(-2 AS BIGINT))"), "-1");
        assert_eq!(eval("sign(0.0e0)"), "0");
        assert_eq!(eval("sign(3.5e0)"), "1");
        assert_eq!(eval("sign(CAST(NULL AS INT))"), "NULL");
        assert_eq!(eval("sqrt(CAST(-1 AS INT))"), "NaN");
        assert_eq!(eval("sqrt(CAST(4 AS BIGINT))"), "2.0");
        assert_eq!(eval("log(CAST(13 AS INT))"), "2.5649493574615367");
        assert_eq!(eval("log(0.0e0)"), "-inf");
        assert_eq!(eval("log(15, 13)"), "0.9471572411831843");
        for bad_base in ["0", "1", "-15"] {
            assert_eq!(eval(&format!("log({bad_base}, 13)")), "NaN");
        }
        assert_eq!(eval("log(15, CAST(NULL AS INT))"), "NULL");
        assert!(eval_error("sqrt('x')").contains("does not accept parameters (STRING)"));
    }

    #[test]
    fn greatest_and_least_skip_nulls_and_resolve_types_as_ksqldb() {
        assert_eq!(
            eval("greatest(CAST(1 AS INT), CAST(NULL AS INT), CAST(5 AS INT))"),
            "5"
        );
        assert_eq!(eval("least(CAST(1 AS INT), NULL, CAST(5 AS INT))"), "1");
        assert_eq!(
            eval("arrow_typeof(greatest(CAST(1 AS INT), 2.5e0))"),
            "Float64"
        );
        assert_eq!(
            eval("greatest(CAST(1234567.89 AS DECIMAL(9, 2)), CAST(0.123456 AS DECIMAL(7, 6)))"),
            "1234567.890000"
        );
        assert_eq!(
            eval("arrow_typeof(least(CAST(1 AS DECIMAL(9, 2)), CAST(0 AS DECIMAL(7, 6))))"),
            "Decimal128(13, 6)"
        );
        // Wider than 38 digits: 256-bit decimals, widened alike.
        assert_eq!(
            eval("arrow_typeof(greatest(CAST(1.5 AS DECIMAL(50, 30)), CAST(2 AS DECIMAL(40, 0))))"),
            "Decimal256(70, 30)"
        );
        assert_eq!(
            eval("greatest(CAST(1.5 AS DECIMAL(50, 30)), CAST(2 AS DECIMAL(9, 2)))"),
            "2.000000000000000000000000000000"
        );
        assert!(
            eval_error("greatest(CAST(1 AS INT), CAST(2 AS BIGINT), CAST(3 AS DECIMAL(50, 30)))")
                .contains("ambiguous method parameters (INTEGER, BIGINT, DECIMAL(50, 30))")
        );
        assert_eq!(eval("greatest('apple', NULL, 'hello')"), "hello");
        assert_eq!(
            eval("least(CAST(NULL AS STRING), CAST(NULL AS STRING))"),
            "NULL"
        );
        assert_eq!(
            eval("greatest(CAST('2022-01-01' AS DATE), '2022-06-14')"),
            "2022-06-14"
        );
        assert!(
            eval_error("greatest(CAST(1 AS INT), CAST(2 AS BIGINT))")
                .contains("ambiguous method parameters (INTEGER, BIGINT)")
        );
        assert!(
            eval_error("greatest(NULL, NULL)").contains("ambiguous method parameters (null, null)")
        );
        assert!(eval_error("greatest()").contains("does not accept parameters ()"));
        assert!(
            eval_error("least('a', CAST(1 AS INT))")
                .contains("does not accept parameters (STRING, INTEGER)")
        );
    }

    #[test]
    fn round_keeps_or_changes_the_type_as_ksqldb_does() {
        assert_eq!(eval("arrow_typeof(round(CAST(1 AS INT)))"), "Int32");
        assert_eq!(eval("arrow_typeof(round(1.5e0))"), "Int64");
        assert_eq!(eval("round(-1.5e0)"), "-1");
        assert_eq!(eval("round(1.25e0, 1)"), "1.3");
        assert_eq!(eval("round(CAST(NULL AS DOUBLE), 1)"), "NULL");
        assert_eq!(
            eval("arrow_typeof(round(CAST(1.25 AS DECIMAL(33, 16))))"),
            "Decimal128(17, 0)"
        );
        assert_eq!(eval("round(CAST(-1.5 AS DECIMAL(4, 2)))"), "-1");
        assert_eq!(eval("round(CAST(1.25 AS DECIMAL(4, 2)), 1)"), "1.30");
        assert_eq!(eval("round(CAST(-1.26 AS DECIMAL(4, 2)), 1)"), "-1.30");
    }

    #[test]
    fn doubles_round_on_their_printed_digits_ties_up() {
        let cases = [
            (1.2, 0, 1.0),
            (1.5, 0, 2.0),
            (-1.5, 0, -1.0),
            (-1.7, 0, -2.0),
            (1.234567, 2, 1.23),
            (1.234567, 10, 1.234567),
            (12345.678, 1, 12345.7),
            (12345.678, -1, 12350.0),
            (-12345.678, -2, -12300.0),
            (111.0, -1, 110.0),
            (2.675, 2, 2.68),
            (1.2345e-7, 9, 1.23e-7),
            (0.000123456, 5, 0.00012),
            (1e300, 2, 1e300),
            (1.2345678901234567e20, -15, 1.23457e20),
            (0.1 + 0.2, 1, 0.3),
        ];
        for (value, places, expected) in cases {
            assert_eq!(
                double_to_places(value, places, Rounding::HalfUp),
                expected,
                "ROUND({value}, {places})"
            );
        }
        let zero = double_to_places(-1.1, -1, Rounding::HalfUp);
        assert!(zero == 0.0 && zero.is_sign_positive());
        assert_eq!(round_half_up(-1.5), -1);
        assert_eq!(round_half_up(1.5), 2);
        assert_eq!(round_half_up(-12345.678), -12346);
    }

    #[test]
    fn the_quick_rounding_agrees_with_the_printed_digits() {
        // Values of every kind: amounts with two or three decimals (ties included, 2.675
        // and the like), products that land a hair off a whole number (0.29 × 100),
        // random doubles of many magnitudes, both signs.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut values = vec![0.29, 2.675, 1.005, 0.1 + 0.2, 1e-7, 4_294_967_295.5];
        for i in 0..5_000 {
            values.push(f64::from(i) * 0.005);
            values.push(f64::from(i) * 1.005);
            let bits = random();
            let magnitude = 10f64.powi((bits % 24) as i32 - 12);
            values.push((bits >> 11) as f64 / (1u64 << 53) as f64 * magnitude);
            values.push((bits % 10_000_000) as f64 / 1000.0);
        }
        let (mut quick, mut all) = (0, 0);
        // (Zero is answered before either way is asked.)
        for value in values.iter().filter(|v| **v != 0.0).flat_map(|v| [*v, -v]) {
            for places in 0..=9 {
                for rounding in [
                    Rounding::HalfUp,
                    Rounding::Down,
                    Rounding::Floor,
                    Rounding::Ceiling,
                ] {
                    let in_reach = (value * POWERS_OF_TEN[places as usize]).abs() < SCALED_LIMIT;
                    all += usize::from(in_reach);
                    let printed = printed_double_to_places(value, places, rounding);
                    if let Some(fast) = scaled_double_to_places(value, places, rounding) {
                        quick += usize::from(in_reach);
                        assert_eq!(
                            fast.to_bits(),
                            printed.to_bits(),
                            "{value} to {places} places, {rounding:?}: {fast} against {printed}"
                        );
                    }
                }
            }
        }
        // Within its reach the quick way always answers.
        assert_eq!(quick, all);
    }

    #[test]
    fn digits_are_dropped_ties_towards_positive_infinity() {
        for (value, dropped, expected) in [
            (15i128, 1, 2i128),
            (-15, 1, -1),
            (-16, 1, -2),
            (14, 1, 1),
            (999_999_999_999_999_999, 18, 1),
            (9_223_372_036_854_775_815, 1, 922_337_203_685_477_582),
            (-9_223_372_036_854_775_825, 1, -922_337_203_685_477_582),
            (-9_223_372_036_854_775_826, 1, -922_337_203_685_477_583),
            (12_345, 19, 0),
        ] {
            assert_eq!(
                without_digits(value, dropped, Rounding::HalfUp),
                expected,
                "{value} less {dropped}"
            );
        }
    }

    #[test]
    fn digits_are_dropped_in_each_direction_in_both_widths() {
        for (value, rounding, expected) in [
            (-15i128, Rounding::Down, -1i128),
            (-15, Rounding::Floor, -2),
            (-15, Rounding::Ceiling, -1),
            (15, Rounding::Floor, 1),
            (15, Rounding::Ceiling, 2),
            (10, Rounding::Ceiling, 1),
            (-10, Rounding::Floor, -1),
        ] {
            assert_eq!(
                without_digits(value, 1, rounding),
                expected,
                "{value} {rounding:?}"
            );
            let wide = without_digits(i256::from_i128(value), 1, rounding);
            assert_eq!(
                wide,
                i256::from_i128(expected),
                "{value} {rounding:?} in 256 bits"
            );
        }
        // 76 digits of nines, less 40 of them, rounds up to 10^36.
        let nines = i256::from_i128(10).pow_wrapping(76).sub_wrapping(i256::ONE);
        let rounded = without_digits(nines, 40, Rounding::HalfUp);
        assert_eq!(rounded, i256::from_i128(10i128.pow(36)));
    }

    #[test]
    fn decimals_round_at_their_scale() {
        assert_eq!(eval("round(CAST(1.25 AS DECIMAL(4, 2)), 5)"), "1.25");
        assert_eq!(eval("round(CAST(1.25 AS DECIMAL(4, 2)), -1)"), "0.00");
        assert_eq!(eval("round(CAST(15.25 AS DECIMAL(4, 2)), -1)"), "20.00");
        assert_eq!(eval("round(CAST(1.25 AS DECIMAL(4, 2)), -40)"), "0.00");
    }

    #[test]
    fn decimals_wider_than_38_digits_round_truncate_and_floor_exactly() {
        let wide = "CAST('12345678901234567890.123456789012345678901234567895' AS DECIMAL(50, 30))";
        assert_eq!(
            eval(&format!("round({wide}, 29)")),
            "12345678901234567890.123456789012345678901234567900"
        );
        assert_eq!(
            eval(&format!("arrow_typeof(round({wide}, 29))")),
            "Decimal256(50, 30)"
        );
        // Without places the scale goes, and 20 digits fit in 128 bits.
        assert_eq!(eval(&format!("round({wide})")), "12345678901234567890");
        assert_eq!(
            eval(&format!("arrow_typeof(round({wide}))")),
            "Decimal128(20, 0)"
        );
        assert_eq!(
            eval(&format!("trunc(-{wide}, 1)")),
            "-12345678901234567890.100000000000000000000000000000"
        );
        assert_eq!(
            eval(&format!("ceil({wide})")),
            "12345678901234567891.000000000000000000000000000000"
        );
        assert_eq!(
            eval(&format!("floor(-{wide})")),
            "-12345678901234567891.000000000000000000000000000000"
        );
    }

    #[test]
    fn trunc_cuts_towards_zero_on_the_printed_digits() {
        // 0.29 × 100 is 28.999999999999996 in doubles; ksqlDB cuts the digits 0.29.
        assert_eq!(eval("trunc(0.29e0, CAST(2 AS INT))"), "0.29");
        assert_eq!(eval("trunc(-12345.678e0, CAST(-2 AS INT))"), "-12300.0");
        assert_eq!(eval("trunc(-1.1e0, CAST(-1 AS INT))"), "0.0");
        assert_eq!(eval("trunc(-0.5e0)"), "0.0");
        assert_eq!(eval("trunc(-1.7e0)"), "-1.0");
        assert_eq!(eval("trunc(CAST(-12345 AS BIGINT))"), "-12345");
        assert_eq!(
            eval("trunc(CAST(-1.27 AS DECIMAL(4, 2)), CAST(1 AS INT))"),
            "-1.20"
        );
        assert_eq!(
            eval("arrow_typeof(trunc(CAST(-1.27 AS DECIMAL(4, 2))))"),
            "Decimal128(4, 2)"
        );
        assert_eq!(eval("trunc(CAST(-1.27 AS DECIMAL(4, 2)))"), "-1.00");
        assert_eq!(eval("trunc(1.5e0, CAST(NULL AS INT))"), "NULL");
        assert!(eval_error("trunc('x')").contains("does not accept parameters (STRING)"));
    }

    #[test]
    fn ceil_and_floor_keep_the_type() {
        assert_eq!(eval("ceil(CAST(-1.25 AS DECIMAL(4, 2)))"), "-1.00");
        assert_eq!(eval("floor(CAST(-1.25 AS DECIMAL(4, 2)))"), "-2.00");
        assert_eq!(eval("ceil(CAST(1.20 AS DECIMAL(4, 2)))"), "2.00");
        assert_eq!(eval("floor(CAST(3 AS INT))"), "3");
        assert_eq!(eval("ceil(-1.5e0)"), "-1.0");
    }
}

/// `GREATEST(a, b, …)` and `LEAST(a, b, …)`: the greatest (least) argument that is not
/// NULL, NULL when all are. The arguments share one type as ksqlDB resolves it: numbers
/// of one kind, or DOUBLE when one is a DOUBLE (INT with BIGINT is ambiguous to ksqlDB);
/// DECIMALs widened to hold them all; texts, bytes, or times (text literals read as the
/// times they write).
///
/// A DECIMAL answer is the argument's own value, so it keeps that argument's scale (ksqlDB's
/// `BigDecimal`s do): `GREATEST(1234567.89, 0.123456)` is written `1234567.89` although its
/// type is `DECIMAL(13, 6)`. The column holds every value at the type's scale; for an
/// output column the plan asks [`extreme_value_scale`] for each row's own.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Extreme {
    greatest: bool,
    /// Answers each row's scale (the scale of the argument taken) instead of its value.
    value_scale: bool,
    signature: datafusion::logical_expr::Signature,
}

pub fn extremes() -> Vec<ScalarUDF> {
    [true, false]
        .into_iter()
        .map(|greatest| ScalarUDF::new_from_impl(Extreme::new(greatest, false)))
        .collect()
}

/// For `GREATEST` (or `LEAST`) over DECIMAL arguments: the scale of the argument each row
/// takes, as an INT8 (NULL where every argument is NULL). Not a function users call; the
/// plan computes it beside an output column (see `plan::ProjectedColumn::value_scale`).
pub fn extreme_value_scale(greatest: bool) -> ScalarUDF {
    ScalarUDF::new_from_impl(Extreme::new(greatest, true))
}

impl Extreme {
    fn new(greatest: bool, value_scale: bool) -> Self {
        use datafusion::logical_expr::{Signature, TypeSignature, Volatility};
        Extreme {
            greatest,
            value_scale,
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Immutable,
            ),
        }
    }

    fn name(&self) -> &'static str {
        match (self.greatest, self.value_scale) {
            (true, false) => "greatest",
            (false, false) => "least",
            (true, true) => "greatest_value_scale",
            (false, true) => "least_value_scale",
        }
    }

    /// The type every argument is read as, or ksqlDB's refusal.
    fn common_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        let refused = || Err(super::udf::refused_parameters(self.name(), args));
        let typed: Vec<&DataType> = args.iter().filter(|t| !t.is_null()).collect();
        let ambiguous = || {
            let names: Vec<String> = args
                .iter()
                .map(|t| match crate::types::SqlType::from_arrow(t) {
                    Some(ty) => ty.to_string(),
                    None => "null".to_string(),
                })
                .collect();
            Err(DataFusionError::Plan(format!(
                "Function '{}' cannot be resolved due to ambiguous method parameters ({}).",
                self.name(),
                names.join(", ")
            )))
        };
        if args.is_empty() {
            return refused();
        }
        let Some(first) = typed.first() else {
            return ambiguous();
        };
        let all = |f: fn(&DataType) -> bool| typed.iter().all(|t| f(t));
        if all(|t| t.is_numeric()) {
            if typed.contains(&&DataType::Float64) || typed.contains(&&DataType::Float32) {
                return Ok(DataType::Float64);
            }
            if all(|t| matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))) {
                let (mut digits, mut scale) = (0u8, 0u8);
                for t in &typed {
                    if let Some(SqlType::Decimal {
                        precision,
                        scale: s,
                    }) = SqlType::from_arrow(t)
                    {
                        digits = digits.max(precision - s);
                        scale = scale.max(s);
                    }
                }
                let precision = (digits + scale).min(crate::types::MAX_DECIMAL_PRECISION);
                return Ok(SqlType::Decimal { precision, scale }.to_arrow());
            }
            if typed.iter().all(|t| t == first) {
                return Ok((*first).clone());
            }
            return ambiguous();
        }
        let temporal = |t: &DataType| {
            matches!(
                t,
                DataType::Date32 | DataType::Time32(_) | DataType::Timestamp(..)
            )
        };
        if let Some(time) = typed.iter().find(|t| temporal(t)) {
            let fits = typed.iter().all(|t| t == time || super::udf::is_string(t));
            return if fits { Ok((*time).clone()) } else { refused() };
        }
        if all(super::udf::is_string) {
            return Ok(DataType::Utf8);
        }
        if all(super::udf::is_binary) {
            return Ok(DataType::Binary);
        }
        refused()
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Extreme {
    fn name(&self) -> &str {
        Extreme::name(self)
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::error::Result<DataType> {
        let common = self.common_type(args)?;
        Ok(if self.value_scale {
            DataType::Int8
        } else {
            common
        })
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use arrow::compute::kernels::{cmp, zip::zip};
        let rows = args.number_rows;
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let common = self.common_type(&types)?;
        let mut best: Option<ArrayRef> = None;
        // With `value_scale`: the scale of the argument each row has taken so far.
        let mut scales: Vec<Option<i8>> = vec![None; if self.value_scale { rows } else { 0 }];
        for (arg, ty) in args.args.iter().zip(&types) {
            let values = arrow::compute::cast(&arg.to_array(rows)?, &common)?;
            let take = match &best {
                None if !self.value_scale => {
                    best = Some(values);
                    continue;
                }
                None => arrow::compute::is_not_null(&values)?,
                Some(best) => {
                    let better = if self.greatest {
                        cmp::gt(&values, best)?
                    } else {
                        cmp::lt(&values, best)?
                    };
                    // The new value where it is better, or where there is none yet; the
                    // first of equal values stays (as ksqlDB's).
                    (0..rows)
                        .map(|row| {
                            Some(values.is_valid(row) && (best.is_null(row) || better.value(row)))
                        })
                        .collect()
                }
            };
            if self.value_scale {
                let scale = match ty {
                    DataType::Decimal128(_, s) | DataType::Decimal256(_, s) => Some(*s),
                    _ => None,
                };
                for (row, scale_so_far) in scales.iter_mut().enumerate() {
                    if take.value(row) {
                        *scale_so_far = scale;
                    }
                }
            }
            best = Some(match best {
                None => values,
                Some(best) => zip(&take, &values, &best)?,
            });
        }
        let out: ArrayRef = if self.value_scale {
            Arc::new(arrow::array::Int8Array::from(scales))
        } else {
            best.unwrap_or_else(|| arrow::array::new_null_array(&common, rows))
        };
        Ok(datafusion::logical_expr::ColumnarValue::Array(out))
    }
}
