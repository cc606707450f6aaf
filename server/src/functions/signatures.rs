//! ksqlDB's overload check against the documented signatures of [`super::catalogue`]:
//! whether argument types are ones a signature (`"left ARRAY<T>, right ARRAY<T>"`) takes.
//!
//! As ksqlDB resolves a call: a number widens to a wider number (INT → BIGINT → DECIMAL →
//! DOUBLE) and nothing else converts; NULL fits any parameter; a type variable (`T`, `K`,
//! `V`) stands for the first type it meets, and its later uses take that type or, for
//! numbers, another number (the call then runs on their common type).

use arrow::datatypes::DataType;

use crate::types::SqlType;

/// Whether one of a function's documented signatures takes these argument types.
pub fn accepted_by_any(signatures: &[(&str, &str)], args: &[DataType]) -> bool {
    signatures
        .iter()
        .any(|(parameters, _)| accepts(parameters, args))
}

/// Whether a documented argument list (`"separator STRING, inputs STRING..."`, a last
/// parameter ending in `...` repeats any number of times) takes these argument types.
pub fn accepts(parameters: &str, args: &[DataType]) -> bool {
    let parameters: Vec<&str> = split_parameters(parameters)
        .into_iter()
        .map(|parameter| parameter.split_once(' ').map_or(parameter, |(_, ty)| ty))
        .collect();
    let (fixed, variadic) = match parameters.split_last() {
        Some((last, fixed)) if last.ends_with("...") => (fixed, last.strip_suffix("...")),
        _ => (parameters.as_slice(), None),
    };
    if args.len() < fixed.len() || (variadic.is_none() && args.len() > fixed.len()) {
        return false;
    }
    let mut bindings = Bindings::default();
    args.iter().enumerate().all(|(at, arg)| {
        let Some(pattern) = fixed.get(at).copied().or(variadic) else {
            return false;
        };
        match (parse(pattern), SqlType::from_arrow(arg)) {
            (Some(pattern), Some(arg)) => pattern.matches(&arg, &mut bindings),
            // NULL fits anything; a type ksqlDB has no name for is DataFusion's to judge.
            _ => true,
        }
    })
}

/// A documented argument list's parameters (`"map MAP<STRING, T>, key STRING"`), split at
/// the commas outside `<…>`.
pub fn split_parameters(parameters: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in parameters.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(parameters[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    let last = parameters[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

/// A parameter's type as documented.
#[derive(Debug, PartialEq)]
enum Pattern<'a> {
    /// A type variable: `T`, `K`, `V`, …
    Variable(&'a str),
    /// `DECIMAL` without precision: any decimal.
    AnyDecimal,
    Exact(SqlType),
    Array(Box<Pattern<'a>>),
    Map(Box<Pattern<'a>>, Box<Pattern<'a>>),
}

/// What each type variable stands for so far.
#[derive(Default)]
struct Bindings<'a>(Vec<(&'a str, SqlType)>);

fn parse(text: &str) -> Option<Pattern<'_>> {
    let text = text.trim();
    if let Some(element) = text
        .strip_prefix("ARRAY<")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        return Some(Pattern::Array(Box::new(parse(element)?)));
    }
    if let Some(entries) = text
        .strip_prefix("MAP<")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        let (key, value) = match split_parameters(entries)[..] {
            [key, value] => (key, value),
            _ => return None,
        };
        return Some(Pattern::Map(Box::new(parse(key)?), Box::new(parse(value)?)));
    }
    Some(match text {
        "DECIMAL" => Pattern::AnyDecimal,
        "INT" | "INTEGER" => Pattern::Exact(SqlType::Integer),
        "BIGINT" => Pattern::Exact(SqlType::BigInt),
        "DOUBLE" => Pattern::Exact(SqlType::Double),
        "STRING" | "VARCHAR" => Pattern::Exact(SqlType::String),
        "BYTES" => Pattern::Exact(SqlType::Bytes),
        "BOOLEAN" => Pattern::Exact(SqlType::Boolean),
        "DATE" => Pattern::Exact(SqlType::Date),
        "TIME" => Pattern::Exact(SqlType::Time),
        "TIMESTAMP" => Pattern::Exact(SqlType::Timestamp),
        variable if variable.len() == 1 && variable.chars().all(|c| c.is_ascii_uppercase()) => {
            Pattern::Variable(variable)
        }
        _ => return None,
    })
}

impl<'a> Pattern<'a> {
    fn matches(&self, arg: &SqlType, bindings: &mut Bindings<'a>) -> bool {
        match (self, arg) {
            (Pattern::Variable(name), arg) => match bindings.0.iter().find(|(n, _)| n == name) {
                Some((_, bound)) => same_kind(bound, arg),
                None => {
                    bindings.0.push((name, arg.clone()));
                    true
                }
            },
            (Pattern::AnyDecimal, arg) => widens_to(arg, 2),
            (Pattern::Exact(parameter), arg) => match number_rank(parameter) {
                Some(rank) => widens_to(arg, rank),
                None => parameter == arg,
            },
            (Pattern::Array(element), SqlType::Array(arg)) => element.matches(arg, bindings),
            (Pattern::Map(key, value), SqlType::Map(arg_key, arg_value)) => {
                key.matches(arg_key, bindings) && value.matches(arg_value, bindings)
            }
            _ => false,
        }
    }
}

/// A number's place in ksqlDB's widening order; `None` for other types.
fn number_rank(ty: &SqlType) -> Option<u8> {
    match ty {
        SqlType::Integer => Some(0),
        SqlType::BigInt => Some(1),
        SqlType::Decimal { .. } => Some(2),
        SqlType::Double => Some(3),
        _ => None,
    }
}

/// Whether a value of `ty` widens to the number of rank `rank` (or is one).
fn widens_to(ty: &SqlType, rank: u8) -> bool {
    number_rank(ty).is_some_and(|own| own <= rank)
}

/// Whether two uses of one type variable agree: the same type (any decimals alike), or
/// two numbers, element by element for arrays and maps.
fn same_kind(a: &SqlType, b: &SqlType) -> bool {
    match (a, b) {
        (SqlType::Array(a), SqlType::Array(b)) => same_kind(a, b),
        (SqlType::Map(ak, av), SqlType::Map(bk, bv)) => same_kind(ak, bk) && same_kind(av, bv),
        _ if number_rank(a).is_some() && number_rank(b).is_some() => true,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(ty: SqlType) -> DataType {
        ty.to_arrow()
    }

    fn array(element: SqlType) -> SqlType {
        SqlType::Array(Box::new(element))
    }

    #[test]
    fn numbers_widen_and_nothing_else_converts() {
        let double = "value DOUBLE";
        assert!(accepts(double, &[sql(SqlType::Integer)]));
        assert!(accepts(double, &[sql(SqlType::BigInt)]));
        assert!(accepts(
            double,
            &[sql(SqlType::decimal(4, 2).expect("a decimal type"))]
        ));
        assert!(accepts(double, &[DataType::Null]));
        assert!(!accepts(double, &[sql(SqlType::String)]));
        assert!(!accepts("position INT", &[sql(SqlType::BigInt)]));
        assert!(!accepts("input STRING", &[sql(SqlType::Integer)]));
        assert!(!accepts(double, &[]));
        assert!(!accepts(
            double,
            &[sql(SqlType::Double), sql(SqlType::Double)]
        ));
    }

    #[test]
    fn a_repeated_last_parameter_takes_any_number_of_arguments() {
        let concat_ws = "separator STRING, inputs STRING...";
        let string = sql(SqlType::String);
        assert!(accepts(concat_ws, std::slice::from_ref(&string)));
        assert!(accepts(
            concat_ws,
            &[string.clone(), string.clone(), string.clone()]
        ));
        assert!(!accepts(
            concat_ws,
            &[sql(SqlType::Integer), string.clone()]
        ));
        assert!(!accepts(
            concat_ws,
            &[string.clone(), sql(SqlType::Integer)]
        ));
    }

    #[test]
    fn a_type_variable_takes_the_type_it_first_meets() {
        let contains = "array ARRAY<T>, val T";
        assert!(accepts(
            contains,
            &[sql(array(SqlType::String)), sql(SqlType::String)]
        ));
        assert!(accepts(
            contains,
            &[sql(array(SqlType::BigInt)), sql(SqlType::Integer)]
        ));
        assert!(accepts(
            contains,
            &[sql(array(SqlType::String)), DataType::Null]
        ));
        assert!(!accepts(
            contains,
            &[sql(array(SqlType::String)), sql(SqlType::Integer)]
        ));
        assert!(!accepts(
            contains,
            &[sql(SqlType::String), sql(SqlType::String)]
        ));
        let coalesce = "first T, others T...";
        assert!(accepts(
            coalesce,
            &[sql(SqlType::BigInt), sql(SqlType::Integer)]
        ));
        assert!(!accepts(
            coalesce,
            &[sql(SqlType::Integer), sql(SqlType::String)]
        ));
        assert!(!accepts(
            coalesce,
            &[sql(array(SqlType::Integer)), sql(array(SqlType::String))]
        ));
        let map_keys = "map MAP<STRING, T>";
        let map = SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::Double));
        assert!(accepts(map_keys, &[sql(map)]));
        assert!(!accepts(map_keys, &[sql(array(SqlType::String))]));
    }

    #[test]
    fn parameters_split_outside_angle_brackets() {
        assert_eq!(
            split_parameters("map MAP<STRING, T>, key STRING"),
            vec!["map MAP<STRING, T>", "key STRING"]
        );
        assert!(split_parameters("").is_empty());
    }
}
