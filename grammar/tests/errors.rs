//! Negative tests: for each statement form, a wrong statement gives a message naming the
//! problem and the line and column of the offending token.

use riffle_grammar::{Position, parse_script, parse_statement};

/// Asserts that `sql` fails at `line:column` with a message containing `message`.
#[track_caller]
fn fails_with(sql: &str, line: u64, column: u64, message: &str) {
    let error = match parse_statement(sql) {
        Ok(statement) => panic!("{sql} parsed as {statement}"),
        Err(error) => error,
    };
    assert!(
        error.message.contains(message),
        "{sql}\nmessage {:?} does not contain {message:?}",
        error.message
    );
    assert_eq!(
        error.position,
        Position::new(line, column),
        "{sql}: {error}"
    );
}

#[test]
fn select_errors() {
    fails_with(
        "SELECT * FROM s PARTITION BY () EMIT CHANGES;",
        1,
        30,
        "PARTITION BY requires at least one expression",
    );
    fails_with(
        "SELECT * FROM s PARTITION BY name AND age EMIT CHANGES;",
        1,
        35,
        "Syntax Error",
    );
    fails_with(
        "SELECT COUNT(*) FROM s GROUP BY name AND age EMIT CHANGES;",
        1,
        38,
        "Syntax Error",
    );
    fails_with(
        "SELECT COUNT(*) FROM s GROUP BY a, (b, c) EMIT CHANGES;",
        1,
        38,
        "a parenthesized list of expressions is only the whole GROUP BY",
    );
    fails_with(
        "SELECT * FROM;",
        1,
        14,
        "expected a stream or table name, but the statement ended",
    );
    fails_with(
        "SELECT a, FROM s;",
        1,
        11,
        "expected an expression, but found 'FROM'",
    );
    fails_with(
        "SELECT * FROM s EMIT;",
        1,
        21,
        "expected CHANGES or FINAL after EMIT",
    );
    fails_with(
        "SELECT * FROM s EMIT CHANGES WHERE x = 1;",
        1,
        30,
        "the WHERE clause is out of place",
    );
    fails_with(
        "SELECT * FROM s GROUP BY a WHERE b = 1 EMIT CHANGES;",
        1,
        28,
        "the WHERE clause is out of place",
    );
    fails_with(
        "SELECT * FROM s EMIT CHANGES LIMIT -1;",
        1,
        36,
        "expected a row count after LIMIT",
    );
    fails_with(
        "SELECT * FROM s LIMIT -1;",
        1,
        23,
        "Pull queries don't support negative integers in the LIMIT clause",
    );
    fails_with(
        "SELECT * FROM s LIMIT 2.5;",
        1,
        23,
        "Value must be integer for command: LIMIT",
    );
    fails_with(
        "SELECT * FROM (SELECT * FROM a);",
        1,
        15,
        "subqueries are not supported",
    );
    fails_with(
        "SELECT x::INT FROM s;",
        1,
        9,
        "expected FROM, but found '::'",
    );
    fails_with(
        "SELECT 'a' 'b' FROM s;",
        1,
        8,
        "'b' is a string, not a column alias",
    );
    fails_with("SELECT a FROM s GROUP BY;", 1, 25, "expected an expression");
    fails_with(
        "SELECT CAST(a AS) FROM s;",
        1,
        17,
        "expected a type, but found ')'",
    );
    fails_with(
        "SELECT * FROM s WHERE a = 'oops;",
        1,
        27,
        "Unterminated string literal",
    );
    fails_with(
        "SELECT s-> FROM t;",
        1,
        12,
        "expected a field name after '->', but found 'FROM'",
    );
}

/// Found by fuzzing: forms that parsed but printed as text reading back differently.
#[test]
fn fuzz_regressions() {
    fails_with(
        "SELECT 1 .e FROM s;",
        1,
        10,
        "'.' only qualifies a column with its source name",
    );
    fails_with(
        "SELECT f(x).y FROM s;",
        1,
        12,
        "use '->' to read a struct field",
    );
    fails_with(
        "SELECT a[1].b FROM s;",
        1,
        12,
        "use '->' to read a struct field",
    );
    fails_with(
        "SELECT NULL.a FROM s;",
        1,
        12,
        "use '->' to read a struct field",
    );
    fails_with(
        "SELECT INTERVAL '1' DAY FROM s;",
        1,
        8,
        "ksqlDB has no INTERVAL literals",
    );
    // Invalid input nested in subscripts and qualified names took time exponential in the
    // depth (sqlparser re-parsed what follows each '.'); it now fails in one pass.
    let nested = format!("SELECT {} FROM t;", "S[X.A.B".repeat(40));
    let error = parse_statement(&nested).expect_err("unclosed subscripts");
    assert!(
        error.message.starts_with("Syntax Error: expected"),
        "{error}"
    );
    fails_with(
        "SELECT a[1:2] FROM s;",
        1,
        10,
        "array slices are not supported",
    );
    fails_with(
        "CREATE TABLE o AS SELECT * FROM t AS SELECT;",
        1,
        38,
        "expected an alias after AS (quote it if it is a keyword), but found 'SELECT'",
    );
    fails_with("SELECT *, @`Name` FROM s;", 1, 11, "parameter placeholders");
    fails_with("SELECT ? FROM s;", 1, 8, "parameter placeholders");
    fails_with(
        "SELECT * FROM s WHERE a IN (SELECT b FROM t);",
        1,
        23,
        "subqueries are not supported",
    );
    fails_with(
        "SELECT (SELECT 1 FROM t) FROM s;",
        1,
        9,
        "subqueries are not supported",
    );
    fails_with(
        "SELECT ts AT TIME ZONE 'UTC' FROM s;",
        1,
        8,
        "use CONVERT_TZ",
    );
}

#[test]
fn window_and_join_errors() {
    fails_with(
        "SELECT * FROM s WINDOW TUMBLING (SIZE 1 WEEK) GROUP BY a EMIT CHANGES;",
        1,
        41,
        "expected a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS), but found 'WEEK'",
    );
    fails_with(
        "SELECT * FROM s WINDOW TUMBLING (SIZE 1 SECOND, GRACE PERIOD 1 SECOND, RETENTION 1 DAY) \
         GROUP BY a EMIT CHANGES;",
        1,
        72,
        "expected RETENTION or GRACE PERIOD (in that order)",
    );
    fails_with(
        "SELECT * FROM s WINDOW SLIDING (SIZE 1 SECOND) GROUP BY a EMIT CHANGES;",
        1,
        24,
        "expected a window type (TUMBLING, HOPPING or SESSION)",
    );
    fails_with(
        "SELECT * FROM s WINDOW HOPPING (SIZE 1 SECOND) GROUP BY a EMIT CHANGES;",
        1,
        46,
        "expected ','",
    );
    fails_with(
        "SELECT * FROM a JOIN b WITHIN 1 HOUR;",
        1,
        37,
        "expected ON and the join condition",
    );
    fails_with(
        "SELECT * FROM a JOIN b WITHIN (1 HOUR) ON a.x = b.x;",
        1,
        38,
        "expected ','",
    );
    fails_with(
        "SELECT * FROM a LEFT b ON a.x = b.x;",
        1,
        22,
        "expected JOIN",
    );
}

#[test]
fn create_errors() {
    fails_with(
        "CREATE STREAM s (id INT KEY WITH (kafka_topic='x');",
        1,
        29,
        "expected ')', but found 'WITH'",
    );
    fails_with(
        "CREATE STREAM s (id INT KEY) WITH (kafka_topic=);",
        1,
        48,
        "expected a literal value",
    );
    fails_with(
        "CREATE STREAM s (id DECIMAL) WITH (kafka_topic='x');",
        1,
        28,
        "expected '(', but found ')'",
    );
    fails_with(
        "CREATE STREAM s (m MAP<STRING INT>) WITH (kafka_topic='x');",
        1,
        31,
        "expected ',', but found 'INT'",
    );
    fails_with(
        "CREATE STREAM s (a ARRAY<INT) WITH (kafka_topic='x');",
        1,
        29,
        "expected '>', but found ')'",
    );
    fails_with(
        "CREATE SOURCE STREAM s AS SELECT * FROM t;",
        1,
        24,
        "CREATE SOURCE STREAM cannot have AS SELECT",
    );
    fails_with(
        "CREATE STREAM s (a INT) AS SELECT * FROM t;",
        1,
        25,
        "takes its columns from the query; remove the column list",
    );
    fails_with(
        "CREATE VIEW v AS SELECT * FROM t;",
        1,
        8,
        "expected STREAM or TABLE after CREATE",
    );
    fails_with(
        "CREATE TABLE t (id INT PRIMARY) WITH (kafka_topic='t');",
        1,
        24,
        "expected ')'",
    );
    fails_with(
        "CREATE STREAM s (h BYTES HEADER(key)) WITH (kafka_topic='t');",
        1,
        33,
        "expected the header key, as a string, but found 'KEY'",
    );
    fails_with(
        "CREATE TYPE t STRUCT<a INT>;",
        1,
        15,
        "expected AS, but found 'STRUCT'",
    );
    fails_with(
        "CREATE SOURCE CONNECTOR c;",
        1,
        26,
        "expected WITH and the connector's configuration",
    );
}

#[test]
fn insert_drop_alter_errors() {
    fails_with(
        "INSERT INTO s VALUES (1, 2;",
        1,
        27,
        "expected ')', but the statement ended",
    );
    fails_with(
        "INSERT INTO s;",
        1,
        14,
        "expected SELECT, VALUES or a column list",
    );
    fails_with(
        "INSERT INTO s (a, 1) VALUES (1, 2);",
        1,
        19,
        "expected a column name",
    );
    fails_with(
        "DROP VIEW s;",
        1,
        6,
        "expected STREAM, TABLE, TYPE or CONNECTOR after DROP",
    );
    fails_with(
        "DROP STREAM;",
        1,
        12,
        "expected the stream or table to drop",
    );
    fails_with(
        "DROP TABLE t DELETE;",
        1,
        14,
        "expected the end of the statement",
    );
    fails_with("DROP TYPE;", 1, 10, "expected the type name");
    fails_with(
        "ALTER STREAM s DROP COLUMN a;",
        1,
        16,
        "expected ADD, but found 'DROP'",
    );
    fails_with(
        "ALTER VIEW v ADD COLUMN a INT;",
        1,
        7,
        "expected STREAM, TABLE or SYSTEM",
    );
}

#[test]
fn administration_errors() {
    fails_with(
        "SHOW VIEWS;",
        1,
        6,
        "expected what to list: STREAMS, TABLES, TOPICS",
    );
    fails_with("LIST ALL STREAMS;", 1, 10, "expected TOPICS");
    fails_with("DESCRIBE;", 1, 9, "expected a stream or table name");
    fails_with(
        "DESCRIBE s EXTENDED EXTENDED;",
        1,
        21,
        "expected the end of the statement",
    );
    fails_with(
        "EXPLAIN;",
        1,
        8,
        "expected a statement or a query id after EXPLAIN",
    );
    fails_with("PRINT;", 1, 6, "expected the topic to print");
    fails_with(
        "PRINT t LIMIT x;",
        1,
        15,
        "expected a record count after LIMIT, but found 'X'",
    );
    fails_with("TERMINATE;", 1, 10, "expected a query id or ALL");
    fails_with(
        "PAUSE 'q';",
        1,
        7,
        "expected a query id or ALL, but found the string 'q'",
    );
    fails_with("RESUME;", 1, 7, "expected a query id or ALL");
    fails_with("SET 'a';", 1, 8, "expected '=', but the statement ended");
    fails_with(
        "SET a='b';",
        1,
        5,
        "expected a property name, as a string, but found 'A'",
    );
    fails_with("UNSET a;", 1, 7, "expected a property name, but found 'A'");
    fails_with(
        "ALTER SYSTEM 'a'=1;",
        1,
        18,
        "expected a property value, as a string",
    );
    fails_with(
        "DEFINE x = 1;",
        1,
        12,
        "expected the variable's value, as a string",
    );
    fails_with("UNDEFINE 'x';", 1, 10, "expected the variable name");
    fails_with("ASSERT TOPIC;", 1, 13, "expected the topic name");
    fails_with(
        "ASSERT SCHEMA TIMEOUT 1 SECOND;",
        1,
        15,
        "expected SUBJECT name or ID n",
    );
    fails_with("ASSERT TOPIC t TIMEOUT 5;", 1, 25, "expected a time unit");
    fails_with(
        "ASSERT VALUES s (a) VALUES (1);",
        1,
        8,
        "belong to the test runner",
    );
    fails_with(
        "ASSERT VIEW v;",
        1,
        8,
        "expected TOPIC or SCHEMA after ASSERT",
    );
    fails_with("DROP CONNECTOR;", 1, 15, "expected the connector name");
    fails_with(
        "RUN SCRIPT 'x.sql';",
        1,
        1,
        "RUN SCRIPT is a command of the riffle shell",
    );
    fails_with(
        "UPDATE s SET a = 1;",
        1,
        1,
        "expected a statement (SELECT, CREATE, INSERT",
    );
}

#[test]
fn script_errors_point_into_the_right_statement() {
    let error = parse_script("SHOW STREAMS;\n\nSELECT *\n  FROM s EMIT CHANGE;").expect_err("bad");
    assert_eq!(error.position, Position::new(4, 15));
    assert!(
        error
            .message
            .contains("expected CHANGES or FINAL after EMIT")
    );
    let error = parse_script("SHOW STREAMS;\nSHOW TABLES").expect_err("unterminated");
    assert_eq!(error.position, Position::new(2, 12));
    assert!(error.message.contains("missing its terminating ';'"));
    let error = parse_statement("SHOW STREAMS; SHOW TABLES;").expect_err("two statements");
    assert_eq!(error.position, Position::new(1, 15));
    let error = parse_statement("  -- nothing\n").expect_err("empty");
    assert!(error.message.contains("the text is empty"));
}

#[test]
fn errors_display_as_line_column_and_sentence() {
    let error = parse_statement("SELECT * FROM s EMIT;").expect_err("bad");
    assert_eq!(
        error.to_string(),
        "line 1:21: Syntax Error: expected CHANGES or FINAL after EMIT, but the statement ended"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let too_deep = [
        format!("SELECT {}1{} FROM s;", "(".repeat(5000), ")".repeat(5000)),
        format!(
            "SELECT {}1{} FROM s;",
            "F(X => ".repeat(300),
            ")".repeat(300)
        ),
        format!(
            "CREATE STREAM s (a {}INT{}) WITH (kafka_topic='s');",
            "ARRAY<".repeat(500),
            ">".repeat(500)
        ),
    ];
    for sql in too_deep {
        let error = parse_statement(&sql).expect_err("too deep");
        assert!(
            error
                .message
                .contains("nests expressions or types too deeply"),
            "{error}"
        );
    }
}

#[test]
fn number_literals_out_of_range() {
    // ksqlDB's column for these is one right of the literal (see `number_out_of_range`).
    fails_with(
        "SELECT 9223372036854775808 FROM s;",
        1,
        9,
        "Invalid numeric literal: 9223372036854775808",
    );
    fails_with(
        "SELECT -9223372036854775809 FROM s;",
        1,
        10,
        "Invalid numeric literal: -9223372036854775809",
    );
    fails_with(
        "SELECT 1.7976931348623159E308 FROM s;",
        1,
        9,
        "Number overflows DOUBLE: 1.7976931348623159E308",
    );
    fails_with(
        "SELECT -1.8E308 FROM s;",
        1,
        10,
        "Number overflows DOUBLE: -1.8E308",
    );
    // The extremes themselves are fine.
    for sql in [
        "SELECT -9223372036854775808, 9223372036854775807 FROM s;",
        "SELECT 4.9E-324, -1.7976931348623157E308, 000009223372036854775807 FROM s;",
    ] {
        assert!(parse_statement(sql).is_ok(), "{sql}");
    }
}
