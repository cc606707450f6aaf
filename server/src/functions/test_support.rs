//! Unit-test helpers: evaluating a function call through a session where ksqlDB's functions
//! are registered, as a query would, and reading the value back as text.

use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::context::SessionContext;

/// `SELECT <expr>` on one row, through DataFusion's SQL: the value's display text (`NULL`
/// for NULL, `[a, b]` for arrays, `{k: v}` for maps), or the planning or execution error.
pub fn try_eval(expr: &str) -> Result<String, String> {
    try_query(&format!("SELECT {expr}"))
}

/// An aggregate call over rows of one column `x` (`rows` as SQL writes them:
/// `(1), (NULL), (3)`), as [`try_eval`] answers.
pub fn try_aggregate(call: &str, rows: &str) -> Result<String, String> {
    try_query(&format!("SELECT {call} FROM (VALUES {rows}) AS t(x)"))
}

/// The first value of a query's first column.
fn try_query(sql: &str) -> Result<String, String> {
    // DataFusion's Databricks dialect reads lambdas (`x -> x + 1`); ksqlDB's grammar writes
    // them `x => x + 1` and the planner rewrites them to the same form.
    let config = datafusion::prelude::SessionConfig::new()
        .set_str("datafusion.sql_parser.dialect", "databricks");
    let context = SessionContext::new_with_config(config);
    super::register(&context);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    let batches = runtime
        .block_on(async { context.sql(sql).await?.collect().await })
        // As the planner words errors (DataFusion's refusals in ksqlDB's words).
        .map_err(|e| crate::plan::PlanError::from(e).to_string())?;
    let batch = batches.first().ok_or("no rows")?;
    let options = FormatOptions::default().with_null("NULL");
    let formatter =
        ArrayFormatter::try_new(batch.column(0).as_ref(), &options).map_err(|e| e.to_string())?;
    Ok(formatter.value(0).to_string())
}

/// [`try_eval`] where the call must succeed.
pub fn eval(expr: &str) -> String {
    try_eval(expr).unwrap_or_else(|error| panic!("{expr} failed: {error}"))
}

/// The planning error of a call ksqlDB refuses.
pub fn eval_error(expr: &str) -> String {
    match try_eval(expr) {
        Ok(value) => panic!("{expr} should fail but gave {value}"),
        Err(error) => error,
    }
}
