//! ksqlDB's aggregate functions that keep values, as UDAFs: `EARLIEST_BY_OFFSET` /
//! `LATEST_BY_OFFSET` (`(col [, n] [, ignoreNulls])`), `COLLECT_LIST` (arrival order, NULLs
//! kept), `COLLECT_SET` (distinct values in arrival order), `ATTR` (the value when every
//! row has the same one, else NULL), `TOPK` / `TOPKDISTINCT` (`(col, k)`, largest first),
//! `COUNT_DISTINCT` and `HISTOGRAM` (a count per string value).
//!
//! Each keeps its values in arrival order (the order of offsets within a group). The ones
//! ksqlDB lets run over tables (COLLECT_LIST, COLLECT_SET, ATTR, HISTOGRAM) can take a
//! value back out when a table row changes or is deleted.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

/// How many values COLLECT_LIST, COLLECT_SET and HISTOGRAM keep at most, unless a second
/// argument says otherwise (the engine passes `ksql.functions.collect_list.limit`, …).
const COLLECTION_LIMIT: usize = 1000;

/// The functions of this module, to register.
pub fn functions() -> Vec<AggregateUDF> {
    [
        Kind::Earliest,
        Kind::Latest,
        Kind::CollectList,
        Kind::CollectSet,
        Kind::Attr,
        Kind::TopK,
        Kind::TopKDistinct,
        Kind::CountDistinct,
        Kind::Histogram,
    ]
    .into_iter()
    .map(|kind| AggregateUDF::new_from_impl(KeptValues::new(kind)))
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Earliest,
    Latest,
    CollectList,
    CollectSet,
    Attr,
    TopK,
    TopKDistinct,
    CountDistinct,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Earliest => "earliest_by_offset",
            Kind::Latest => "latest_by_offset",
            Kind::CollectList => "collect_list",
            Kind::CollectSet => "collect_set",
            Kind::Attr => "attr",
            Kind::TopK => "topk",
            Kind::TopKDistinct => "topkdistinct",
            Kind::CountDistinct => "count_distinct",
            Kind::Histogram => "histogram",
        }
    }

    /// Whether each distinct value is kept once (with how often it was seen).
    fn counts_values(self) -> bool {
        matches!(
            self,
            Kind::CollectSet
                | Kind::Attr
                | Kind::TopKDistinct
                | Kind::CountDistinct
                | Kind::Histogram
        )
    }

    /// Whether the function can take values back out (ksqlDB runs it over tables).
    fn retracts(self) -> bool {
        matches!(
            self,
            Kind::CollectList | Kind::CollectSet | Kind::Attr | Kind::Histogram
        )
    }
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
            Kind::Attr | Kind::CountDistinct | Kind::Histogram => false,
            Kind::CollectList | Kind::CollectSet | Kind::TopK | Kind::TopKDistinct => true,
        }
    }
}

impl AggregateUDFImpl for KeptValues {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let Some(value) = arg_types.first() else {
            return Err(super::udf::refused_parameters(
                &self.name().to_uppercase(),
                arg_types,
            ));
        };
        Ok(match self.kind {
            Kind::CountDistinct => DataType::Int64,
            Kind::Histogram => histogram_type(),
            _ if self.answers_list(arg_types) => DataType::new_list(value.clone(), true),
            _ => value.clone(),
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
                    let expression = args.exprs.get(index).map_or_else(String::new, |e| {
                        match e.downcast_ref::<datafusion::physical_expr::expressions::Column>() {
                            Some(column) => column.name().to_string(),
                            None => e.to_string(),
                        }
                    });
                    return Err(DataFusionError::Plan(format!(
                        "Parameter {} passed to function {} must be a literal constant, but was \
                         expression: '{expression}'",
                        index + 1,
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
        if matches!(self.kind, Kind::TopK | Kind::TopKDistinct) && limit.is_none() {
            return Err(DataFusionError::Plan(format!(
                "{} needs the count of values to keep: {}(col, k)",
                self.name().to_uppercase(),
                self.name().to_uppercase()
            )));
        }
        let list = match self.kind {
            Kind::Earliest | Kind::Latest => limit.is_some(),
            Kind::CollectList | Kind::CollectSet | Kind::TopK | Kind::TopKDistinct => true,
            Kind::Attr | Kind::CountDistinct | Kind::Histogram => false,
        };
        let limit = match (self.kind, limit) {
            (_, Some(n)) => usize::try_from(n).unwrap_or(usize::MAX),
            (Kind::CollectList | Kind::CollectSet | Kind::Histogram, None) => COLLECTION_LIMIT,
            (_, None) => usize::MAX,
        };
        Ok(Box::new(KeptAccumulator {
            kind: self.kind,
            value_type,
            list,
            limit,
            ignore_nulls: ignore_nulls && self.kind != Kind::CollectList,
            values: Vec::new(),
            counts: Vec::new(),
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
            Arc::new(Field::new(
                "counts",
                DataType::new_list(DataType::Int64, true),
                true,
            )),
        ])
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

/// HISTOGRAM's answer: `MAP<STRING, BIGINT>`.
fn histogram_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(
                vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", DataType::Int64, true),
                ]
                .into(),
            ),
            false,
        )),
        false,
    )
}

#[derive(Debug)]
struct KeptAccumulator {
    kind: Kind,
    value_type: DataType,
    /// Answers a list (a count was given, or a collection) rather than one value.
    list: bool,
    limit: usize,
    ignore_nulls: bool,
    values: Vec<ScalarValue>,
    /// How often each value was seen (functions that keep distinct values).
    counts: Vec<i64>,
}

impl KeptAccumulator {
    fn keep(&mut self, value: ScalarValue, times: i64) {
        if value.is_null() && self.ignore_nulls && self.kind != Kind::Attr {
            return;
        }
        if self.kind.counts_values() {
            match self.values.iter().position(|v| *v == value) {
                Some(at) => self.counts[at] += times,
                None if self.values.len() < self.limit || self.kind == Kind::TopKDistinct => {
                    self.values.push(value);
                    self.counts.push(times);
                }
                None => {}
            }
            if self.kind == Kind::TopKDistinct {
                self.keep_largest();
            }
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
            Kind::TopK => {
                self.values.push(value);
                self.keep_largest();
            }
            _ => {
                if self.values.len() < self.limit {
                    self.values.push(value);
                }
            }
        }
    }

    /// TOPK: the `limit` largest values, largest first.
    fn keep_largest(&mut self) {
        let mut order: Vec<usize> = (0..self.values.len()).collect();
        order.sort_by(|a, b| {
            self.values[*b]
                .partial_cmp(&self.values[*a])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        order.truncate(self.limit);
        let values = order.iter().map(|&i| self.values[i].clone()).collect();
        if !self.counts.is_empty() {
            self.counts = order.iter().map(|&i| self.counts[i]).collect();
        }
        self.values = values;
    }

    /// Takes a value back out (a table row changed or was deleted).
    fn take_back(&mut self, value: &ScalarValue) {
        let Some(at) = self.values.iter().position(|v| v == value) else {
            return;
        };
        if self.kind.counts_values() {
            self.counts[at] -= 1;
            if self.counts[at] > 0 {
                return;
            }
            self.counts.remove(at);
        }
        self.values.remove(at);
    }

    fn histogram(&self) -> Result<ScalarValue> {
        let keys = arrow::array::StringArray::from_iter(self.values.iter().map(|v| match v {
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                s.clone()
            }
            other => Some(other.to_string()),
        }));
        let counts = arrow::array::Int64Array::from(self.counts.clone());
        let DataType::Map(entries, sorted) = histogram_type() else {
            unreachable!("a histogram is a map");
        };
        let DataType::Struct(fields) = entries.data_type().clone() else {
            unreachable!("map entries are structs");
        };
        let rows = arrow::array::StructArray::try_new(
            fields,
            vec![Arc::new(keys) as ArrayRef, Arc::new(counts)],
            None,
        )?;
        let offsets = arrow::buffer::OffsetBuffer::from_lengths([rows.len()]);
        let map = arrow::array::MapArray::try_new(entries, offsets, rows, None, sorted)?;
        ScalarValue::try_from_array(&map, 0)
    }
}

impl Accumulator for KeptAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(column) = values.first() else {
            return Ok(());
        };
        for row in 0..column.len() {
            self.keep(ScalarValue::try_from_array(column, row)?, 1);
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(column) = values.first() else {
            return Ok(());
        };
        for row in 0..column.len() {
            self.take_back(&ScalarValue::try_from_array(column, row)?);
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        self.kind.retracts()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.kind {
            Kind::Attr => {
                return match self.values.as_slice() {
                    [only] => Ok(only.clone()),
                    _ => ScalarValue::try_from(&self.value_type),
                };
            }
            Kind::CountDistinct => {
                return Ok(ScalarValue::Int64(Some(self.values.len() as i64)));
            }
            Kind::Histogram => return self.histogram(),
            _ => {}
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
        std::mem::size_of_val(self)
            + self.values.iter().map(ScalarValue::size).sum::<usize>()
            + self.counts.len() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let counts: Vec<ScalarValue> = self
            .counts
            .iter()
            .map(|c| ScalarValue::Int64(Some(*c)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(
                &self.values,
                &self.value_type,
            )),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(lists), Some(counts)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
        let scalars = |array: &ArrayRef, row: usize| -> Result<Vec<ScalarValue>> {
            Ok(match ScalarValue::try_from_array(array, row)? {
                ScalarValue::List(list) => ScalarValue::convert_array_to_scalar_vec(list.as_ref())?
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect(),
                _ => Vec::new(),
            })
        };
        for row in 0..lists.len() {
            let values = scalars(lists, row)?;
            let times = scalars(counts, row)?;
            for (index, value) in values.into_iter().enumerate() {
                let times = match times.get(index) {
                    Some(ScalarValue::Int64(Some(n))) => *n,
                    _ => 1,
                };
                self.keep(value, times);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};

    fn kept(kind: Kind, limit: usize, list: bool) -> KeptAccumulator {
        KeptAccumulator {
            kind,
            value_type: DataType::Int32,
            list,
            limit,
            ignore_nulls: kind != Kind::CollectList,
            values: Vec::new(),
            counts: Vec::new(),
        }
    }

    fn ints(values: &[Option<i32>]) -> Vec<ArrayRef> {
        vec![Arc::new(Int32Array::from(values.to_vec()))]
    }

    fn list_of(accumulator: &mut KeptAccumulator) -> Vec<Option<i32>> {
        match accumulator.evaluate() {
            Ok(ScalarValue::List(list)) => list
                .value(0)
                .as_any()
                .downcast_ref::<Int32Array>()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            other => panic!("a list, got {other:?}"),
        }
    }

    #[test]
    fn topk_keeps_the_largest_values_and_topkdistinct_each_once() {
        let mut top = kept(Kind::TopK, 3, true);
        top.update_batch(&ints(&[Some(0), Some(100), None, Some(99), Some(100)]))
            .expect("adds");
        assert_eq!(list_of(&mut top), [Some(100), Some(100), Some(99)]);
        let mut distinct = kept(Kind::TopKDistinct, 3, true);
        distinct
            .update_batch(&ints(&[Some(0), Some(100), Some(99), Some(7), Some(100)]))
            .expect("adds");
        assert_eq!(list_of(&mut distinct), [Some(100), Some(99), Some(7)]);
    }

    #[test]
    fn collections_take_a_value_back_out() {
        let mut list = kept(Kind::CollectList, COLLECTION_LIMIT, true);
        list.update_batch(&ints(&[Some(1), None, Some(2), Some(1)]))
            .expect("adds");
        list.retract_batch(&ints(&[Some(1)])).expect("takes back");
        assert_eq!(
            list_of(&mut list),
            [None, Some(2), Some(1)],
            "the first occurrence goes; NULLs are kept"
        );
        let mut set = kept(Kind::CollectSet, COLLECTION_LIMIT, true);
        set.update_batch(&ints(&[Some(1), Some(2), Some(1)]))
            .expect("adds");
        set.retract_batch(&ints(&[Some(1)])).expect("takes back");
        assert_eq!(list_of(&mut set), [Some(1), Some(2)], "1 was seen twice");
        set.retract_batch(&ints(&[Some(1)])).expect("takes back");
        assert_eq!(list_of(&mut set), [Some(2)]);
        let mut attr = kept(Kind::Attr, usize::MAX, false);
        attr.update_batch(&ints(&[Some(5), Some(6)])).expect("adds");
        assert_eq!(attr.evaluate().ok(), Some(ScalarValue::Int32(None)));
        attr.retract_batch(&ints(&[Some(6)])).expect("takes back");
        assert_eq!(attr.evaluate().ok(), Some(ScalarValue::Int32(Some(5))));
    }

    #[test]
    fn histogram_counts_each_value_and_forgets_those_at_zero() {
        let mut histogram = kept(Kind::Histogram, COLLECTION_LIMIT, false);
        let names: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec!["foo", "bar", "foo"]))];
        histogram.update_batch(&names).expect("adds");
        histogram
            .retract_batch(&[Arc::new(StringArray::from(vec!["bar"])) as ArrayRef])
            .expect("takes back");
        let Ok(ScalarValue::Map(map)) = histogram.evaluate() else {
            panic!("a map");
        };
        let entries = map.value(0);
        let keys = entries.column(0).as_any().downcast_ref::<StringArray>();
        let counts = entries
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        assert_eq!(keys.map(|k| k.value(0)), Some("foo"));
        assert_eq!(counts.map(|c| c.value(0)), Some(2));
        assert_eq!(entries.len(), 1, "bar went back to 0");
    }
}
