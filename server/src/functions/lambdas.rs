//! ksqlDB's lambda functions `TRANSFORM`, `FILTER` and `REDUCE`, over arrays and maps, as
//! DataFusion higher-order functions: the lambda's body is evaluated once per batch over
//! every item of every row (`REDUCE`: once per item position), never once per item.
//!
//! - `TRANSFORM(array, x => …)`, `TRANSFORM(map, (k, v) => key, (k, v) => value)`
//! - `FILTER(array, x => …)`, `FILTER(map, (k, v) => …)`: the items the lambda is true for
//! - `REDUCE(array, start, (s, x) => …)`, `REDUCE(map, start, (s, k, v) => …)`: the state,
//!   of the start's type, folded over the items in order; NULL array or map: the start.
//!
//! A lambda's items are the values behind the rows that are not NULL; a NULL array or map
//! is NULL out (REDUCE: the start). Columns the lambda reads from its row ("captures") are
//! repeated for each item of that row.
//!
//! An arithmetic operand that is NULL inside a lambda makes the whole call NULL, as in
//! ksqlDB (whose generated Java throws on it): `TRANSFORM([5, NULL], x => x + 5)` is NULL,
//! not `[10, NULL]`. The planner wraps each such operand in [`OPERAND`], which fails on a
//! NULL number; a batch where one does is evaluated again row by row, and the rows that
//! fail are NULL.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, MapArray, StructArray, UInt32Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, HigherOrderFunctionArgs, HigherOrderReturnFieldArgs, HigherOrderSignature,
    HigherOrderUDF, HigherOrderUDFImpl, LambdaArgument, LambdaParametersProgress, ValueOrLambda,
    Volatility,
};

/// The function the planner wraps each arithmetic operand of a lambda's body in.
pub const OPERAND: &str = "lambda_operand";

/// [`OPERAND`]: its argument as it is, or [`NullOperand`] when a number is NULL.
pub fn operand_function() -> datafusion::logical_expr::ScalarUDF {
    super::udf::KsqlFunction::volatile_udf(
        OPERAND,
        |args| match args {
            [one] => Some(one.clone()),
            _ => None,
        },
        |args, _| match args {
            [one] if one.data_type().is_numeric() && one.null_count() > 0 => {
                Err(DataFusionError::External(Box::new(NullOperand)))
            }
            [one] => Ok(one.clone()),
            _ => Err(DataFusionError::Internal(format!(
                "{OPERAND} takes one argument"
            ))),
        },
    )
}

/// A lambda computed with a NULL number (ksqlDB's Java throws a NullPointerException).
#[derive(Debug)]
struct NullOperand;

impl std::fmt::Display for NullOperand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a lambda computed with a NULL number")
    }
}

impl std::error::Error for NullOperand {}

fn is_null_operand(error: &DataFusionError) -> bool {
    let root: &dyn std::error::Error = error;
    std::iter::successors(Some(root), |e| e.source()).any(|e| e.is::<NullOperand>())
}

pub fn functions() -> Vec<Arc<HigherOrderUDF>> {
    [Kind::Transform, Kind::Filter, Kind::Reduce]
        .into_iter()
        .map(|kind| {
            Arc::new(HigherOrderUDF::new_from_impl(LambdaFunction {
                kind,
                signature: HigherOrderSignature::variadic_any(Volatility::Immutable),
            }))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Transform,
    Filter,
    Reduce,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct LambdaFunction {
    kind: Kind,
    signature: HigherOrderSignature,
}

/// What a lambda function is called on.
enum Input<'a> {
    Array(&'a FieldRef),
    Map {
        key: &'a FieldRef,
        value: &'a FieldRef,
    },
}

fn input_of(field: &FieldRef) -> Option<Input<'_>> {
    match field.data_type() {
        DataType::List(item) => Some(Input::Array(item)),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => Some(Input::Map {
                key: &fields[0],
                value: &fields[1],
            }),
            _ => None,
        },
        _ => None,
    }
}

impl LambdaFunction {
    fn name_upper(&self) -> &'static str {
        match self.kind {
            Kind::Transform => "TRANSFORM",
            Kind::Filter => "FILTER",
            Kind::Reduce => "REDUCE",
        }
    }

    /// ksqlDB's error for arguments this function has no form for.
    fn refused<T>(&self) -> Result<T> {
        let forms = match self.kind {
            Kind::Transform => {
                "TRANSFORM(array, x => …) or TRANSFORM(map, (k, v) => …, (k, v) => …)"
            }
            Kind::Filter => "FILTER(array, x => …) or FILTER(map, (k, v) => …)",
            Kind::Reduce => {
                "REDUCE(array, start, (s, x) => …) or REDUCE(map, start, (s, k, v) => …)"
            }
        };
        plan_err!("Function '{}' takes {forms}", self.name_upper())
    }
}

fn nullable(field: &FieldRef) -> FieldRef {
    Arc::new(field.as_ref().clone().with_nullable(true))
}

impl HigherOrderUDFImpl for LambdaFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Transform => "transform",
            Kind::Filter => "filter",
            Kind::Reduce => "reduce",
        }
    }

    fn aliases(&self) -> &[String] {
        &[]
    }

    fn signature(&self) -> &HigherOrderSignature {
        &self.signature
    }

    fn lambda_parameters(
        &self,
        _step: usize,
        fields: &[ValueOrLambda<FieldRef, Option<FieldRef>>],
    ) -> Result<LambdaParametersProgress> {
        use ValueOrLambda::{Lambda, Value};
        let parameters = match (self.kind, fields) {
            (Kind::Transform | Kind::Filter, [Value(input), Lambda(_)]) => match input_of(input) {
                Some(Input::Array(item)) => vec![vec![nullable(item)]],
                Some(Input::Map { key, value }) if self.kind == Kind::Filter => {
                    vec![vec![nullable(key), nullable(value)]]
                }
                _ => return self.refused(),
            },
            (Kind::Transform, [Value(input), Lambda(_), Lambda(_)]) => match input_of(input) {
                Some(Input::Map { key, value }) => {
                    let both = vec![nullable(key), nullable(value)];
                    vec![both.clone(), both]
                }
                _ => return self.refused(),
            },
            (Kind::Reduce, [Value(input), Value(start), Lambda(_)]) => {
                let state = nullable(start);
                match input_of(input) {
                    Some(Input::Array(item)) => vec![vec![state, nullable(item)]],
                    Some(Input::Map { key, value }) => {
                        vec![vec![state, nullable(key), nullable(value)]]
                    }
                    None => return self.refused(),
                }
            }
            _ => return self.refused(),
        };
        Ok(LambdaParametersProgress::Complete(parameters))
    }

    fn return_field_from_args(&self, args: HigherOrderReturnFieldArgs) -> Result<FieldRef> {
        use ValueOrLambda::{Lambda, Value};
        let field = |data_type: DataType| Arc::new(Field::new("", data_type, true));
        match (self.kind, args.arg_fields) {
            (Kind::Filter, [Value(input), Lambda(_)]) => Ok(field(input.data_type().clone())),
            (Kind::Transform, [Value(_), Lambda(item)]) => Ok(field(DataType::List(Arc::new(
                Field::new("item", item.data_type().clone(), true),
            )))),
            (Kind::Transform, [Value(_), Lambda(key), Lambda(value)]) => {
                Ok(field(map_of(key.data_type(), value.data_type())))
            }
            (Kind::Reduce, [Value(_), Value(start), Lambda(_)]) => {
                Ok(field(start.data_type().clone()))
            }
            _ => self.refused(),
        }
    }

    fn invoke_with_args(&self, args: HigherOrderFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let mut values = Vec::new();
        let mut lambdas = Vec::new();
        for arg in &args.args {
            match arg {
                ValueOrLambda::Value(value) => values.push(value.to_array(rows)?),
                ValueOrLambda::Lambda(lambda) => lambdas.push(lambda),
            }
        }
        let result = args.return_field.data_type();
        let out = match (self.kind, values.as_slice(), lambdas.as_slice()) {
            (Kind::Transform, [input], [item]) => transform_array(input, item, result)?,
            (Kind::Transform, [input], [key, value]) => transform_map(input, key, value, result)?,
            (Kind::Filter, [input], [keep]) => filter(input, keep)?,
            (Kind::Reduce, [input, start], [fold]) => reduce(input, start, fold)?,
            _ => return self.refused(),
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn map_of(key: &DataType, value: &DataType) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", key.clone(), false),
                Field::new("value", value.clone(), true),
            ])),
            false,
        )),
        false,
    )
}

/// The items of an array or map column, laid out for one lambda evaluation: each row's
/// items from `offsets[row]` to `offsets[row + 1]` of `columns` (the items, or the keys
/// and values), NULL rows holding none.
struct Items {
    offsets: Vec<i32>,
    columns: Vec<ArrayRef>,
    /// For each item, the row it belongs to (to repeat captured columns).
    rows: UInt32Array,
    nulls: Option<arrow::buffer::NullBuffer>,
}

impl Items {
    fn of(input: &ArrayRef) -> Result<Items> {
        let (offsets, columns, nulls) = match input.data_type() {
            DataType::List(_) => {
                let list = input.as_list::<i32>();
                (
                    list.value_offsets(),
                    vec![list.values().clone()],
                    list.nulls(),
                )
            }
            DataType::Map(..) => {
                let map = input.as_map();
                (
                    map.value_offsets(),
                    vec![map.keys().clone(), map.values().clone()],
                    map.nulls(),
                )
            }
            other => {
                return Err(DataFusionError::Execution(format!(
                    "a lambda function takes an array or a map, not {other}"
                )));
            }
        };
        let mut take = Vec::new();
        let mut rows = Vec::new();
        let mut new_offsets = Vec::with_capacity(input.len() + 1);
        new_offsets.push(0i32);
        for row in 0..input.len() {
            if input.is_valid(row) {
                for item in offsets[row]..offsets[row + 1] {
                    take.push(item as u32);
                    rows.push(row as u32);
                }
            }
            new_offsets.push(take.len() as i32);
        }
        let take = UInt32Array::from(take);
        let columns = columns
            .iter()
            .map(|c| Ok(arrow::compute::take(c, &take, None)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Items {
            offsets: new_offsets,
            columns,
            rows: UInt32Array::from(rows),
            nulls: nulls.cloned(),
        })
    }

    /// The lambda over every item as `result` values, its parameters taken from
    /// `parameters`.
    fn evaluate(
        &self,
        lambda: &LambdaArgument,
        parameters: &[ArrayRef],
        result: &DataType,
    ) -> Result<Evaluated> {
        call(lambda, parameters, &self.rows, result)
    }

    fn offsets(&self) -> OffsetBuffer<i32> {
        OffsetBuffer::new(self.offsets.clone().into())
    }

    /// The rows' NULLs and the rows whose lambda failed.
    fn nulls_with(&self, failed: &[u32]) -> Option<NullBuffer> {
        with_failed(self.nulls.clone(), failed, self.offsets.len() - 1)
    }
}

/// A lambda's values, and the rows it failed for (whose call is NULL).
struct Evaluated {
    values: ArrayRef,
    failed: Vec<u32>,
}

/// `nulls` of `len` rows, with the `failed` rows NULL too.
fn with_failed(nulls: Option<NullBuffer>, failed: &[u32], len: usize) -> Option<NullBuffer> {
    if failed.is_empty() {
        return nulls;
    }
    let mut valid = arrow::array::BooleanBufferBuilder::new(len);
    valid.append_n(len, true);
    for &row in failed {
        valid.set_bit(row as usize, false);
    }
    NullBuffer::union(nulls.as_ref(), Some(&NullBuffer::new(valid.finish())))
}

/// A lambda over one value per `rows` entry (an item, or a row's state) as `result` values:
/// `parameters` are its arguments, and the columns it captures are taken from the row each
/// value belongs to. `rows` is ascending.
fn call(
    lambda: &LambdaArgument,
    parameters: &[ArrayRef],
    rows: &UInt32Array,
    result: &DataType,
) -> Result<Evaluated> {
    match call_once(lambda, parameters, rows) {
        Ok(values) => Ok(Evaluated {
            values: arrow::compute::cast(&values, result)?,
            failed: Vec::new(),
        }),
        Err(error) if is_null_operand(&error) => call_row_by_row(lambda, parameters, rows, result),
        Err(error) => Err(error),
    }
}

/// [`call`] one row's values at a time, for a batch where some row's lambda failed.
fn call_row_by_row(
    lambda: &LambdaArgument,
    parameters: &[ArrayRef],
    rows: &UInt32Array,
    result: &DataType,
) -> Result<Evaluated> {
    let mut pieces = Vec::new();
    let mut failed = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let row = rows.value(start);
        let end = (start..rows.len())
            .find(|&i| rows.value(i) != row)
            .unwrap_or(rows.len());
        let length = end - start;
        let slice: Vec<ArrayRef> = parameters.iter().map(|p| p.slice(start, length)).collect();
        match call_once(lambda, &slice, &rows.slice(start, length)) {
            Ok(values) => pieces.push(arrow::compute::cast(&values, result)?),
            Err(error) if is_null_operand(&error) => {
                pieces.push(arrow::array::new_null_array(result, length));
                failed.push(row);
            }
            Err(error) => return Err(error),
        }
        start = end;
    }
    let pieces: Vec<&dyn Array> = pieces.iter().map(|p| p.as_ref()).collect();
    let values = match pieces.is_empty() {
        true => arrow::array::new_null_array(result, 0),
        false => arrow::compute::concat(&pieces)?,
    };
    Ok(Evaluated { values, failed })
}

fn call_once(
    lambda: &LambdaArgument,
    parameters: &[ArrayRef],
    rows: &UInt32Array,
) -> Result<ArrayRef> {
    let getters: Vec<Box<dyn Fn() -> Result<ArrayRef> + '_>> = parameters
        .iter()
        .map(|p| Box::new(move || Ok(p.clone())) as Box<dyn Fn() -> Result<ArrayRef>>)
        .collect();
    let getters: Vec<&dyn Fn() -> Result<ArrayRef>> = getters.iter().map(|g| g.as_ref()).collect();
    lambda
        .evaluate(&getters, |captures| spread(captures, rows))?
        .into_array(rows.len())
}

/// Captured columns, one value per row, repeated for each item of the row.
fn spread(captures: &[ArrayRef], rows: &UInt32Array) -> Result<Vec<ArrayRef>> {
    captures
        .iter()
        .map(|c| Ok(arrow::compute::take(c, rows, None)?))
        .collect()
}

fn list_field(result: &DataType) -> Result<FieldRef> {
    match result {
        DataType::List(field) => Ok(field.clone()),
        other => Err(DataFusionError::Internal(format!(
            "TRANSFORM of an array returns an array, not {other}"
        ))),
    }
}

fn transform_array(input: &ArrayRef, item: &LambdaArgument, result: &DataType) -> Result<ArrayRef> {
    let items = Items::of(input)?;
    let field = list_field(result)?;
    let transformed = items.evaluate(item, &items.columns, field.data_type())?;
    Ok(Arc::new(ListArray::try_new(
        field,
        items.offsets(),
        transformed.values,
        items.nulls_with(&transformed.failed),
    )?))
}

fn transform_map(
    input: &ArrayRef,
    key: &LambdaArgument,
    value: &LambdaArgument,
    result: &DataType,
) -> Result<ArrayRef> {
    let items = Items::of(input)?;
    let DataType::Map(entries_field, _) = result else {
        return Err(DataFusionError::Internal(
            "TRANSFORM of a map returns a map".into(),
        ));
    };
    let DataType::Struct(fields) = entries_field.data_type() else {
        return Err(DataFusionError::Internal(
            "a map's entries are structs".into(),
        ));
    };
    let keys = items.evaluate(key, &items.columns, fields[0].data_type())?;
    let values = items.evaluate(value, &items.columns, fields[1].data_type())?;
    let failed: Vec<u32> = keys.failed.iter().chain(&values.failed).copied().collect();
    let nulls = items.nulls_with(&failed);
    // A key NULL in a row that is itself NULL is not the lambda's doing.
    let null_key = (0..items.offsets.len() - 1).any(|row| {
        nulls.as_ref().is_none_or(|n| n.is_valid(row))
            && (items.offsets[row]..items.offsets[row + 1]).any(|i| keys.values.is_null(i as usize))
    });
    if null_key {
        return Err(DataFusionError::Execution(
            "TRANSFORM gave a map key that is NULL".into(),
        ));
    }
    // A map's keys are never NULL, whatever the row: the failed rows' keys are filled.
    let keys = match keys.values.null_count() {
        0 => keys.values,
        _ => fill_nulls(&keys.values)?,
    };
    let entries = StructArray::try_new(fields.clone(), vec![keys, values.values], None)?;
    Ok(Arc::new(MapArray::try_new(
        entries_field.clone(),
        items.offsets(),
        entries,
        nulls,
        false,
    )?))
}

/// `values` with each NULL replaced by the type's default (a map's keys in rows that are
/// NULL, which a map cannot hold as NULL).
fn fill_nulls(values: &ArrayRef) -> Result<ArrayRef> {
    let default = datafusion::common::ScalarValue::new_default(values.data_type())?.to_scalar()?;
    let present = arrow::compute::is_not_null(values)?;
    Ok(arrow::compute::kernels::zip::zip(
        &present, values, &default,
    )?)
}

fn filter(input: &ArrayRef, keep: &LambdaArgument) -> Result<ArrayRef> {
    let items = Items::of(input)?;
    let verdicts = items.evaluate(keep, &items.columns, &DataType::Boolean)?;
    let nulls = items.nulls_with(&verdicts.failed);
    // NULL is not true: the item goes.
    let kept: BooleanArray = verdicts
        .values
        .as_boolean()
        .iter()
        .map(|v| Some(v == Some(true)))
        .collect();
    let mut offsets = Vec::with_capacity(items.offsets.len());
    offsets.push(0i32);
    for window in items.offsets.windows(2) {
        let count = (window[0]..window[1])
            .filter(|&i| kept.value(i as usize))
            .count() as i32;
        offsets.push(offsets[offsets.len() - 1] + count);
    }
    let offsets = OffsetBuffer::new(offsets.into());
    let columns = items
        .columns
        .iter()
        .map(|c| Ok(arrow::compute::filter(c, &kept)?))
        .collect::<Result<Vec<_>>>()?;
    match input.data_type() {
        DataType::List(field) => Ok(Arc::new(ListArray::try_new(
            field.clone(),
            offsets,
            columns[0].clone(),
            nulls,
        )?)),
        DataType::Map(entries_field, sorted) => {
            let DataType::Struct(fields) = entries_field.data_type() else {
                return Err(DataFusionError::Internal(
                    "a map's entries are structs".into(),
                ));
            };
            let entries = StructArray::try_new(fields.clone(), columns, None)?;
            Ok(Arc::new(MapArray::try_new(
                entries_field.clone(),
                offsets,
                entries,
                nulls,
                *sorted,
            )?))
        }
        other => Err(DataFusionError::Execution(format!(
            "FILTER takes an array or a map, not {other}"
        ))),
    }
}

/// REDUCE: one lambda evaluation per item position, over the rows that have an item there.
fn reduce(input: &ArrayRef, start: &ArrayRef, fold: &LambdaArgument) -> Result<ArrayRef> {
    let items = Items::of(input)?;
    let state_type = start.data_type().clone();
    let mut state = start.clone();
    let mut failed = Vec::new();
    let longest = items
        .offsets
        .windows(2)
        .map(|w| (w[1] - w[0]) as usize)
        .max()
        .unwrap_or(0);
    for position in 0..longest {
        // The rows with an item at `position`, and that item.
        let (rows, item_indices): (Vec<u32>, Vec<u32>) = items
            .offsets
            .windows(2)
            .enumerate()
            .filter(|(_, w)| (w[1] - w[0]) as usize > position)
            .map(|(row, w)| (row as u32, w[0] as u32 + position as u32))
            .unzip();
        let rows = UInt32Array::from(rows);
        let item_indices = UInt32Array::from(item_indices);
        let mut parameters = vec![arrow::compute::take(&state, &rows, None)?];
        for column in &items.columns {
            parameters.push(arrow::compute::take(column, &item_indices, None)?);
        }
        let folded = call(fold, &parameters, &rows, &state_type)?;
        failed.extend(folded.failed);
        let folded = folded.values;
        // The new state: the folded value where a row had an item, the old one elsewhere.
        let mut next = Vec::with_capacity(state.len());
        let mut active = rows.values().iter().peekable();
        let mut taken = 0;
        for row in 0..state.len() {
            if active.peek() == Some(&&(row as u32)) {
                active.next();
                next.push((1, taken));
                taken += 1;
            } else {
                next.push((0, row));
            }
        }
        state = arrow::compute::interleave(&[state.as_ref(), folded.as_ref()], &next)?;
    }
    if failed.is_empty() {
        return Ok(state);
    }
    let nulls = with_failed(state.nulls().cloned(), &failed, state.len());
    Ok(arrow::array::make_array(
        state.to_data().into_builder().nulls(nulls).build()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{eval, eval_error};

    #[test]
    fn transform_rewrites_every_item_of_an_array_or_map() {
        assert_eq!(eval("transform(make_array(3, 6), x -> x + 5)"), "[8, 11]");
        assert_eq!(
            eval("transform(make_array('a', NULL), x -> upper(x))"),
            "[A, NULL]"
        );
        assert_eq!(eval("transform(CAST(NULL AS ARRAY<INT>), x -> x)"), "NULL");
        assert_eq!(
            eval("transform(map(['a', 'b'], [1, 2]), (k, v) -> upper(k), (k, v) -> v * 10)"),
            "{A: 10, B: 20}"
        );
        assert_eq!(
            eval("transform(make_array(make_array(5, 7), make_array(3)), x -> array_max(x))"),
            "[7, 3]"
        );
    }

    #[test]
    fn filter_keeps_the_items_the_lambda_is_true_for() {
        assert_eq!(
            eval("filter(make_array(3, 6, 2, 10), x -> x > 5)"),
            "[6, 10]"
        );
        assert_eq!(eval("filter(make_array(5, NULL), x -> x > 5)"), "[]");
        assert_eq!(
            eval("filter(map(['a', 'abcd'], [15, 15]), (k, v) -> length(k) > 2)"),
            "{abcd: 15}"
        );
    }

    #[test]
    fn reduce_folds_items_in_order_from_the_start() {
        assert_eq!(eval("reduce(make_array(3, 6), 2, (s, x) -> s + x)"), "11");
        assert_eq!(
            eval("reduce(CAST(NULL AS ARRAY<BIGINT>), 2, (s, x) -> s + x)"),
            "2"
        );
        assert_eq!(
            eval("reduce(make_array('a', NULL, 'c'), '', (s, x) -> concat(s, x))"),
            "ac"
        );
        assert_eq!(
            eval("reduce(map(['a', 'bb'], [1, 2]), 0, (s, k, v) -> s + length(k) * v)"),
            "5"
        );
        assert!(eval_error("reduce(1, 2, (s, x) -> s)").contains("REDUCE"));
    }
}
