//! ksqlDB's aggregate functions that DataFusion has no exact match for, as UDAFs:
//! `EARLIEST_BY_OFFSET` / `LATEST_BY_OFFSET` (`(col [, n] [, ignoreNulls])`),
//! `COLLECT_SET` (distinct values in arrival order) and `ATTR` (the value when every row
//! has the same one, else NULL). `COLLECT_LIST` is DataFusion's `array_agg` (it keeps
//! NULLs, as ksqlDB does).
//!
//! Each keeps the values it needs in arrival order (the order of offsets within a group).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

/// The functions of this module, to register.
pub fn functions() -> Vec<AggregateUDF> {
    [Kind::Earliest, Kind::Latest, Kind::CollectSet, Kind::Attr]
        .into_iter()
        .map(|kind| AggregateUDF::new_from_impl(KeptValues::new(kind)))
        .chain([AggregateUDF::new_from_impl(Sum::new())])
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Earliest,
    Latest,
    CollectSet,
    Attr,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeptValues {
    kind: Kind,
    signature: Signature,
}

impl KeptValues {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    /// `EARLIEST_BY_OFFSET(col, n, …)` answers a list of `n` values.
    fn answers_list(&self, arg_types: &[DataType]) -> bool {
        match self.kind {
            Kind::Earliest | Kind::Latest => arg_types.get(1).is_some_and(DataType::is_integer),
            Kind::CollectSet => true,
            Kind::Attr => false,
        }
    }
}

impl AggregateUDFImpl for KeptValues {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Earliest => "earliest_by_offset",
            Kind::Latest => "latest_by_offset",
            Kind::CollectSet => "collect_set",
            Kind::Attr => "attr",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let Some(value) = arg_types.first() else {
            return Err(DataFusionError::Plan(format!(
                "Function '{}' does not accept parameters ()",
                self.name().to_uppercase()
            )));
        };
        Ok(if self.answers_list(arg_types) {
            DataType::new_list(value.clone(), true)
        } else {
            value.clone()
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let value_type = args
            .expr_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        let literal = |index: usize| {
            args.exprs
                .get(index)
                .and_then(|e| e.downcast_ref::<Literal>())
                .map(|l| l.value().clone())
        };
        let (mut limit, mut ignore_nulls) = (None, true);
        for index in 1..args.exprs.len() {
            match literal(index) {
                Some(ScalarValue::Boolean(Some(flag))) => ignore_nulls = flag,
                Some(value) if value.data_type().is_integer() => {
                    limit = Some(
                        value
                            .cast_to(&DataType::Int64)?
                            .to_string()
                            .parse()
                            .map_err(|_| {
                                DataFusionError::Plan("the count must be a number".into())
                            })?,
                    );
                }
                _ => {
                    return Err(DataFusionError::Plan(format!(
                        "The arguments of {} after the column must be constants",
                        self.name().to_uppercase()
                    )));
                }
            }
        }
        if limit.is_some_and(|n: i64| n < 1) {
            return Err(DataFusionError::Plan(
                "The count of values to keep must be at least 1".into(),
            ));
        }
        Ok(Box::new(KeptAccumulator {
            kind: self.kind,
            value_type,
            list: limit.is_some() || self.kind == Kind::CollectSet,
            limit: limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            ignore_nulls: ignore_nulls || self.kind == Kind::CollectSet,
            values: Vec::new(),
            mixed: false,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value_type = args
            .input_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(vec![
            Arc::new(Field::new(
                "values",
                DataType::new_list(value_type, true),
                true,
            )),
            Arc::new(Field::new("mixed", DataType::Boolean, true)),
        ])
    }
}

#[derive(Debug)]
struct KeptAccumulator {
    kind: Kind,
    value_type: DataType,
    /// Answers a list (a count was given, or COLLECT_SET) rather than one value.
    list: bool,
    limit: usize,
    ignore_nulls: bool,
    values: Vec<ScalarValue>,
    /// ATTR: rows have had different values.
    mixed: bool,
}

impl KeptAccumulator {
    fn keep(&mut self, value: ScalarValue) {
        if value.is_null() && self.ignore_nulls && self.kind != Kind::Attr {
            return;
        }
        match self.kind {
            Kind::Earliest => {
                if self.values.len() < self.limit.min(if self.list { usize::MAX } else { 1 }) {
                    self.values.push(value);
                }
            }
            Kind::Latest => {
                self.values.push(value);
                let keep = if self.list { self.limit } else { 1 };
                if self.values.len() > keep {
                    let extra = self.values.len() - keep;
                    self.values.drain(..extra);
                }
            }
            Kind::CollectSet => {
                if !self.values.contains(&value) {
                    self.values.push(value);
                }
            }
            Kind::Attr => match self.values.first() {
                None => self.values.push(value),
                Some(first) if *first != value => self.mixed = true,
                Some(_) => {}
            },
        }
    }
}

impl Accumulator for KeptAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(column) = values.first() else {
            return Ok(());
        };
        for row in 0..column.len() {
            self.keep(ScalarValue::try_from_array(column, row)?);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.kind == Kind::Attr {
            return match (self.mixed, self.values.first()) {
                (false, Some(value)) => Ok(value.clone()),
                _ => ScalarValue::try_from(&self.value_type),
            };
        }
        if self.list {
            return Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &self.values,
                &self.value_type,
            )));
        }
        match self.values.first() {
            Some(value) => Ok(value.clone()),
            None => ScalarValue::try_from(&self.value_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(
                &self.values,
                &self.value_type,
            )),
            ScalarValue::Boolean(Some(self.mixed)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(lists), Some(mixed)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
        for row in 0..lists.len() {
            if let ScalarValue::Boolean(Some(true)) = ScalarValue::try_from_array(mixed, row)? {
                self.mixed = true;
            }
            if let ScalarValue::List(list) = ScalarValue::try_from_array(lists, row)? {
                for values in ScalarValue::convert_array_to_scalar_vec(list.as_ref())? {
                    for value in values.into_iter().flatten() {
                        self.keep(value);
                    }
                }
            }
        }
        Ok(())
    }
}

/// ksqlDB's `SUM`: the total in the argument's own type (an INT sum stays INT and wraps on
/// overflow, as Java's does), 0 before any value, NULLs skipped. It can take values back
/// out, so it runs over tables.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Sum {
    signature: Signature,
}

impl Sum {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Sum {
    fn name(&self) -> &str {
        "sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::Int8 | DataType::Int16 | DataType::Int32) => Ok(DataType::Int32),
            Some(DataType::Int64) => Ok(DataType::Int64),
            Some(DataType::Float32 | DataType::Float64) => Ok(DataType::Float64),
            Some(decimal @ DataType::Decimal128(_, _)) => Ok(decimal.clone()),
            other => Err(DataFusionError::Plan(format!(
                "Function 'SUM' does not accept parameters ({})",
                other.map_or_else(String::new, |t| crate::types::SqlType::from_arrow(t)
                    .map_or_else(|| t.to_string(), |t| t.to_string()))
            ))),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SumAccumulator {
            total: match args.return_field.data_type() {
                DataType::Int32 => Total::Int(0),
                DataType::Int64 => Total::BigInt(0),
                DataType::Decimal128(precision, scale) => Total::Decimal(0, *precision, *scale),
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
}

#[derive(Debug)]
struct SumAccumulator {
    total: Total,
}

impl SumAccumulator {
    /// Adds (`sign` 1) or takes out (`sign` -1) a column of values.
    fn add(&mut self, values: &[ArrayRef], sign: i8) -> Result<()> {
        use arrow::compute::{cast, sum};
        use arrow::datatypes::{Decimal128Type, Float64Type, Int32Type, Int64Type};
        let Some(column) = values.first() else {
            return Ok(());
        };
        let target = match self.total {
            Total::Int(_) => DataType::Int32,
            Total::BigInt(_) => DataType::Int64,
            Total::Double(_) => DataType::Float64,
            Total::Decimal(_, precision, scale) => DataType::Decimal128(precision, scale),
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
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add(states, 1)
    }
}
