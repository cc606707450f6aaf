//! `CAST(x AS DECIMAL(p, s))` as ksqlDB casts, planned as `decimal_cast(x, p, s)`: a DOUBLE
//! goes through its shortest decimal text (Java's `BigDecimal.valueOf`) and a STRING
//! through its digits, both rounded HALF_UP to the scale, where Arrow's cast would multiply
//! the DOUBLE by 10^s (`1.005` would become `1.00`, not `1.01`, and digits past the
//! seventeenth would be noise). Other types cast as Arrow casts them. A value that does
//! not fit, or text that is not a number, is NULL for its row and logged.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::udf::row_failure;
use crate::format::appender::DecimalBuilder;
use crate::types::SqlType;

/// The name the planner writes `CAST(x AS DECIMAL(p, s))` as.
pub const NAME: &str = "decimal_cast";

pub fn functions() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(DecimalCast {
        signature: Signature::any(3, Volatility::Immutable),
    })]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DecimalCast {
    signature: Signature,
}

impl ScalarUDFImpl for DecimalCast {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal(
            "decimal_cast answers its type from its precision and scale".into(),
        ))
    }

    /// `DECIMAL(p, s)` from the two constant arguments.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let constant = |at: usize| -> Option<i64> {
            match args.scalar_arguments.get(at).copied().flatten()? {
                ScalarValue::Int64(v) => *v,
                ScalarValue::Int32(v) => v.map(i64::from),
                _ => None,
            }
        };
        let (Some(precision), Some(scale)) = (constant(1), constant(2)) else {
            return Err(DataFusionError::Plan(
                "DECIMAL needs a constant precision and scale".into(),
            ));
        };
        let ty = SqlType::decimal(u64::try_from(precision).unwrap_or(0), scale)
            .map_err(|error| DataFusionError::Plan(error.0))?;
        Ok(Arc::new(Field::new(NAME, ty.to_arrow(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let target = args.return_type().clone();
        let Some(SqlType::Decimal { precision, scale }) = SqlType::from_arrow(&target) else {
            return Err(DataFusionError::Internal(format!(
                "decimal_cast planned to {target}"
            )));
        };
        let value = args.args[0].to_array(args.number_rows)?;
        let out = match value.data_type() {
            DataType::Float32 | DataType::Float64 => {
                let doubles = arrow::compute::cast(&value, &DataType::Float64)?;
                let doubles = doubles.as_primitive::<Float64Type>();
                let mut digits = ryu::Buffer::new();
                parse_each(value.len(), precision, scale, |row, text| {
                    let double = doubles.value(row);
                    if double.is_finite() {
                        text.push_str(digits.format_finite(double));
                    } else {
                        // Not a number: the parse fails and says which.
                        let _ = write!(text, "{double}");
                    }
                    doubles.is_valid(row)
                })
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let texts = arrow::compute::cast(&value, &DataType::Utf8)?;
                let texts = texts.as_string::<i32>();
                parse_each(value.len(), precision, scale, |row, text| {
                    text.push_str(texts.value(row));
                    texts.is_valid(row)
                })
            }
            _ => arrow::compute::cast_with_options(
                &value,
                &target,
                &CastOptions {
                    safe: false,
                    ..CastOptions::default()
                },
            )?,
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Each row's decimal text, written by `write_text` into a buffer reused for every row
/// (it answers false for a NULL), parsed at the scale; a row whose text is not a number or
/// does not fit is NULL, and its failure is logged.
fn parse_each(
    rows: usize,
    precision: u8,
    scale: u8,
    mut write_text: impl FnMut(usize, &mut String) -> bool,
) -> ArrayRef {
    let mut builder = DecimalBuilder::new(precision, rows);
    let mut text = String::new();
    for row in 0..rows {
        text.clear();
        if !write_text(row, &mut text) {
            builder.append_null();
        } else if let Err(why) = builder.append_text(&text, precision, scale) {
            row_failure::<()>(row, why);
        }
    }
    builder.finish(precision, scale)
}

#[cfg(test)]
mod tests {
    use crate::functions::test_support::{eval, eval_error};

    #[test]
    fn doubles_cast_through_their_shortest_digits_rounding_half_up() {
        assert_eq!(eval("decimal_cast(CAST(1.005 AS DOUBLE), 3, 2)"), "1.01");
        assert_eq!(eval("decimal_cast(CAST(-1.005 AS DOUBLE), 3, 2)"), "-1.01");
        assert_eq!(
            eval("decimal_cast(CAST(1.5 AS DOUBLE), 38, 30)"),
            "1.500000000000000000000000000000"
        );
        assert_eq!(
            eval("decimal_cast(CAST(1e-7 AS DOUBLE), 10, 8)"),
            "0.00000010"
        );
        assert_eq!(eval("decimal_cast(CAST(NULL AS DOUBLE), 3, 2)"), "NULL");
        assert_eq!(
            eval("decimal_cast(CAST(1000 AS DOUBLE), 3, 2)"),
            "NULL",
            "too large"
        );
    }

    #[test]
    fn text_and_other_types_cast_to_the_scale() {
        assert_eq!(eval("decimal_cast('1.005', 3, 2)"), "1.01");
        assert_eq!(eval("decimal_cast('2E2', 5, 1)"), "200.0");
        assert_eq!(eval("decimal_cast('abc', 5, 1)"), "NULL");
        assert_eq!(eval("decimal_cast(CAST(12 AS INT), 5, 1)"), "12.0");
        assert_eq!(
            eval("decimal_cast(CAST('1.25' AS DECIMAL(3, 2)), 50, 30)"),
            "1.250000000000000000000000000000"
        );
        assert!(eval_error("decimal_cast(1.5, 77, 2)").contains("between 1 and 76: 77"));
    }
}
