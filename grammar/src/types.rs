//! ksqlDB column types: [`parse_type`] reads them into sqlparser's `DataType` (the form
//! DataFusion's planner consumes) and [`KsqlType`] prints them back as ksqlDB writes them.
//!
//! ```sql
//! BOOLEAN | INT | INTEGER | BIGINT | DOUBLE | DECIMAL(p, s) | STRING | VARCHAR | BYTES
//! | DATE | TIME | TIMESTAMP | ARRAY<T> | MAP<K, V> | STRUCT<name T, …> | type_alias
//! ```

use std::fmt;

use sqlparser::ast::{
    ArrayElemTypeDef, DataType, ExactNumberInfo, Ident, ObjectName, StructBracketKind, StructField,
    TimezoneInfo,
};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// Types nest at most this deep; deeper input is rejected rather than overflowing the stack.
const MAX_TYPE_DEPTH: usize = 64;

/// Parses a ksqlDB type at the parser's current token.
///
/// `INTEGER` reads as `INT` and `VARCHAR` as `STRING` (ksqlDB treats them as the same type).
/// Any other single name is a type alias from `CREATE TYPE`, left for the catalog to resolve.
pub fn parse_type(parser: &mut Parser) -> Result<DataType, ParserError> {
    let mut reader = TypeReader {
        parser,
        pending_closers: 0,
    };
    let data_type = reader.parse(0)?;
    if reader.pending_closers > 0 {
        let found = reader.parser.get_current_token().clone();
        return reader.parser.expected("the end of the type", found);
    }
    Ok(data_type)
}

struct TypeReader<'p, 'a> {
    parser: &'p mut Parser<'a>,
    /// `>>` closes two type arguments at once: the second closer is owed to the enclosing type.
    pending_closers: u32,
}

impl TypeReader<'_, '_> {
    fn parse(&mut self, depth: usize) -> Result<DataType, ParserError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(ParserError::RecursionLimitExceeded);
        }
        let token = self.parser.next_token();
        let word = match &token.token {
            Token::Word(word) => word.clone(),
            _ => return self.parser.expected("a type", token),
        };
        if word.quote_style.is_some() {
            return Ok(custom_type(word.into_ident(token.span)));
        }
        if word.keyword == Keyword::NULL {
            // ksqlDB has no NULL type: a literal NULL takes its type from a CAST.
            return self.parser.expected("a type", token);
        }
        let data_type = match word.value.to_ascii_uppercase().as_str() {
            "BOOLEAN" => DataType::Boolean,
            "INT" | "INTEGER" => DataType::Int(None),
            "BIGINT" => DataType::BigInt(None),
            "DOUBLE" => DataType::Double(ExactNumberInfo::None),
            "STRING" | "VARCHAR" => DataType::String(None),
            "BYTES" => DataType::Bytes(None),
            "DATE" => DataType::Date,
            "TIME" => DataType::Time(None, TimezoneInfo::None),
            "TIMESTAMP" => DataType::Timestamp(None, TimezoneInfo::None),
            "DECIMAL" => {
                self.parser.expect_token(&Token::LParen)?;
                let precision = self.parser.parse_literal_uint()?;
                self.parser.expect_token(&Token::Comma)?;
                let scale = self.parser.parse_literal_uint()?;
                self.parser.expect_token(&Token::RParen)?;
                DataType::Decimal(ExactNumberInfo::PrecisionAndScale(precision, scale as i64))
            }
            "ARRAY" => {
                self.parser.expect_token(&Token::Lt)?;
                let element = self.parse(depth + 1)?;
                self.expect_closer()?;
                DataType::Array(ArrayElemTypeDef::AngleBracket(Box::new(element)))
            }
            "MAP" => self.parse_map(depth)?,
            "STRUCT" => self.parse_struct(depth)?,
            _ => custom_type(word.into_ident(token.span)),
        };
        Ok(data_type)
    }

    /// `MAP<K, V>`, or `MAP(K, V)` which is how sqlparser prints a map type inside `CAST`.
    fn parse_map(&mut self, depth: usize) -> Result<DataType, ParserError> {
        let parenthesized = self.parser.consume_token(&Token::LParen);
        if !parenthesized {
            self.parser.expect_token(&Token::Lt)?;
        }
        let key = self.parse(depth + 1)?;
        if self.pending_closers > 0 {
            let found = self.parser.get_current_token().clone();
            return self.parser.expected("',' and the map's value type", found);
        }
        self.parser.expect_token(&Token::Comma)?;
        let value = self.parse(depth + 1)?;
        if parenthesized {
            if self.pending_closers > 0 {
                let found = self.parser.get_current_token().clone();
                return self.parser.expected(")", found);
            }
            self.parser.expect_token(&Token::RParen)?;
        } else {
            self.expect_closer()?;
        }
        Ok(DataType::Map(Box::new(key), Box::new(value)))
    }

    /// `STRUCT<name T, …>`; `STRUCT<>` and a bare `STRUCT` are the empty struct.
    fn parse_struct(&mut self, depth: usize) -> Result<DataType, ParserError> {
        let mut fields = Vec::new();
        // `STRUCT<>` arrives as the `<>` operator token.
        if self.parser.consume_token(&Token::Neq) {
            return Ok(DataType::Struct(fields, StructBracketKind::AngleBrackets));
        }
        if !self.parser.consume_token(&Token::Lt) || self.parser.consume_token(&Token::Gt) {
            return Ok(DataType::Struct(fields, StructBracketKind::AngleBrackets));
        }
        if self.parser.consume_token(&Token::ShiftRight) {
            // `STRUCT<>>`: the empty struct, closing the enclosing type too.
            self.pending_closers += 1;
            return Ok(DataType::Struct(fields, StructBracketKind::AngleBrackets));
        }
        loop {
            let field_name = self.parser.parse_identifier()?;
            let field_type = self.parse(depth + 1)?;
            fields.push(StructField {
                field_name: Some(field_name),
                field_type,
                options: None,
            });
            if self.pending_closers == 0 && self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.expect_closer()?;
            break;
        }
        Ok(DataType::Struct(fields, StructBracketKind::AngleBrackets))
    }

    fn expect_closer(&mut self) -> Result<(), ParserError> {
        if self.pending_closers > 0 {
            self.pending_closers -= 1;
            return Ok(());
        }
        let token = self.parser.next_token();
        match token.token {
            Token::Gt => Ok(()),
            Token::ShiftRight => {
                self.pending_closers += 1;
                Ok(())
            }
            _ => self.parser.expected(">", token),
        }
    }
}

fn custom_type(name: Ident) -> DataType {
    DataType::Custom(ObjectName::from(vec![name]), vec![])
}

/// Prints a type the way ksqlDB writes it: `MAP<STRING, INT>`, `STRUCT<A INT, B STRING>`,
/// `DECIMAL(4, 2)`.
#[derive(Debug, Clone, Copy)]
pub struct KsqlType<'a>(pub &'a DataType);

impl fmt::Display for KsqlType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            DataType::Boolean => f.write_str("BOOLEAN"),
            DataType::Int(_) | DataType::Integer(_) => f.write_str("INT"),
            DataType::BigInt(_) => f.write_str("BIGINT"),
            DataType::Double(_) => f.write_str("DOUBLE"),
            DataType::String(_) | DataType::Varchar(_) => f.write_str("STRING"),
            DataType::Bytes(_) => f.write_str("BYTES"),
            DataType::Date => f.write_str("DATE"),
            DataType::Time(..) => f.write_str("TIME"),
            DataType::Timestamp(..) => f.write_str("TIMESTAMP"),
            DataType::Decimal(ExactNumberInfo::PrecisionAndScale(precision, scale)) => {
                write!(f, "DECIMAL({precision}, {scale})")
            }
            DataType::Array(ArrayElemTypeDef::AngleBracket(element)) => {
                write!(f, "ARRAY<{}>", KsqlType(element))
            }
            DataType::Map(key, value) => write!(f, "MAP<{}, {}>", KsqlType(key), KsqlType(value)),
            DataType::Struct(fields, _) => {
                f.write_str("STRUCT<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if let Some(name) = &field.field_name {
                        write!(f, "{name} ")?;
                    }
                    write!(f, "{}", KsqlType(&field.field_type))?;
                }
                f.write_str(">")
            }
            other => write!(f, "{other}"),
        }
    }
}
