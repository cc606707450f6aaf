//! ksqlDB's functions as DataFusion UDFs.
//!
//! Where a DataFusion built-in has exactly ksqlDB's semantics it is registered under the
//! ksqlDB name; the rest are our own implementations (issue 9 completes the library).
//! DataFusion looks functions up by lower-case name. Entry point: [`register`].

mod aggregates;
pub mod array_constructor;
mod bytes;
pub mod catalogue;
mod dates;
#[cfg(test)]
mod documented_examples;
mod json;
pub mod lambdas;
mod math;
mod misc;
mod numeric_aggregates;
mod strings;
pub mod table;
#[cfg(test)]
mod test_support;
pub mod time_arithmetic;
pub mod time_format;
pub mod udf;
mod urls;

use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::ScalarUDF;

/// Registers ksqlDB's function names with a session.
/// Functions the planner writes for ksqlDB's syntax (`ARRAY[…]`, `STRUCT()`, a lambda's
/// operands), not called by name: `SHOW FUNCTIONS` leaves them out.
pub const PLANNER_ONLY: [&str; 3] = [array_constructor::NAME, lambdas::OPERAND, EMPTY_STRUCT];

/// The planner's name for `STRUCT()`, a struct without fields.
pub const EMPTY_STRUCT: &str = "empty_struct";

pub fn register(context: &SessionContext) {
    for (udf, aliases) in builtin_aliases() {
        context.register_udf(ScalarUDF::clone(&udf).with_aliases(aliases));
    }
    for udf in bytes::functions()
        .into_iter()
        .chain(array_constructor::functions())
        .chain([lambdas::operand_function()])
        .chain(misc::functions())
        .chain(dates::functions())
        .chain(table::functions())
        .chain(time_arithmetic::functions())
        .chain(strings::functions())
        .chain(json::functions())
        .chain(math::functions())
        .chain(urls::functions())
    {
        context.register_udf(udf);
    }
    for function in lambdas::functions() {
        context.register_higher_order_function(function);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ksqldb_scalar_function_is_registered() {
        let scalars: Vec<String> = catalogue::CATALOGUE
            .iter()
            .map(|f| f.name.to_lowercase())
            .filter(|name| !table::NAMES.contains(&name.as_str()))
            .collect();
        assert_eq!(scalars.len(), 129);
        let context = SessionContext::new();
        register(&context);
        let state = context.state();
        let missing: Vec<&String> = scalars
            .iter()
            .filter(|name| !state.scalar_functions().contains_key(*name))
            .filter(|name| !state.higher_order_functions().contains_key(*name))
            .collect();
        assert!(missing.is_empty(), "not registered: {missing:?}");
    }

    #[test]
    fn every_ksqldb_aggregate_function_is_registered() {
        let context = SessionContext::new();
        register(&context);
        let state = context.state();
        let missing: Vec<&str> = catalogue::AGGREGATES
            .iter()
            .map(|f| f.name)
            .filter(|name| {
                !state
                    .aggregate_functions()
                    .contains_key(&name.to_lowercase())
            })
            .collect();
        assert!(missing.is_empty(), "not registered: {missing:?}");
    }
}
