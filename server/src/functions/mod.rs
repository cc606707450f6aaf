//! ksqlDB's functions as DataFusion UDFs.
//!
//! Where a DataFusion built-in has exactly ksqlDB's semantics it is registered under the
//! ksqlDB name, taking only the argument types ksqlDB takes ([`builtins`]); the rest are
//! our own implementations.
//! DataFusion looks functions up by lower-case name. Entry point: [`register`].

mod aggregates;
pub mod array_constructor;
mod builtins;
mod bytes;
pub mod catalogue;
mod dates;
pub mod decimal_cast;
#[cfg(test)]
mod documented_examples;
mod json;
pub mod lambdas;
mod math;
mod misc;
mod numeric_aggregates;
mod signatures;
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

pub use math::extreme_value_scale;

/// Functions the planner writes for ksqlDB's syntax (`ARRAY[…]`, `STRUCT()`, a lambda's
/// operands, `CAST(x AS DECIMAL(p, s))`), not called by name: `SHOW FUNCTIONS` leaves them out.
pub const PLANNER_ONLY: [&str; 4] = [
    array_constructor::NAME,
    lambdas::OPERAND,
    EMPTY_STRUCT,
    decimal_cast::NAME,
];

/// The planner's name for `STRUCT()`, a struct without fields.
pub const EMPTY_STRUCT: &str = "empty_struct";

/// Registers ksqlDB's function names with a session.
pub fn register(context: &SessionContext) {
    for udf in builtins::functions()
        .into_iter()
        .chain(own_scalar_functions())
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

/// The scalar functions Riffle implements itself.
fn own_scalar_functions() -> Vec<ScalarUDF> {
    bytes::functions()
        .into_iter()
        .chain(array_constructor::functions())
        .chain(decimal_cast::functions())
        .chain([lambdas::operand_function()])
        .chain(misc::functions())
        .chain(dates::functions())
        .chain(table::functions())
        .chain(time_arithmetic::functions())
        .chain(strings::functions())
        .chain(json::functions())
        .chain(math::functions())
        .chain(urls::functions())
        .collect()
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

    /// No ksqlDB function is left to a DataFusion built-in that has not been checked
    /// against ksqlDB's signatures (registered under its own name, it would take any
    /// argument types DataFusion converts).
    #[test]
    fn each_function_is_ours_or_a_builtin_checked_against_ksqldbs_signatures() {
        let names = |udfs: Vec<ScalarUDF>| -> Vec<String> {
            udfs.iter().map(|f| f.name().to_string()).collect()
        };
        let own = names(own_scalar_functions());
        let checked = names(builtins::functions());
        let both: Vec<&String> = checked.iter().filter(|n| own.contains(n)).collect();
        assert!(both.is_empty(), "ours and DataFusion's: {both:?}");
        let lambdas: Vec<String> = lambdas::functions()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let neither: Vec<String> = catalogue::CATALOGUE
            .iter()
            .map(|f| f.name.to_lowercase())
            .filter(|name| !table::NAMES.contains(&name.as_str()))
            .filter(|name| !own.contains(name) && !checked.contains(name))
            .filter(|name| !lambdas.contains(name))
            .collect();
        assert!(
            neither.is_empty(),
            "left to DataFusion unchecked: {neither:?}"
        );
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
