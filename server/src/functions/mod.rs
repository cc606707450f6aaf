//! ksqlDB's functions as DataFusion UDFs.
//!
//! Where a DataFusion built-in has exactly ksqlDB's semantics it is registered under the
//! ksqlDB name; the rest are our own implementations (issue 9 completes the library).
//! DataFusion looks functions up by lower-case name. Entry point: [`register`].

mod aggregates;
mod bytes;
mod dates;
mod misc;
mod numeric_aggregates;
pub mod time_format;
pub mod udf;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::ScalarUDF;

/// Registers ksqlDB's function names with a session.
pub fn register(context: &SessionContext) {
    for (udf, aliases) in builtin_aliases() {
        context.register_udf(ScalarUDF::clone(&udf).with_aliases(aliases));
    }
    for udf in bytes::functions()
        .into_iter()
        .chain(misc::functions())
        .chain(dates::functions())
    {
        context.register_udf(udf);
    }
    for udaf in aggregates::functions()
        .into_iter()
        .chain(numeric_aggregates::functions())
    {
        context.register_udaf(udaf);
    }
}

/// DataFusion built-ins that ksqlDB knows under another name.
fn builtin_aliases() -> Vec<(std::sync::Arc<ScalarUDF>, Vec<&'static str>)> {
    use datafusion::functions::string;
    vec![
        (string::upper(), vec!["ucase"]),
        (string::lower(), vec!["lcase"]),
    ]
}
