//! Equivalents of the aggregate functions ksqlDB's conformance tests load from its own test
//! sources (`TEST_UDAF`, `MULTI_ARG`, `FOUR_ARG`, `FIVE_ARG`, `VAR_ARG`, `MID_VAR_ARG`,
//! `GENERIC_VAR_ARG`, `OBJ_COL_ARG`) and the scalars `BAD_UDF`, `TEST_UDF`, `WHENCONDITION`,
//! `WHENRESULT` and `TOSTRUCT`, and the table functions `TEST_UDTF` and `THROWING_UDTF`:
//! registered by the conformance runner only, never by the
//! shipped server. Their behaviour is what the corpus's expected outputs show:
//!
//! - `MULTI_ARG(BIGINT, STRING, INT, STRING…)`, `FOUR_ARG(BIGINT, STRING, STRING, STRING,
//!   INT, STRING…)`, `FIVE_ARG(BIGINT, STRING, STRING, STRING, INT, INT, STRING…)`: start at
//!   the constant INT plus the lengths of the trailing constant strings; each row adds its
//!   number columns and the lengths of its string columns (NULL counts 0).
//! - `VAR_ARG(BIGINT, STRING…)`: each row adds the number and the strings' lengths.
//! - `MID_VAR_ARG(BIGINT, STRING…, INT, INT)`: starts at the two constants' sum; each row
//!   adds the number and the strings' lengths.
//! - `GENERIC_VAR_ARG(T, INT, U…)` (every `U` the same type) and `OBJ_COL_ARG(INT, ANY…)`:
//!   the list of the first argument's values of the rows where no argument is NULL.
//! - `TEST_UDAF(x)`: a sum (BIGINT for integers, DOUBLE, a STRUCT summed field by field)
//!   that takes values back out over tables.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use riffle_server::functions::udf::{KsqlFunction, refused_parameters};

/// The test functions, to register with an engine.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    [
        Kind::MultiArg,
        Kind::FourArg,
        Kind::FiveArg,
        Kind::VarArg,
        Kind::MidVarArg,
        Kind::GenericVarArg,
        Kind::ObjColArg,
        Kind::TestUdaf,
    ]
    .into_iter()
    .map(|kind| {
        AggregateUDF::new_from_impl(TestAggregate {
            kind,
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    })
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    MultiArg,
    FourArg,
    FiveArg,
    VarArg,
    MidVarArg,
    GenericVarArg,
    ObjColArg,
    TestUdaf,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TestAggregate {
    kind: Kind,
    signature: Signature,
}

fn is_int(t: &DataType) -> bool {
    matches!(t, DataType::Int32 | DataType::Int64)
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl TestAggregate {
    /// For the summing kinds: how many leading arguments are row values (the rest are the
    /// constants of the starting value).
    fn row_arguments(&self, count: usize) -> usize {
        match self.kind {
            Kind::MultiArg => 2,
            Kind::FourArg => 4,
            Kind::FiveArg => 5,
            Kind::VarArg => count,
            Kind::MidVarArg => count.saturating_sub(2),
            _ => count,
        }
    }

    /// Whether ksqlDB's function has an overload for these argument types.
    fn accepts(&self, types: &[DataType]) -> bool {
        let strings = |ts: &[DataType]| ts.iter().all(is_string);
        match (self.kind, types) {
            (Kind::MultiArg, [first, s, n, rest @ ..]) => {
                *first == DataType::Int64 && is_string(s) && is_int(n) && strings(rest)
            }
            (Kind::FourArg, [first, a, b, c, n, rest @ ..]) => {
                *first == DataType::Int64
                    && strings(&[a.clone(), b.clone(), c.clone()])
                    && is_int(n)
                    && strings(rest)
            }
            (Kind::FiveArg, [first, a, b, c, m, n, rest @ ..]) => {
                *first == DataType::Int64
                    && strings(&[a.clone(), b.clone(), c.clone()])
                    && is_int(m)
                    && is_int(n)
                    && strings(rest)
            }
            (Kind::VarArg, [first, rest @ ..]) => *first == DataType::Int64 && strings(rest),
            (Kind::MidVarArg, [first, middle @ .., m, n]) => {
                *first == DataType::Int64 && strings(middle) && is_int(m) && is_int(n)
            }
            (Kind::GenericVarArg, [_, n, rest @ ..]) => {
                is_int(n) && rest.windows(2).all(|w| w[0] == w[1])
            }
            (Kind::ObjColArg, [first, ..]) => *first == DataType::Int32,
            (Kind::TestUdaf, [value]) => {
                is_int(value)
                    || *value == DataType::Float64
                    || is_string(value)
                    || matches!(value, DataType::Struct(_))
            }
            _ => false,
        }
    }
}

impl AggregateUDFImpl for TestAggregate {
    fn name(&self) -> &str {
        match self.kind {
            Kind::MultiArg => "multi_arg",
            Kind::FourArg => "four_arg",
            Kind::FiveArg => "five_arg",
            Kind::VarArg => "var_arg",
            Kind::MidVarArg => "mid_var_arg",
            Kind::GenericVarArg => "generic_var_arg",
            Kind::ObjColArg => "obj_col_arg",
            Kind::TestUdaf => "test_udaf",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !self.accepts(arg_types) {
            return Err(refused_parameters(&self.name().to_uppercase(), arg_types));
        }
        Ok(match (self.kind, arg_types.first()) {
            (Kind::GenericVarArg | Kind::ObjColArg, Some(first)) => {
                DataType::new_list(first.clone(), true)
            }
            (Kind::TestUdaf, Some(DataType::Float64)) => DataType::Float64,
            (Kind::TestUdaf, Some(structure @ DataType::Struct(_))) => structure.clone(),
            _ => DataType::Int64,
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let count = args.exprs.len();
        let constant = |index: usize| {
            args.exprs
                .get(index)
                .and_then(|e| e.downcast_ref::<Literal>())
                .map(|l| l.value().clone())
        };
        let mut start = 0i64;
        if matches!(
            self.kind,
            Kind::MultiArg | Kind::FourArg | Kind::FiveArg | Kind::MidVarArg
        ) {
            for index in self.row_arguments(count)..count {
                start += match constant(index) {
                    Some(ScalarValue::Utf8(Some(text))) => text.len() as i64,
                    Some(value) => value
                        .cast_to(&DataType::Int64)
                        .ok()
                        .and_then(|v| match v {
                            ScalarValue::Int64(n) => n,
                            _ => None,
                        })
                        .unwrap_or(0),
                    None => 0,
                };
            }
        }
        Ok(Box::new(TestAccumulator {
            kind: self.kind,
            row_arguments: self.row_arguments(count),
            output: args.return_field.data_type().clone(),
            total: start,
            double_total: 0.0,
            struct_totals: Vec::new(),
            kept: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            "state",
            args.return_field.data_type().clone(),
            true,
        ))])
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator(args)
    }
}

#[derive(Debug)]
struct TestAccumulator {
    kind: Kind,
    row_arguments: usize,
    output: DataType,
    total: i64,
    double_total: f64,
    /// TEST_UDAF over a struct: each field's sum.
    struct_totals: Vec<i64>,
    /// GENERIC_VAR_ARG / OBJ_COL_ARG: the values kept.
    kept: Vec<ScalarValue>,
}

/// A row value's contribution to a sum: an integer itself, a string its length, NULL 0.
fn amount(value: &ScalarValue) -> i64 {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as i64,
        other if other.is_null() => 0,
        other => match other.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) => n,
            _ => 0,
        },
    }
}

impl TestAccumulator {
    fn fold(&mut self, values: &[ArrayRef], sign: i64) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        for row in 0..rows {
            match self.kind {
                Kind::GenericVarArg | Kind::ObjColArg => {
                    if values.iter().all(|v| v.is_valid(row)) {
                        self.kept
                            .push(ScalarValue::try_from_array(&values[0], row)?);
                    }
                }
                Kind::TestUdaf => {
                    let column = &values[0];
                    if column.is_null(row) {
                        continue;
                    }
                    match column.data_type() {
                        DataType::Float64 => {
                            let v = column.as_primitive::<arrow::datatypes::Float64Type>();
                            self.double_total += sign as f64 * v.value(row);
                        }
                        DataType::Struct(_) => {
                            let fields: &StructArray = column.as_struct();
                            self.struct_totals.resize(fields.num_columns(), 0);
                            for (total, field) in
                                self.struct_totals.iter_mut().zip(fields.columns())
                            {
                                *total += sign * amount(&ScalarValue::try_from_array(field, row)?);
                            }
                        }
                        _ => {
                            self.total += sign * amount(&ScalarValue::try_from_array(column, row)?)
                        }
                    }
                }
                _ => {
                    for column in &values[..self.row_arguments.min(values.len())] {
                        self.total += sign * amount(&ScalarValue::try_from_array(column, row)?);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for TestAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.fold(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.fold(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        self.kind == Kind::TestUdaf
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match (&self.kind, &self.output) {
            (Kind::GenericVarArg | Kind::ObjColArg, DataType::List(item)) => {
                ScalarValue::List(ScalarValue::new_list_nullable(&self.kept, item.data_type()))
            }
            (_, DataType::Float64) => ScalarValue::Float64(Some(self.double_total)),
            (_, DataType::Struct(fields)) => {
                let columns = fields
                    .iter()
                    .enumerate()
                    .map(|(i, field)| {
                        let total = ScalarValue::Int64(Some(
                            self.struct_totals.get(i).copied().unwrap_or(0),
                        ));
                        total.cast_to(field.data_type())?.to_array()
                    })
                    .collect::<Result<Vec<_>>>()?;
                ScalarValue::Struct(Arc::new(StructArray::try_new(
                    fields.clone(),
                    columns,
                    None,
                )?))
            }
            _ => ScalarValue::Int64(Some(self.total)),
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.kept.iter().map(ScalarValue::size).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, _states: &[ArrayRef]) -> Result<()> {
        Err(DataFusionError::NotImplemented(
            "the test aggregates do not merge".into(),
        ))
    }
}

/// The test scalar functions, to register with an engine.
pub fn scalar_functions() -> Vec<datafusion::logical_expr::ScalarUDF> {
    use datafusion::logical_expr::ScalarUDF;
    vec![
        ScalarUDF::new_from_impl(BadUdf {
            signature: Signature::any(1, Volatility::Volatile),
            calls: Arc::default(),
        }),
        // Volatile: the laziness checks count calls on rows, which folding literal
        // arguments while planning would make.
        KsqlFunction::volatile_udf("test_udf", test_udf_type, test_udf),
        KsqlFunction::volatile_udf(
            "whencondition",
            |types| evaluated_type(types, DataType::Boolean),
            evaluated,
        ),
        KsqlFunction::volatile_udf(
            "whenresult",
            |types| evaluated_type(types, DataType::Int32),
            evaluated,
        ),
        KsqlFunction::volatile_udf("tostruct", to_struct_type, to_struct),
    ]
}

fn is_null_or_string(t: &DataType) -> bool {
    t == &DataType::Null || is_string(t)
}

/// `TEST_UDF`'s overloads, as ksqlDB's test function has them: each answers the name of
/// the Java method that ksqlDB picks (`doStuffIntString`, …); a STRUCT argument answers
/// its field `A`; without arguments it answers the STRUCT `{A: 'foo'}`.
fn test_udf_type(types: &[DataType]) -> Option<DataType> {
    let string = match types {
        [] => return to_struct_type(&[DataType::Utf8]),
        [DataType::Struct(fields)] => fields.iter().any(|f| f.name() == "A"),
        [DataType::Int32 | DataType::Int64, s] => is_null_or_string(s),
        [DataType::Int64, DataType::Int64, s] => is_null_or_string(s),
        longs => longs.iter().all(|t| t == &DataType::Int64),
    };
    string.then_some(DataType::Utf8)
}

fn test_udf(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let rows = args.first().map_or(1, |a| a.len());
    let method = match args
        .iter()
        .map(|a| a.data_type())
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {
            let field_a: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["foo"]));
            return to_struct(&[field_a], &DataType::Utf8);
        }
        [DataType::Struct(_)] => {
            let field = args[0].as_struct().column_by_name("A").cloned();
            return field.ok_or_else(|| DataFusionError::Execution("no field A".into()));
        }
        [DataType::Int32, _] => "doStuffIntString",
        [DataType::Int64, _] => "doStuffLongString",
        [DataType::Int64, DataType::Int64, s] if is_null_or_string(s) => "doStuffLongLongString",
        _ => "doStuffLongVarargs",
    };
    Ok(Arc::new(arrow::array::StringArray::from(vec![
        method;
        rows
    ])))
}

/// `WHENCONDITION(BOOLEAN answer, BOOLEAN expected)` / `WHENRESULT(INT answer, BOOLEAN
/// expected)`: answer their first argument, and fail when evaluated on a row where the
/// second says they should not have been (the corpus checks CASE evaluates lazily).
fn evaluated_type(types: &[DataType], answer: DataType) -> Option<DataType> {
    match types {
        [first, DataType::Boolean] if first == &answer || first == &DataType::Int64 => Some(answer),
        _ => None,
    }
}

fn evaluated(args: &[ArrayRef], answer: &DataType) -> Result<ArrayRef> {
    let [value, expected] = args else {
        return Err(DataFusionError::Execution("two arguments expected".into()));
    };
    if expected.as_boolean().iter().any(|e| e == Some(false)) {
        return Err(DataFusionError::Execution(
            "evaluated although its branch was not taken".into(),
        ));
    }
    Ok(arrow::compute::cast(value, answer)?)
}

/// `TOSTRUCT(STRING)`: a `STRUCT<A STRING>` holding the string.
fn to_struct_type(types: &[DataType]) -> Option<DataType> {
    match types {
        [t] if is_null_or_string(t) => Some(DataType::Struct(
            vec![Field::new("A", DataType::Utf8, true)].into(),
        )),
        _ => None,
    }
}

fn to_struct(args: &[ArrayRef], _: &DataType) -> Result<ArrayRef> {
    let [value] = args else {
        return Err(DataFusionError::Execution("one argument expected".into()));
    };
    let value = arrow::compute::cast(value, &DataType::Utf8)?;
    Ok(Arc::new(StructArray::new(
        vec![Field::new("A", DataType::Utf8, true)].into(),
        vec![value],
        None,
    )))
}

/// `BAD_UDF`: fails on an INT; on a BOOLEAN fails when true, else answers 0; on a STRING
/// answers NULL every other call (counting rows), else the string.
#[derive(Debug)]
struct BadUdf {
    signature: Signature,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl PartialEq for BadUdf {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for BadUdf {}

impl std::hash::Hash for BadUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "bad_udf".hash(state);
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for BadUdf {
    fn name(&self) -> &str {
        "bad_udf"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t) if is_string(t) => Ok(DataType::Utf8),
            Some(DataType::Int32 | DataType::Boolean) => Ok(DataType::Int32),
            _ => Err(DataFusionError::Plan(
                "Function 'BAD_UDF' does not accept these parameters.".into(),
            )),
        }
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        use std::sync::atomic::Ordering;
        let rows = args.number_rows;
        let Some(input) = args.args.first().map(|a| a.to_array(rows)).transpose()? else {
            return Err(DataFusionError::Execution(
                "BAD_UDF needs an argument".into(),
            ));
        };
        let out: ArrayRef = match input.data_type() {
            DataType::Int32 => {
                return Err(DataFusionError::Execution(
                    "BAD_UDF fails on purpose".into(),
                ));
            }
            DataType::Boolean => {
                if input.as_boolean().iter().any(|v| v == Some(true)) {
                    return Err(DataFusionError::Execution("BAD_UDF fails on true".into()));
                }
                Arc::new(arrow::array::Int32Array::from(vec![0; input.len()]))
            }
            _ => {
                let text = arrow::compute::cast(&input, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                Arc::new(arrow::array::StringArray::from_iter((0..text.len()).map(
                    |row| {
                        let call = self.calls.fetch_add(1, Ordering::Relaxed);
                        (call % 2 == 1 && text.is_valid(row)).then(|| text.value(row).to_string())
                    },
                )))
            }
        };
        Ok(datafusion::logical_expr::ColumnarValue::Array(out))
    }
}

/// The test table functions, to register with an engine (as table functions: each call
/// answers the array of the rows it makes):
///
/// - `TEST_UDTF(x)`: one row, `x` (a DECIMAL as `DECIMAL(30, 10)`);
///   `TEST_UDTF(a, b, …)`: one row per argument, as Java's `String.valueOf` writes it (an
///   array or map argument: its first value).
/// - `THROWING_UDTF(flag)`: fails when `flag` is true, else one row, `flag`.
pub fn table_functions() -> Vec<datafusion::logical_expr::ScalarUDF> {
    vec![
        KsqlFunction::udf("test_udtf", test_udtf_type, test_udtf),
        KsqlFunction::udf(
            "throwing_udtf",
            |types| match types {
                [DataType::Boolean] => Some(list_of(DataType::Boolean)),
                _ => None,
            },
            |args, result| {
                if args[0].as_boolean().iter().any(|v| v == Some(true)) {
                    return Err(DataFusionError::Execution(
                        "THROWING_UDTF fails on true".into(),
                    ));
                }
                one_row_each(&args[0], result)
            },
        ),
    ]
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn test_udtf_type(types: &[DataType]) -> Option<DataType> {
    match types {
        [DataType::Decimal128(..)] => Some(list_of(DataType::Decimal128(30, 10))),
        [single] => Some(list_of(single.clone())),
        [] => None,
        _ => Some(list_of(DataType::Utf8)),
    }
}

/// Each row's value as a one-item array.
fn one_row_each(values: &ArrayRef, result: &DataType) -> Result<ArrayRef> {
    let DataType::List(field) = result else {
        return Err(DataFusionError::Internal(
            "a table function answers arrays".into(),
        ));
    };
    let values = arrow::compute::cast(values, field.data_type())?;
    let offsets = arrow::buffer::OffsetBuffer::from_lengths(vec![1; values.len()]);
    Ok(Arc::new(arrow::array::ListArray::try_new(
        field.clone(),
        offsets,
        values,
        None,
    )?))
}

fn test_udtf(args: &[ArrayRef], result: &DataType) -> Result<ArrayRef> {
    if let [single] = args {
        return one_row_each(single, result);
    }
    let mut out = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
    for row in 0..args[0].len() {
        for arg in args {
            out.values().append_option(java_string(arg, row)?);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

/// Java's `String.valueOf` of a value: `Struct{A=bar}` for a struct, the first value of an
/// array or a map.
fn java_string(array: &ArrayRef, row: usize) -> Result<Option<String>> {
    if array.is_null(row) {
        return Ok(None);
    }
    match array.data_type() {
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            if items.is_empty() {
                return Ok(None);
            }
            java_string(&items, 0)
        }
        DataType::Map(..) => {
            let entries = array.as_map().value(row);
            if entries.is_empty() {
                return Ok(None);
            }
            java_string(entries.column(1), 0)
        }
        DataType::Struct(fields) => {
            let structs = array.as_struct();
            let mut parts = Vec::with_capacity(fields.len());
            for (i, field) in fields.iter().enumerate() {
                let value = java_string(structs.column(i), row)?;
                parts.push(format!(
                    "{}={}",
                    field.name(),
                    value.as_deref().unwrap_or("null")
                ));
            }
            Ok(Some(format!("Struct{{{}}}", parts.join(","))))
        }
        _ => {
            let options = arrow::util::display::FormatOptions::default();
            let formatter =
                arrow::util::display::ArrayFormatter::try_new(array.as_ref(), &options)?;
            Ok(Some(formatter.value(row).to_string()))
        }
    }
}
