//! `${name}` variable substitution, applied to a statement's text before it is parsed.
//!
//! ksqlDB substitutes variables textually, inside string literals too
//! (`WITH (kafka_topic='${topic}')`). Names are case-insensitive, like unquoted identifiers:
//! the lookup is called with the upper-cased name. Entry point: [`substitute_variables`].

use std::borrow::Cow;

use crate::error::{ParseError, Position};

/// Replaces every `${name}` in `sql` with the value `lookup` returns for `NAME`.
///
/// ```
/// # use riffle_grammar::substitute_variables;
/// let sql = substitute_variables("SELECT * FROM ${src};", |name| {
///     (name == "SRC").then(|| "PAGEVIEWS".to_string())
/// })
/// .unwrap();
/// assert_eq!(sql, "SELECT * FROM PAGEVIEWS;");
/// ```
pub fn substitute_variables(
    sql: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'_, str>, ParseError> {
    if !sql.contains("${") {
        return Ok(Cow::Borrowed(sql));
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let mut consumed = 0;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let position = position_of(sql, consumed + start);
        let Some(end) = after.find('}') else {
            return Err(ParseError::new(
                "Unterminated variable reference: '${' needs a closing '}'",
                position,
            ));
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(ParseError::new(
                format!(
                    "'${{{name}}}' is not a valid variable reference: names are letters, digits and '_'"
                ),
                position,
            ));
        }
        let upper = name.to_uppercase();
        match lookup(&upper) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(ParseError::new(
                    format!(
                        "Variable '${{{name}}}' is not defined: define it with \
                         DEFINE {name} = '<value>'; before using it"
                    ),
                    position,
                ));
            }
        }
        let advance = start + 2 + end + 1;
        consumed += advance;
        rest = &rest[advance..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn position_of(sql: &str, byte_offset: usize) -> Position {
    let before = &sql[..byte_offset];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() as u64 + 1;
    Position::new(line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "TOPIC" => Some("orders".into()),
            "FMT" => Some("JSON".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_in_identifiers_and_literals() {
        let sql = "CREATE STREAM s WITH (kafka_topic='${topic}', value_format='${Fmt}');";
        assert_eq!(
            substitute_variables(sql, vars).expect("defined"),
            "CREATE STREAM s WITH (kafka_topic='orders', value_format='JSON');"
        );
    }

    #[test]
    fn text_without_variables_is_borrowed() {
        assert!(matches!(
            substitute_variables("SELECT 1;", vars),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn undefined_and_malformed_references_are_errors_with_positions() {
        let error = substitute_variables("SELECT\n  ${nope};", vars).expect_err("undefined");
        assert_eq!(error.position, Position::new(2, 3));
        assert!(error.message.contains("'${nope}' is not defined"));
        let error = substitute_variables("SELECT ${a b};", vars).expect_err("malformed");
        assert!(error.message.contains("not a valid variable reference"));
        let error = substitute_variables("SELECT ${a", vars).expect_err("unterminated");
        assert_eq!(error.position, Position::new(1, 8));
    }
}
