//! ksqlDB's numeric aggregate functions, as UDAFs: `SUM` and `SUM_LIST` (totals in the
//! argument's own type), `STDDEV_SAMP` (which, in ksqlDB, answers the sample *variance*),
//! `STDDEV_SAMPLE` (the sample standard deviation) and `CORRELATION`. All of them can take
//! values back out, so they run over tables.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, i256};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::udf::refused_parameters;

/// The functions of this module, to register.
pub fn functions() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::new_from_impl(Sum::new(false)),
        AggregateUDF::new_from_impl(Sum::new(true)),
        AggregateUDF::new_from_impl(Spread::new(SpreadKind::Variance)),
        AggregateUDF::new_from_impl(Spread::new(SpreadKind::Deviation)),
        AggregateUDF::new_from_impl(Spread::new(SpreadKind::Correlation)),
    ]
}

/// ksqlDB's `SUM` (and `SUM_LIST`, over the elements of an array): the total in the
/// argument's own type (an INT sum stays INT and wraps on overflow, as Java's does), 0
/// before any value, NULLs skipped.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Sum {
    /// `SUM_LIST`: each argument is an array whose elements are added.
    list: bool,
    signature: Signature,
}

impl Sum {
    pub fn new(list: bool) -> Self {
        Self {
            list,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Sum {
    fn name(&self) -> &str {
        if self.list { "sum_list" } else { "sum" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let value = match (self.list, arg_types.first()) {
            (false, value) => value,
            (true, Some(DataType::List(item) | DataType::LargeList(item))) => {
                Some(item.data_type())
            }
            (true, _) => None,
        };
        match value {
            Some(DataType::Int8 | DataType::Int16 | DataType::Int32) => Ok(DataType::Int32),
            Some(DataType::Int64) => Ok(DataType::Int64),
            Some(DataType::Float32 | DataType::Float64) => Ok(DataType::Float64),
            Some(decimal @ (DataType::Decimal128(_, _) | DataType::Decimal256(_, _))) => {
                Ok(decimal.clone())
            }
            _ => Err(refused_parameters(&self.name().to_uppercase(), arg_types)),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SumAccumulator {
            list: self.list,
            total: match args.return_field.data_type() {
                DataType::Int32 => Total::Int(0),
                DataType::Int64 => Total::BigInt(0),
                DataType::Decimal128(precision, scale) => Total::Decimal(0, *precision, *scale),
                DataType::Decimal256(precision, scale) => {
                    Total::WideDecimal(i256::ZERO, *precision, *scale)
                }
                _ => Total::Double(0.0),
            },
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            "total",
            args.return_field.data_type().clone(),
            true,
        ))])
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

#[derive(Debug, Clone, Copy)]
enum Total {
    Int(i32),
    BigInt(i64),
    Double(f64),
    Decimal(i128, u8, i8),
    /// A DECIMAL of more than 38 digits.
    WideDecimal(i256, u8, i8),
}

#[derive(Debug)]
struct SumAccumulator {
    list: bool,
    total: Total,
}

impl SumAccumulator {
    /// Adds (`sign` 1) or takes out (`sign` -1) a column of values.
    fn add(&mut self, values: &[ArrayRef], sign: i8) -> Result<()> {
        let Some(column) = values.first() else {
            return Ok(());
        };
        if self.list {
            let Some(lists) = column.as_list_opt::<i32>() else {
                return Ok(());
            };
            for elements in lists.iter().flatten() {
                self.add_column(&elements, sign)?;
            }
            return Ok(());
        }
        self.add_column(column, sign)
    }

    fn add_column(&mut self, column: &ArrayRef, sign: i8) -> Result<()> {
        use arrow::compute::{cast, sum};
        use arrow::datatypes::{Decimal128Type, Decimal256Type, Float64Type, Int32Type, Int64Type};
        let target = match self.total {
            Total::Int(_) => DataType::Int32,
            Total::BigInt(_) => DataType::Int64,
            Total::Double(_) => DataType::Float64,
            Total::Decimal(_, precision, scale) => DataType::Decimal128(precision, scale),
            Total::WideDecimal(_, precision, scale) => DataType::Decimal256(precision, scale),
        };
        let column = if column.data_type() == &target {
            column.clone()
        } else {
            cast(column, &target)?
        };
        match &mut self.total {
            Total::Int(total) => {
                let part = sum(column.as_primitive::<Int32Type>()).unwrap_or(0);
                *total = total.wrapping_add(part.wrapping_mul(i32::from(sign)));
            }
            Total::BigInt(total) => {
                let part = sum(column.as_primitive::<Int64Type>()).unwrap_or(0);
                *total = total.wrapping_add(part.wrapping_mul(i64::from(sign)));
            }
            Total::Double(total) => {
                *total +=
                    sum(column.as_primitive::<Float64Type>()).unwrap_or(0.0) * f64::from(sign);
            }
            Total::Decimal(total, _, _) => {
                let part = sum(column.as_primitive::<Decimal128Type>()).unwrap_or(0);
                *total = total.wrapping_add(part.wrapping_mul(i128::from(sign)));
            }
            Total::WideDecimal(total, _, _) => {
                let part = sum(column.as_primitive::<Decimal256Type>()).unwrap_or(i256::ZERO);
                *total = total.wrapping_add(part.wrapping_mul(i256::from_i128(i128::from(sign))));
            }
        }
        Ok(())
    }
}

impl Accumulator for SumAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.total {
            Total::Int(total) => ScalarValue::Int32(Some(total)),
            Total::BigInt(total) => ScalarValue::Int64(Some(total)),
            Total::Double(total) => ScalarValue::Float64(Some(total)),
            Total::Decimal(total, precision, scale) => {
                ScalarValue::Decimal128(Some(total), precision, scale)
            }
            Total::WideDecimal(total, precision, scale) => {
                ScalarValue::Decimal256(Some(total), precision, scale)
            }
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        match states.first() {
            Some(totals) => self.add_column(totals, 1),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SpreadKind {
    /// `STDDEV_SAMP`: ksqlDB answers the sample variance.
    Variance,
    /// `STDDEV_SAMPLE`: the sample standard deviation.
    Deviation,
    /// `CORRELATION(x, y)`: Pearson's coefficient.
    Correlation,
}

/// The spread of numbers (and, for `CORRELATION`, how two move together), from running
/// sums, so values can be taken back out. Fewer than two values spread 0.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Spread {
    kind: SpreadKind,
    signature: Signature,
}

impl Spread {
    fn new(kind: SpreadKind) -> Self {
        let arguments = if kind == SpreadKind::Correlation {
            2
        } else {
            1
        };
        Self {
            kind,
            signature: Signature::any(arguments, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Spread {
    fn name(&self) -> &str {
        match self.kind {
            SpreadKind::Variance => "stddev_samp",
            SpreadKind::Deviation => "stddev_sample",
            SpreadKind::Correlation => "correlation",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.iter().all(|t| t.is_numeric()) {
            Ok(DataType::Float64)
        } else {
            Err(refused_parameters(&self.name().to_uppercase(), arg_types))
        }
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SpreadAccumulator {
            kind: self.kind,
            sums: Sums::default(),
        }))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(["count", "x", "y", "xx", "yy", "xy"]
            .iter()
            .map(|name| Arc::new(Field::new(*name, DataType::Float64, true)))
            .collect())
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

/// Running sums of the values (`x`, and `y` for a second argument), their squares and
/// their products.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    count: f64,
    x: f64,
    y: f64,
    xx: f64,
    yy: f64,
    xy: f64,
}

#[derive(Debug)]
struct SpreadAccumulator {
    kind: SpreadKind,
    sums: Sums,
}

impl SpreadAccumulator {
    fn add(&mut self, values: &[ArrayRef], sign: f64) -> Result<()> {
        let as_f64 = |array: &ArrayRef| arrow::compute::cast(array, &DataType::Float64);
        let Some(xs) = values.first().map(as_f64).transpose()? else {
            return Ok(());
        };
        let ys = values.get(1).map(as_f64).transpose()?;
        let xs = xs.as_primitive::<arrow::datatypes::Float64Type>();
        let ys = ys
            .as_ref()
            .map(|y| y.as_primitive::<arrow::datatypes::Float64Type>());
        for row in 0..xs.len() {
            if xs.is_null(row) || ys.is_some_and(|y| y.is_null(row)) {
                continue;
            }
            let x = xs.value(row);
            let y = ys.map_or(0.0, |y| y.value(row));
            let sums = &mut self.sums;
            sums.count += sign;
            sums.x += sign * x;
            sums.y += sign * y;
            sums.xx += sign * x * x;
            sums.yy += sign * y * y;
            sums.xy += sign * x * y;
        }
        Ok(())
    }
}

impl Accumulator for SpreadAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, 1.0)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, -1.0)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let Sums {
            count,
            x,
            y,
            xx,
            yy,
            xy,
        } = self.sums;
        if count < 2.0 {
            return Ok(ScalarValue::Float64(Some(0.0)));
        }
        let variance = |sum: f64, squares: f64| (squares - sum * sum / count) / (count - 1.0);
        let answer = match self.kind {
            SpreadKind::Variance => variance(x, xx),
            SpreadKind::Deviation => variance(x, xx).sqrt(),
            SpreadKind::Correlation => {
                let covariance = (xy - x * y / count) / (count - 1.0);
                covariance / (variance(x, xx).sqrt() * variance(y, yy).sqrt())
            }
        };
        Ok(ScalarValue::Float64(Some(answer)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let s = self.sums;
        Ok([s.count, s.x, s.y, s.xx, s.yy, s.xy]
            .into_iter()
            .map(|v| ScalarValue::Float64(Some(v)))
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let columns: Vec<&arrow::array::Float64Array> = states
            .iter()
            .filter_map(|s| s.as_primitive_opt::<arrow::datatypes::Float64Type>())
            .collect();
        let [count, x, y, xx, yy, xy] = columns.as_slice() else {
            return Ok(());
        };
        for row in 0..count.len() {
            let sums = &mut self.sums;
            sums.count += count.value(row);
            sums.x += x.value(row);
            sums.y += y.value(row);
            sums.xx += xx.value(row);
            sums.yy += yy.value(row);
            sums.xy += xy.value(row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array};

    fn ints(values: &[Option<i32>]) -> Vec<ArrayRef> {
        vec![Arc::new(Int32Array::from(values.to_vec()))]
    }

    #[test]
    fn sum_keeps_the_argument_type_starts_at_zero_and_takes_values_back() {
        let mut sum = SumAccumulator {
            list: false,
            total: Total::Int(0),
        };
        assert_eq!(sum.evaluate().ok(), Some(ScalarValue::Int32(Some(0))));
        sum.update_batch(&ints(&[Some(2), None, Some(3)]))
            .expect("adds");
        assert_eq!(sum.evaluate().ok(), Some(ScalarValue::Int32(Some(5))));
        sum.retract_batch(&ints(&[Some(2)])).expect("takes back");
        assert_eq!(sum.evaluate().ok(), Some(ScalarValue::Int32(Some(3))));
        sum.update_batch(&ints(&[Some(i32::MAX)])).expect("adds");
        assert_eq!(
            sum.evaluate().ok(),
            Some(ScalarValue::Int32(Some(i32::MIN + 2))),
            "an INT sum wraps as Java's does"
        );
    }

    #[test]
    fn a_sum_of_decimals_wider_than_38_digits_keeps_every_digit() {
        let ty = DataType::Decimal256(50, 30);
        let value = crate::types::decimal::parse_wide_decimal(
            "12345678901234567890.123456789012345678901234567890",
            50,
            30,
        )
        .expect("fits");
        let column: ArrayRef = Arc::new(
            arrow::array::Decimal256Array::from(vec![Some(value), None, Some(value)])
                .with_data_type(ty),
        );
        let mut sum = SumAccumulator {
            list: false,
            total: Total::WideDecimal(i256::ZERO, 50, 30),
        };
        sum.update_batch(std::slice::from_ref(&column))
            .expect("adds");
        sum.retract_batch(&[column.slice(0, 1)])
            .expect("takes back");
        let Ok(ScalarValue::Decimal256(Some(total), 50, 30)) = sum.evaluate() else {
            panic!("a DECIMAL(50, 30) sum");
        };
        assert_eq!(total, value);
    }

    #[test]
    fn stddev_samp_is_ksqldbs_variance_and_stddev_sample_its_root() {
        let values: Vec<ArrayRef> = vec![Arc::new(Float64Array::from(vec![0.0, 10.0, 7.0]))];
        let mut variance = SpreadAccumulator {
            kind: SpreadKind::Variance,
            sums: Sums::default(),
        };
        let mut deviation = SpreadAccumulator {
            kind: SpreadKind::Deviation,
            sums: Sums::default(),
        };
        let first: Vec<ArrayRef> = vec![values[0].slice(0, 1)];
        variance.update_batch(&first).expect("adds");
        assert_eq!(
            variance.evaluate().ok(),
            Some(ScalarValue::Float64(Some(0.0))),
            "one value spreads 0"
        );
        variance
            .update_batch(&[values[0].slice(1, 2)])
            .expect("adds");
        deviation.update_batch(&values).expect("adds");
        let answer = |a: &mut SpreadAccumulator| match a.evaluate() {
            Ok(ScalarValue::Float64(Some(v))) => v,
            other => panic!("a number, got {other:?}"),
        };
        // ksqlDB's figures for 0, 10, 7.
        assert!((answer(&mut variance) - 26.333_333_333_333_332).abs() < 1e-9);
        assert!((answer(&mut deviation) - 5.131_601_439_446_884).abs() < 1e-9);
        variance
            .retract_batch(&[values[0].slice(2, 1)])
            .expect("takes back");
        assert!((answer(&mut variance) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn correlation_of_values_that_move_together_is_one() {
        let mut correlation = SpreadAccumulator {
            kind: SpreadKind::Correlation,
            sums: Sums::default(),
        };
        let xs: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]));
        let ys: ArrayRef = Arc::new(Float64Array::from(vec![2.0, 4.0, 6.0]));
        correlation.update_batch(&[xs, ys]).expect("adds");
        match correlation.evaluate() {
            Ok(ScalarValue::Float64(Some(v))) => assert!((v - 1.0).abs() < 1e-9),
            other => panic!("a number, got {other:?}"),
        }
    }
}
