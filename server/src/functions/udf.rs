//! [`KsqlFunction`]: one ksqlDB scalar function as a DataFusion UDF, from two plain
//! functions — its return type (which also refuses argument types ksqlDB does not accept)
//! and its evaluation over whole argument arrays.

use std::hash::{Hash, Hasher};

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::types::SqlType;

pub type ReturnType = fn(&[DataType]) -> Option<DataType>;
pub type Invoke = fn(&[ArrayRef], &DataType) -> Result<ArrayRef, DataFusionError>;

#[derive(Debug)]
pub struct KsqlFunction {
    name: &'static str,
    signature: Signature,
    return_type: ReturnType,
    invoke: Invoke,
}

impl KsqlFunction {
    /// `return_type` answers `None` for argument types the function does not take.
    pub fn udf(name: &'static str, return_type: ReturnType, invoke: Invoke) -> ScalarUDF {
        Self::with_volatility(name, return_type, invoke, Volatility::Immutable)
    }

    /// A function whose every call counts: it is never folded into a constant while
    /// planning, and runs once per row even on constant arguments.
    pub fn volatile_udf(name: &'static str, return_type: ReturnType, invoke: Invoke) -> ScalarUDF {
        Self::with_volatility(name, return_type, invoke, Volatility::Volatile)
    }

    fn with_volatility(
        name: &'static str,
        return_type: ReturnType,
        invoke: Invoke,
        volatility: Volatility,
    ) -> ScalarUDF {
        use datafusion::logical_expr::TypeSignature;
        // Any arguments, none included: `return_type` says which it takes.
        let signature = Signature::one_of(
            vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
            volatility,
        );
        ScalarUDF::new_from_impl(KsqlFunction {
            name,
            signature,
            return_type,
            invoke,
        })
    }
}

impl PartialEq for KsqlFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for KsqlFunction {}

impl Hash for KsqlFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for KsqlFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        (self.return_type)(arg_types).ok_or_else(|| refused_parameters(self.name, arg_types))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let all_scalars = self.signature.volatility != Volatility::Volatile
            && args
                .args
                .iter()
                .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalars { 1 } else { args.number_rows };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>, _>>()?;
        let out = (self.invoke)(&arrays, args.return_type())?;
        // Without arguments a function answers one value, the same for every row.
        if all_scalars || arrays.is_empty() {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// ksqlDB's error for a function called with argument types it has no overload for:
/// `Function 'SUM' does not accept parameters (STRING).` (`name` as the message shows it)
pub fn refused_parameters(name: &str, arg_types: &[DataType]) -> DataFusionError {
    let names: Vec<String> = arg_types
        .iter()
        .map(|t| match SqlType::from_arrow(t) {
            Some(ty) => ty.to_string(),
            None if *t == DataType::Null => "NULL".into(),
            None => t.to_string(),
        })
        .collect();
    let mut message = format!(
        "Function '{}' does not accept parameters ({}).",
        name,
        names.join(", ")
    );
    // ksqlDB lists the forms the function does take: `explode(ARRAY<T> list)`.
    if let Some(documented) = super::catalogue::documented(name) {
        message.push_str("\nValid alternatives are:");
        for (arguments, _) in documented.signatures {
            let arguments: Vec<String> = super::signatures::split_parameters(arguments)
                .into_iter()
                .map(|argument| match argument.split_once(' ') {
                    Some((name, ty)) => format!("{ty} {name}"),
                    None => argument.to_string(),
                })
                .collect();
            message.push_str(&format!(
                "\n{}({})",
                name.to_lowercase(),
                arguments.join(", ")
            ));
        }
    }
    DataFusionError::Plan(message)
}

/// DataFusion's refusal of a call to one of its own functions (`… No function matches the
/// given name and argument types 'cos(Utf8)' …`) in ksqlDB's words, as
/// [`refused_parameters`] writes them, and ours without DataFusion's wrapping (`Function
/// 'concat_ws' user-defined coercion failed with: …`); `None` for any other message.
pub fn refusal_in_ksql_words(message: &str) -> Option<String> {
    // Ours, inside DataFusion's account of a failed coercion: the refusal alone.
    if let Some(at) = message.find(" does not accept parameters (") {
        let start = message[..at].rfind("Function '")?;
        return Some(message[start..].to_string());
    }
    let call = message
        .split("No function matches the given name and argument types '")
        .nth(1)?;
    let call = &call[..call.find("'.")?];
    let (name, arguments) = call.split_once('(')?;
    let arguments = arguments.strip_suffix(')')?;
    // The argument types, split at the commas outside parentheses.
    let mut types = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in arguments.char_indices() {
        match c {
            '(' | '<' | '[' | '{' => depth += 1,
            ')' | '>' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                types.push(arguments[start..at].trim().parse::<DataType>().ok()?);
                start = at + 1;
            }
            _ => {}
        }
    }
    if !arguments.trim().is_empty() {
        types.push(arguments[start..].trim().parse::<DataType>().ok()?);
    }
    Some(refused_parameters(name, &types).strip_backtrace())
}

/// Whether a type is one of Arrow's string types.
pub fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// Whether a type is one of Arrow's binary types.
pub fn is_binary(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null
    )
}

/// Whether a type is a ksqlDB number (INT, BIGINT, DOUBLE, DECIMAL).
pub fn is_number(data_type: &DataType) -> bool {
    data_type.is_numeric() || *data_type == DataType::Null
}

/// An argument as plain UTF-8 strings.
pub fn strings(array: &ArrayRef) -> Result<StringArray, DataFusionError> {
    Ok(arrow::compute::cast(array, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

/// An integer argument as BIGINT values.
pub fn integers(array: &ArrayRef) -> Result<arrow::array::Int64Array, DataFusionError> {
    Ok(arrow::compute::cast(array, &DataType::Int64)?
        .as_primitive::<arrow::datatypes::Int64Type>()
        .clone())
}

/// A number argument as DOUBLE values.
pub fn doubles(array: &ArrayRef) -> Result<arrow::array::Float64Array, DataFusionError> {
    Ok(arrow::compute::cast(array, &DataType::Float64)?
        .as_primitive::<arrow::datatypes::Float64Type>()
        .clone())
}

/// The type `ARRAY<STRING>`.
pub fn string_list() -> DataType {
    crate::types::SqlType::Array(Box::new(crate::types::SqlType::String)).to_arrow()
}

/// A constant argument (an encoding name, a flag): its first non-null value.
pub fn constant_string(array: &ArrayRef) -> Result<Option<String>, DataFusionError> {
    let strings = strings(array)?;
    Ok(strings.iter().flatten().next().map(str::to_string))
}

/// An error that fails a whole call (a bad constant argument): every row of the batch
/// is then evaluated alone, and the failing column is NULL with a processing-log entry.
pub fn failure(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(message.into())
}

thread_local! {
    /// Failures on single rows, waiting for the query that evaluates the expression to
    /// write them to the processing log. Evaluation runs on one thread from start to end.
    static ROW_FAILURES: std::cell::RefCell<Vec<(usize, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A function failed on one row: its value there is NULL (the caller returns `None`) and
/// the processing log will say why.
pub fn row_failure<T>(row: usize, message: impl Into<String>) -> Option<T> {
    let message = message.into();
    ROW_FAILURES.with(|failures| failures.borrow_mut().push((row, message)));
    None
}

/// Takes the row failures recorded on this thread since the last call.
pub fn take_row_failures() -> Vec<(usize, String)> {
    ROW_FAILURES.with(|failures| std::mem::take(&mut *failures.borrow_mut()))
}

/// Null for a row where any argument is null, a bare `NULL` (an argument of type NULL,
/// whose array has no null buffer: Arrow's `is_null` says false for it) included.
pub fn any_null(arrays: &[ArrayRef], row: usize) -> bool {
    arrays
        .iter()
        .any(|a| a.is_null(row) || a.data_type().is_null())
}

/// `any_null` for every row at once: the rows where any argument is null (`None`: none
/// is), for functions that compute every row and mark the NULL ones after.
pub fn null_rows(arrays: &[ArrayRef]) -> Option<NullBuffer> {
    arrays.iter().fold(None, |nulls, array| {
        NullBuffer::union(nulls.as_ref(), array.logical_nulls().as_ref())
    })
}
