//! Round trips for every statement form: `verified_stmt` parses canonical text and checks
//! that it prints back identically; `parses_to` checks how other spellings normalise.

use riffle_grammar::ast::*;
use riffle_grammar::parse_statement;
use sqlparser::ast::{BinaryOperator, DataType, Expr, FunctionArg, FunctionArgOperator, Value};

/// Parses canonical text, checks it prints back unchanged and re-parses to the same AST.
#[track_caller]
fn verified_stmt(sql: &str) -> Statement {
    parses_to(sql, sql)
}

/// Parses `sql`, checks it prints as `canonical`, and that `canonical` parses to the same AST.
#[track_caller]
fn parses_to(sql: &str, canonical: &str) -> Statement {
    let statement = parse_statement(sql).unwrap_or_else(|e| panic!("{sql}\n{e}"));
    assert_eq!(statement.to_string(), canonical, "printed form of {sql}");
    let reparsed = parse_statement(canonical).unwrap_or_else(|e| panic!("{canonical}\n{e}"));
    assert_eq!(reparsed, statement, "re-parsed AST of {canonical}");
    statement
}

#[track_caller]
fn query(statement: Statement) -> Query {
    match statement {
        Statement::Query(query) => *query,
        Statement::CreateAsSelect(create) => create.query,
        Statement::InsertInto(insert) => insert.query,
        other => panic!("not a query: {other:?}"),
    }
}

// ---- SELECT ----------------------------------------------------------------------------------

#[test]
fn push_query_with_every_clause() {
    let q = query(verified_stmt(
        "SELECT ID, COUNT(*) AS C FROM CLICKS WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 2 DAYS, \
         GRACE PERIOD 10 SECONDS) WHERE (V > 0) GROUP BY ID HAVING (COUNT(*) > 1) EMIT CHANGES \
         LIMIT 10",
    ));
    assert!(q.is_push());
    assert_eq!(q.limit, Some(10));
    assert_eq!(
        q.window,
        Some(WindowSpec::Tumbling {
            size: TimeSpan::new(1, TimeUnit::Minutes),
            retention: Some(TimeSpan::new(2, TimeUnit::Days)),
            grace: Some(TimeSpan::new(10, TimeUnit::Seconds)),
        })
    );
}

#[test]
fn pull_query_has_no_emit() {
    let q = query(verified_stmt("SELECT * FROM USERS WHERE ID = 'u1' LIMIT 5"));
    assert!(!q.is_push());
}

#[test]
fn emit_final() {
    let q = query(verified_stmt(
        "SELECT K, SUM(V) FROM S WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) \
         GROUP BY K EMIT FINAL",
    ));
    assert_eq!(q.emit, Some(EmitMode::Final));
}

#[test]
fn window_forms() {
    verified_stmt("SELECT K, COUNT(*) FROM S WINDOW SESSION (30 SECONDS) GROUP BY K EMIT CHANGES");
    verified_stmt(
        "SELECT K, COUNT(*) FROM S WINDOW SESSION (30 SECONDS, RETENTION 1 DAY, GRACE PERIOD \
         0 MILLISECONDS) GROUP BY K EMIT CHANGES",
    );
    verified_stmt(
        "SELECT K, COUNT(*) FROM S WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 1 MINUTE, GRACE \
         PERIOD 2 HOURS) GROUP BY K EMIT CHANGES",
    );
    // Units read in either number and case; a legacy window name is dropped.
    parses_to(
        "select k, count(*) from s window w tumbling (size 2 second) group by k emit changes",
        "SELECT K, COUNT(*) FROM S WINDOW TUMBLING (SIZE 2 SECONDS) GROUP BY K EMIT CHANGES",
    );
    parses_to(
        "SELECT K FROM S WINDOW TUMBLING (SIZE 1 HOURS) GROUP BY K EMIT CHANGES",
        "SELECT K FROM S WINDOW TUMBLING (SIZE 1 HOUR) GROUP BY K EMIT CHANGES",
    );
}

#[test]
fn group_by_and_partition_by_lists() {
    let q = query(parses_to(
        "SELECT A, B, COUNT(*) FROM S GROUP BY (A, B) EMIT CHANGES",
        "SELECT A, B, COUNT(*) FROM S GROUP BY A, B EMIT CHANGES",
    ));
    assert_eq!(q.group_by.len(), 2);
    let q = query(verified_stmt(
        "SELECT * FROM S PARTITION BY A, B -> C EMIT CHANGES",
    ));
    assert_eq!(q.partition_by.len(), 2);
    let q = query(verified_stmt(
        "SELECT * FROM S PARTITION BY NULL EMIT CHANGES",
    ));
    assert_eq!(q.partition_by, [Expr::Value(Value::Null.into())]);
}

#[test]
fn joins_of_every_kind() {
    let q = query(verified_stmt(
        "SELECT * FROM A INNER JOIN B WITHIN 1 HOUR ON (A.ID = B.ID) LEFT JOIN C ON A.ID = C.ID \
         RIGHT JOIN D WITHIN (10 SECONDS, 1 MINUTE) GRACE PERIOD 5 SECONDS ON A.ID = D.ID \
         FULL OUTER JOIN E ON A.ID = E.ID EMIT CHANGES",
    ));
    let kinds: Vec<_> = q.from.joins.iter().map(|j| j.kind).collect();
    assert_eq!(
        kinds,
        [
            JoinKind::Inner,
            JoinKind::Left,
            JoinKind::Right,
            JoinKind::Full
        ]
    );
    assert_eq!(
        q.from.joins[2].within,
        Some(JoinWindow {
            before: TimeSpan::new(10, TimeUnit::Seconds),
            after: Some(TimeSpan::new(1, TimeUnit::Minutes)),
            grace: Some(TimeSpan::new(5, TimeUnit::Seconds)),
        })
    );
    parses_to(
        "SELECT * FROM a x JOIN b AS y WITHIN 1 HOUR GRACE PERIOD 1 MINUTE ON x.id = y.id \
         LEFT OUTER JOIN c ON x.id = c.id FULL JOIN d ON x.id = d.id EMIT CHANGES",
        "SELECT * FROM A X INNER JOIN B Y WITHIN 1 HOUR GRACE PERIOD 1 MINUTE ON X.ID = Y.ID \
         LEFT JOIN C ON X.ID = C.ID FULL OUTER JOIN D ON X.ID = D.ID EMIT CHANGES",
    );
}

#[test]
fn clause_words_are_not_aliases() {
    let q = query(verified_stmt("SELECT * FROM S EMIT CHANGES"));
    assert_eq!(q.from.source.alias, None);
    let q = query(verified_stmt(
        "SELECT * FROM S WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY K EMIT CHANGES",
    ));
    assert_eq!(q.from.source.alias, None);
    let q = query(verified_stmt("SELECT * FROM S `EMIT` EMIT CHANGES"));
    assert_eq!(q.from.source.alias.map(|a| a.value), Some("EMIT".into()));
}

// ---- Lexical rules ---------------------------------------------------------------------------

#[test]
fn identifiers_are_upper_cased_unless_quoted() {
    let q = query(parses_to(
        "select Foo, \"Bar\", `baz` from `Src` emit changes",
        "SELECT FOO, `Bar`, `baz` FROM `Src` EMIT CHANGES",
    ));
    assert_eq!(q.from.source.name.value, "Src");
    verified_stmt("SELECT `with``tick` FROM S EMIT CHANGES");
}

#[test]
fn numbers_keep_their_text_so_decimal_and_double_stay_apart() {
    let q = query(verified_stmt(
        "SELECT 1, 1.5, 1.5E3, .5, 12345678901 FROM S EMIT CHANGES",
    ));
    let texts: Vec<String> = q.projection.iter().map(|item| item.to_string()).collect();
    assert_eq!(texts, ["1", "1.5", "1.5E3", ".5", "12345678901"]);
}

#[test]
fn comments_are_ignored() {
    parses_to(
        "-- the stream\nSELECT /* all */ * FROM S -- trailing\n EMIT CHANGES;",
        "SELECT * FROM S EMIT CHANGES",
    );
}

#[test]
fn identifiers_may_start_with_digits() {
    verified_stmt("SELECT ROUND(V, -1) AS 1R FROM S EMIT CHANGES");
}

// ---- Expressions ------------------------------------------------------------------------------

#[test]
fn struct_dereference_and_subscripts() {
    let q = query(verified_stmt(
        "SELECT S -> A -> B, S -> ARR[1], M['k'] -> F, ARR[-1], S -> * FROM T EMIT CHANGES",
    ));
    let first = match &q.projection[0] {
        sqlparser::ast::SelectItem::UnnamedExpr(expr) => expr.clone(),
        other => panic!("{other:?}"),
    };
    match first {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Arrow,
            right,
        } => {
            assert!(matches!(
                *left,
                Expr::BinaryOp {
                    op: BinaryOperator::Arrow,
                    ..
                }
            ));
            assert_eq!(right.to_string(), "B");
        }
        other => panic!("{other:?}"),
    }
    parses_to(
        "SELECT s->a->b + 1 FROM t EMIT CHANGES",
        "SELECT S -> A -> B + 1 FROM T EMIT CHANGES",
    );
}

#[test]
fn constructors_and_lambdas_are_named_arguments() {
    let q = query(verified_stmt(
        "SELECT STRUCT(A := 1, B := 'x'), MAP('k' := V), ARRAY[1, 2], \
         TRANSFORM(XS, X => X + 1), REDUCE(XS, 0, (S, X) => S + X) FROM T EMIT CHANGES",
    ));
    let Some(sqlparser::ast::SelectItem::UnnamedExpr(Expr::Function(reduce))) = q.projection.get(4)
    else {
        panic!("a function");
    };
    let sqlparser::ast::FunctionArguments::List(list) = &reduce.args else {
        panic!("arguments");
    };
    assert!(matches!(
        &list.args[2],
        FunctionArg::ExprNamed { name: Expr::Tuple(params), operator: FunctionArgOperator::RightArrow, .. }
            if params.len() == 2
    ));
    parses_to(
        "SELECT filter(m, (k, v) => v > 1) FROM t EMIT CHANGES",
        "SELECT FILTER(M, (K, V) => V > 1) FROM T EMIT CHANGES",
    );
}

#[test]
fn casts_take_ksqldb_types() {
    let q = query(verified_stmt(
        "SELECT CAST(A AS DECIMAL(4,2)), CAST(B AS ARRAY<STRING>), CAST(C AS STRUCT<X INT>), \
         CAST(D AS TIMESTAMP), CAST(E AS BYTES) FROM T EMIT CHANGES",
    ));
    assert_eq!(q.projection.len(), 5);
    // sqlparser prints a map type as `Map(K, V)` inside CAST; both spellings read the same.
    parses_to(
        "SELECT CAST(M AS MAP<STRING, ARRAY<INT>>) FROM T EMIT CHANGES",
        "SELECT CAST(M AS Map(STRING, ARRAY<INT>)) FROM T EMIT CHANGES",
    );
    parses_to(
        "SELECT CAST(A AS VARCHAR), CAST(B AS INTEGER) FROM T EMIT CHANGES",
        "SELECT CAST(A AS STRING), CAST(B AS INT) FROM T EMIT CHANGES",
    );
}

#[test]
fn predicates() {
    verified_stmt(
        "SELECT * FROM T WHERE A BETWEEN 1 AND 2 AND B NOT BETWEEN 3 AND 4 AND C IN (1, 2) \
         AND D NOT IN ('x') AND E LIKE 'a%' AND F NOT LIKE 'b\\_%' ESCAPE '\\' AND G IS NULL \
         AND H IS NOT NULL AND I IS DISTINCT FROM J AND K IS NOT DISTINCT FROM L EMIT CHANGES",
    );
    verified_stmt(
        "SELECT CASE WHEN A > 1 THEN 'big' ELSE 'small' END, CASE B WHEN 1 THEN 'one' END, \
         A || B, A + B * C - D / E % F, NOT X FROM T EMIT CHANGES",
    );
}

// ---- DDL --------------------------------------------------------------------------------------

#[test]
fn create_stream_with_every_column_constraint() {
    let statement = verified_stmt(
        "CREATE STREAM S (ID STRING KEY, V BIGINT, H ARRAY<STRUCT<KEY STRING, VALUE BYTES>> \
         HEADERS, T BYTES HEADER('trace'), M MAP<STRING, ARRAY<DECIMAL(10, 2)>>, \
         N STRUCT<A INT, `b` STRUCT<C BOOLEAN>>) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', \
         PARTITIONS=3)",
    );
    let Statement::CreateSource(create) = statement else {
        panic!("CREATE STREAM");
    };
    assert_eq!(create.kind, SourceKind::Stream);
    assert_eq!(create.columns[0].constraint, Some(ColumnConstraint::Key));
    assert_eq!(
        create.columns[2].constraint,
        Some(ColumnConstraint::Headers)
    );
    assert_eq!(
        create.columns[3].constraint,
        Some(ColumnConstraint::Header("trace".into()))
    );
    assert_eq!(create.columns[1].data_type, DataType::BigInt(None));
    assert_eq!(
        create.properties.get("kafka_topic"),
        Some(&Value::SingleQuotedString("s".into()))
    );
}

#[test]
fn create_table_forms() {
    let statement = verified_stmt(
        "CREATE OR REPLACE SOURCE TABLE IF NOT EXISTS T (ID INT PRIMARY KEY, NAME STRING) \
         WITH (KAFKA_TOPIC='t', FORMAT='JSON')",
    );
    let Statement::CreateSource(create) = statement else {
        panic!("CREATE TABLE");
    };
    assert!(create.or_replace && create.is_source && create.if_not_exists);
    assert_eq!(create.kind, SourceKind::Table);
    parses_to(
        "create table t (id integer primary key, v varchar) with (kafka_topic='t', value_format='json', wrap_single_value=false, retention_ms=-1)",
        "CREATE TABLE T (ID INT PRIMARY KEY, V STRING) WITH (KAFKA_TOPIC='t', \
         VALUE_FORMAT='json', WRAP_SINGLE_VALUE=false, RETENTION_MS=-1)",
    );
    verified_stmt("CREATE STREAM S WITH (KAFKA_TOPIC='s', VALUE_FORMAT='AVRO')");
}

#[test]
fn create_as_select() {
    let statement = verified_stmt(
        "CREATE TABLE COUNTS WITH (KAFKA_TOPIC='counts', PARTITIONS=2) AS SELECT K, COUNT(*) \
         FROM S GROUP BY K EMIT CHANGES",
    );
    assert!(matches!(&statement, Statement::CreateAsSelect(c) if c.kind == SourceKind::Table));
    verified_stmt("CREATE OR REPLACE STREAM IF NOT EXISTS OUT AS SELECT * FROM S WHERE V > 1");
}

#[test]
fn insert_forms() {
    verified_stmt("INSERT INTO OUT SELECT * FROM S EMIT CHANGES");
    verified_stmt("INSERT INTO OUT WITH (QUERY_ID='my_query') SELECT * FROM S");
    let statement =
        verified_stmt("INSERT INTO S (ROWTIME, ID, V) VALUES (1000, 'a', STRUCT(X := 1.5))");
    assert!(matches!(&statement, Statement::InsertValues(i) if i.columns.len() == 3));
    verified_stmt("INSERT INTO S VALUES ('a', NULL, -1)");
}

#[test]
fn drop_and_alter() {
    verified_stmt("DROP STREAM S");
    verified_stmt("DROP TABLE IF EXISTS T DELETE TOPIC");
    verified_stmt("ALTER STREAM S ADD COLUMN A INT, ADD COLUMN B ARRAY<STRING>");
    parses_to(
        "alter table t add c1 int, add column c2 string",
        "ALTER TABLE T ADD COLUMN C1 INT, ADD COLUMN C2 STRING",
    );
}

#[test]
fn types() {
    verified_stmt("CREATE TYPE ADDRESS AS STRUCT<STREET STRING, CITY STRING>");
    verified_stmt("CREATE TYPE IF NOT EXISTS MONEY AS DECIMAL(10, 2)");
    verified_stmt("CREATE TYPE EMPTY AS STRUCT<>");
    verified_stmt("DROP TYPE ADDRESS");
    verified_stmt("DROP TYPE IF EXISTS ADDRESS");
    // A type alias used in a column list.
    let statement =
        verified_stmt("CREATE STREAM S (A ADDRESS) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON')");
    let Statement::CreateSource(create) = statement else {
        panic!("CREATE STREAM");
    };
    assert!(matches!(create.columns[0].data_type, DataType::Custom(..)));
}

// ---- Administration ---------------------------------------------------------------------------

#[test]
fn show_and_list() {
    for what in [
        "STREAMS",
        "STREAMS EXTENDED",
        "TABLES",
        "TABLES EXTENDED",
        "TOPICS",
        "ALL TOPICS EXTENDED",
        "QUERIES",
        "QUERIES EXTENDED",
        "PROPERTIES",
        "FUNCTIONS",
        "TYPES",
        "VARIABLES",
        "CONNECTORS",
        "SOURCE CONNECTORS",
        "SINK CONNECTORS",
        "CONNECTOR PLUGINS",
    ] {
        verified_stmt(&format!("SHOW {what}"));
        parses_to(
            &format!("list {}", what.to_lowercase()),
            &format!("SHOW {what}"),
        );
    }
}

#[test]
fn describe_forms() {
    verified_stmt("DESCRIBE S");
    verified_stmt("DESCRIBE S EXTENDED");
    verified_stmt("DESCRIBE STREAMS");
    verified_stmt("DESCRIBE STREAMS EXTENDED");
    verified_stmt("DESCRIBE TABLES");
    verified_stmt("DESCRIBE TABLES EXTENDED");
    verified_stmt("DESCRIBE FUNCTION SUBSTRING");
    verified_stmt("DESCRIBE CONNECTOR MY_CONNECTOR");
    // A source may be called FUNCTION.
    assert!(matches!(
        verified_stmt("DESCRIBE FUNCTION EXTENDED"),
        Statement::Describe(Describe::Source { extended: true, .. })
    ));
}

#[test]
fn explain_print_and_query_control() {
    verified_stmt("EXPLAIN SELECT * FROM S EMIT CHANGES");
    verified_stmt("EXPLAIN CREATE STREAM O AS SELECT * FROM S");
    verified_stmt("EXPLAIN CSAS_O_0");
    verified_stmt("PRINT PAGEVIEWS");
    verified_stmt("PRINT 'page-views' FROM BEGINNING INTERVAL 2 LIMIT 10");
    parses_to("print `t` sample 3", "PRINT `t` INTERVAL 3");
    for verb in ["TERMINATE", "PAUSE", "RESUME"] {
        verified_stmt(&format!("{verb} CSAS_O_0"));
        verified_stmt(&format!("{verb} ALL"));
    }
}

#[test]
fn properties_and_variables() {
    verified_stmt("SET 'auto.offset.reset'='earliest'");
    parses_to("SET 'a' = 'it''s'", "SET 'a'='it''s'");
    verified_stmt("UNSET 'auto.offset.reset'");
    verified_stmt("ALTER SYSTEM 'ksql.streams.num.stream.threads'='4'");
    verified_stmt("DEFINE FORMAT = 'JSON'");
    verified_stmt("UNDEFINE FORMAT");
}

#[test]
fn asserts() {
    verified_stmt("ASSERT TOPIC ORDERS");
    verified_stmt("ASSERT NOT EXISTS TOPIC 'orders' WITH (PARTITIONS=3) TIMEOUT 10 SECONDS");
    verified_stmt("ASSERT SCHEMA SUBJECT 'orders-value' ID 4 TIMEOUT 1 MINUTE");
    verified_stmt("ASSERT NOT EXISTS SCHEMA ID 4");
}

#[test]
fn connectors() {
    verified_stmt(
        "CREATE SOURCE CONNECTOR IF NOT EXISTS JDBC WITH ('connector.class'='io.x.Jdbc', \
         'tasks.max'='1')",
    );
    verified_stmt("CREATE SINK CONNECTOR ES WITH ('connector.class'='io.x.Es')");
    verified_stmt("DROP CONNECTOR JDBC");
    verified_stmt("DROP CONNECTOR IF EXISTS JDBC");
}

/// The AST keeps the exact value of a string literal. (sqlparser's printer cannot tell an
/// escaped quote from two quotes, so a value holding `''` prints back as one quote; the fuzz
/// target documents that limitation.)
#[test]
fn string_literals_keep_their_value() {
    let q = query(verified_stmt("SELECT 'it''s' FROM S EMIT CHANGES"));
    assert_eq!(q.projection[0].to_string(), "'it''s'");
    let statement = parse_statement("SELECT 'a''''b' FROM S EMIT CHANGES").expect("parses");
    let Statement::Query(q) = statement else {
        panic!("a query")
    };
    let sqlparser::ast::SelectItem::UnnamedExpr(Expr::Value(value)) = &q.projection[0] else {
        panic!("a literal")
    };
    assert_eq!(value.value, Value::SingleQuotedString("a''b".into()));
}

#[test]
fn function_call_forms() {
    verified_stmt("SELECT COUNT(*), NOW(), F(A, B), `myUdf`(A) FROM S EMIT CHANGES");
    parses_to(
        "SELECT transform(xs, (x) => x * 2) FROM s EMIT CHANGES",
        "SELECT TRANSFORM(XS, X => X * 2) FROM S EMIT CHANGES",
    );
    // Lambdas nest, and the arrow of a lambda body is still struct dereference.
    verified_stmt(
        "SELECT TRANSFORM(XS, X => FILTER(X -> ITEMS, (I, J) => I > J)) FROM S EMIT CHANGES",
    );
    verified_stmt("SELECT MAP(CONCAT('a', 'b') := 1, K := V) FROM S EMIT CHANGES");
}

/// Found by fuzzing: nested calls with lambdas took exponential time when sqlparser re-parsed
/// every argument after trying it as a named one. Each argument is now read once.
#[test]
fn deeply_nested_calls_with_lambdas_parse() {
    let mut expr = String::from("X");
    for depth in 0..24 {
        expr = format!("REDUCE(F{depth}(A, {expr}), 0, (S, Y) => S + Y)");
    }
    let sql = format!("SELECT {expr} FROM S EMIT CHANGES");
    verified_stmt(&sql);
}

#[test]
fn column_lists_parse_on_their_own() {
    let columns = riffle_grammar::parse_table_elements(
        "ID STRING KEY, dec DECIMAL(6,4), `h` BYTES HEADER('x')",
    )
    .expect("a column list");
    let printed: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        printed,
        [
            "ID STRING KEY",
            "DEC DECIMAL(6, 4)",
            "`h` BYTES HEADER('x')"
        ]
    );
    let error = riffle_grammar::parse_table_elements("A INT B").expect_err("missing comma");
    assert_eq!(error.position, riffle_grammar::Position::new(1, 7));
}

#[test]
fn scripts_split_into_statement_texts_before_substitution() {
    let texts = riffle_grammar::split_script(
        "DEFINE t = 'orders';\n  SELECT * FROM ${t} WHERE a = ';' EMIT CHANGES; -- done\n",
    )
    .expect("splits");
    let texts: Vec<(&str, u64)> = texts
        .iter()
        .map(|t| (t.text.as_str(), t.position.line))
        .collect();
    assert_eq!(
        texts,
        [
            ("DEFINE t = 'orders';", 1),
            ("SELECT * FROM ${t} WHERE a = ';' EMIT CHANGES;", 2)
        ]
    );
}
