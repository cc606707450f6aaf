//! The examples of ksqlDB's function reference, for the functions that are DataFusion's
//! own under ksqlDB's name (or ours without a test module of their own): each call as the
//! documentation writes it, with the value it gives, then NULL and refused arguments.
//!
//! Calls go through DataFusion's SQL (see `test_support`): `1` is a BIGINT and `1.5` a
//! DOUBLE there, where ksqlDB reads an INT and a DECIMAL.

use super::test_support::{eval_error, try_aggregate};

/// Each call gives its value.
fn check(cases: &[(&str, &str)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(call, expected)| {
            let value = super::test_support::try_eval(call).unwrap_or_else(|e| e);
            (value != *expected).then(|| format!("{call} gave {value}, not {expected}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Each call is refused as ksqlDB refuses it.
fn refused(calls: &[&str]) {
    for call in calls {
        let error = eval_error(call);
        assert!(
            error.contains("does not accept parameters") || error.contains("cannot be resolved"),
            "{call}: {error}"
        );
    }
}

#[test]
fn strings() {
    check(&[
        ("concat_ws('-', 'a', 'b', 'c')", "a-b-c"),
        ("concat_ws('-', 'a', NULL, 'c')", "a-c"),
        ("concat_ws(CAST(NULL AS VARCHAR), 'a', 'b')", "NULL"),
        ("initcap('the quick brown fox')", "The Quick Brown Fox"),
        ("initcap('hELLO wORLD')", "Hello World"),
        ("initcap(CAST(NULL AS VARCHAR))", "NULL"),
        ("instr('CORPORATE FLOOR', 'OR')", "2"),
        ("instr('CORPORATE FLOOR', 'MISSING')", "0"),
        ("instr('CORPORATE FLOOR', 'OR', 3)", "5"),
        ("instr('CORPORATE FLOOR', 'OR', 3, 2)", "14"),
        ("instr('CORPORATE FLOOR', 'OR', -3)", "5"),
        ("instr('CORPORATE FLOOR', 'OR', -3, 2)", "2"),
        ("instr('CORPORATE FLOOR', 'OR', 3, 3)", "0"),
        ("instr('CORPORATE FLOOR', 'OR', -20)", "0"),
        ("instr('CORPORATE FLOOR', 'OR', 1, 0)", "0"),
        ("instr('aaa', 'aa', 1, 2)", "2"),
        ("instr('ünïcödé', 'cö')", "4"),
        ("instr('CORPORATE FLOOR', 'OR', CAST(NULL AS INT))", "NULL"),
        ("instr(CAST(NULL AS VARCHAR), 'OR')", "NULL"),
        ("md5('hello')", "5d41402abc4b2a76b9719d911017c592"),
        ("md5(CAST(NULL AS VARCHAR))", "NULL"),
        ("length(uuid())", "36"),
        ("lcase('ApPle')", "apple"),
        ("ucase('ApPle')", "APPLE"),
        ("ucase(CAST(NULL AS VARCHAR))", "NULL"),
    ]);
    // ksqlDB converts no number to text: DataFusion's functions would.
    refused(&[
        "md5(1)",
        "initcap(1)",
        "concat_ws(1, 'a')",
        "concat('a', 1)",
        "replace(1, 'a', 'b')",
        "lcase(1)",
        "instr('a', 1)",
        "instr('abc', 'b', 1.5)",
    ]);
}

#[test]
fn math() {
    check(&[
        ("abs(-3)", "3"),
        ("abs(CAST(NULL AS INT))", "NULL"),
        ("acos(1.0)", "0.0"),
        ("asin(0.0)", "0.0"),
        ("atan(0.0)", "0.0"),
        ("atan2(0.0, 1.0)", "0.0"),
        ("cbrt(27.0)", "3.0"),
        ("cos(0.0)", "1.0"),
        ("cosh(0.0)", "1.0"),
        ("cot(1.0)", "0.6420926159343306"),
        ("degrees(pi())", "180.0"),
        ("exp(0.0)", "1.0"),
        ("ln(1.0)", "0.0"),
        ("pi()", "3.141592653589793"),
        ("power(2.0, 10.0)", "1024.0"),
        // An INT widens to the DOUBLE the function takes.
        ("cos(CAST(0 AS INT))", "1.0"),
        ("radians(180.0)", "3.141592653589793"),
        ("sin(0.0)", "0.0"),
        ("sinh(0.0)", "0.0"),
        ("tan(0.0)", "0.0"),
        ("tanh(0.0)", "0.0"),
        ("ceil(1.2)", "2.0"),
        ("ceil(-1.2)", "-1.0"),
        ("floor(1.8)", "1.0"),
        ("floor(-1.2)", "-2.0"),
        ("arrow_typeof(ceil(CAST(5 AS INT)))", "Int32"),
        ("floor(CAST(-5 AS BIGINT))", "-5"),
        ("ceil(CAST(1.1 AS DECIMAL(2, 1)))", "2.0"),
        ("ceil(CAST(-1.1 AS DECIMAL(2, 1)))", "-1.0"),
        ("floor(CAST(-1.1 AS DECIMAL(2, 1)))", "-2.0"),
        ("floor(CAST(1.7 AS DECIMAL(2, 1)))", "1.0"),
        ("ceil(CAST(NULL AS DOUBLE))", "NULL"),
        ("trunc(1.8)", "1.0"),
        ("trunc(-1.8)", "-1.0"),
        ("cos(CAST(NULL AS DOUBLE))", "NULL"),
        ("power(CAST(NULL AS DOUBLE), 2.0)", "NULL"),
        ("random() >= 0.0 AND random() < 1.0", "true"),
    ]);
    refused(&[
        "cos('x')",
        "ceil('x')",
        "abs('x')",
        "power('2', 3)",
        "trunc('x')",
    ]);
}

#[test]
fn dates_and_times() {
    check(&[
        ("datetostring(17662, 'yyyy-MM-dd')", "2018-05-11"),
        ("datetostring(CAST(NULL AS INT), 'yyyy-MM-dd')", "NULL"),
        (
            "timestamptostring(1526075913000, 'yyyy-MM-dd HH:mm:ss', 'UTC')",
            "2018-05-11 21:58:33",
        ),
        (
            "timestamptostring(1526075913000, 'yyyy-MM-dd HH:mm:ss zzz', 'Europe/London')",
            "2018-05-11 22:58:33 BST",
        ),
        ("timestamptostring(CAST(NULL AS BIGINT), 'yyyy')", "NULL"),
        ("parse_date('2018-05-11', 'yyyy-MM-dd')", "2018-05-11"),
        ("parse_date('11/05/2018', 'dd/MM/yyyy')", "2018-05-11"),
        ("parse_date(CAST(NULL AS VARCHAR), 'yyyy-MM-dd')", "NULL"),
        (
            "parse_timestamp('2018-05-11 21:58:33', 'yyyy-MM-dd HH:mm:ss')",
            "2018-05-11T21:58:33",
        ),
        (
            "parse_timestamp('2018-05-11 22:58:33', 'yyyy-MM-dd HH:mm:ss', 'Europe/London')",
            "2018-05-11T21:58:33",
        ),
        ("parse_timestamp(CAST(NULL AS VARCHAR), 'yyyy')", "NULL"),
        ("from_days(17662)", "2018-05-11"),
        ("from_days(CAST(NULL AS INT))", "NULL"),
        ("format_date(from_days(17662), 'dd/MM/yyyy')", "11/05/2018"),
        ("format_date(CAST(NULL AS DATE), 'dd/MM/yyyy')", "NULL"),
        ("unix_date(from_days(17662))", "17662"),
        ("unix_date() > 20000", "true"),
        ("from_unixtime(1526075913000)", "2018-05-11T21:58:33"),
        ("from_unixtime(CAST(NULL AS BIGINT))", "NULL"),
        (
            "format_timestamp(from_unixtime(1526075913000), 'yyyy-MM-dd HH:mm:ss', 'UTC')",
            "2018-05-11 21:58:33",
        ),
        (
            "format_timestamp(from_unixtime(1526075913000), 'HH:mm', 'America/New_York')",
            "17:58",
        ),
        (
            "unix_timestamp(from_unixtime(1526075913000))",
            "1526075913000",
        ),
        ("unix_timestamp() > 1700000000000", "true"),
        ("parse_time('10:11:12', 'HH:mm:ss')", "10:11:12"),
        (
            "format_time(parse_time('10:11:12', 'HH:mm:ss'), 'HH:mm')",
            "10:11",
        ),
        ("parse_time(CAST(NULL AS VARCHAR), 'HH:mm')", "NULL"),
    ]);
    refused(&[
        "datetostring('x', 'yyyy')",
        "parse_date(1, 'yyyy')",
        "from_days('x')",
        "format_timestamp(1, 'yyyy')",
    ]);
}

#[test]
fn arrays() {
    check(&[
        (
            "array_concat(make_array(1, 2), make_array(3, 1))",
            "[1, 2, 3, 1]",
        ),
        (
            "array_concat(make_array(1), CAST(NULL AS ARRAY<BIGINT>))",
            "[1]",
        ),
        ("array_contains(make_array(1, 2, 3), 2)", "true"),
        ("array_contains(make_array(1, 2, 3), 4)", "false"),
        ("array_distinct(make_array(1, 1, 2, 3, 1, 2))", "[1, 2, 3]"),
        ("array_distinct(CAST(NULL AS ARRAY<BIGINT>))", "NULL"),
        (
            "array_except(make_array(1, 2, 3, 1, 2), make_array(2, 4))",
            "[1, 3]",
        ),
        (
            "array_intersect(make_array(1, 2, 3, 1, 2), make_array(2, 1))",
            "[1, 2]",
        ),
        (
            "array_union(make_array(1, 2, 3, 1, 2), make_array(4, 1))",
            "[1, 2, 3, 4]",
        ),
        ("array_join(make_array('a', 'b'), '|')", "a|b"),
        ("array_join(make_array(1, 2))", "1,2"),
        (
            "array_join(make_array('a', NULL), CAST(NULL AS VARCHAR))",
            "anull",
        ),
        ("array_join(make_array(true, false), ' ')", "true false"),
        ("array_join(CAST(NULL AS ARRAY<BIGINT>))", "NULL"),
        ("array_length(make_array(1, 2, 3))", "3"),
        ("array_max(make_array(1, 5, 3))", "5"),
        ("array_min(make_array(1, 5, 3))", "1"),
        ("array_min(make_array(CAST(NULL AS BIGINT)))", "NULL"),
        ("array_remove(make_array(1, 2, 3, 2, 1), 2)", "[1, 3, 1]"),
        ("array_remove(make_array(1, NULL, 2, NULL), NULL)", "[1, 2]"),
        ("array_remove(CAST(NULL AS ARRAY<BIGINT>), 2)", "NULL"),
        ("array_sort(make_array(3, 1, 2))", "[1, 2, 3]"),
        ("array_sort(make_array(3, 1, 2), 'DESC')", "[3, 2, 1]"),
        ("generate_series(1, 5)", "[1, 2, 3, 4, 5]"),
        ("generate_series(5, 1)", "[5, 4, 3, 2, 1]"),
        ("generate_series(1, 9, 3)", "[1, 4, 7]"),
        ("generate_series(CAST(NULL AS INT), 3)", "NULL"),
    ]);
    refused(&[
        "array_join(make_array(named_struct('a', 1)))",
        "array_remove(1, 1)",
        "array_max('x')",
        "array_contains(make_array(1, 2), 'x')",
        "array_union(make_array(1), make_array('x'))",
    ]);
}

#[test]
fn maps() {
    check(&[
        ("map_keys(map(['a', 'b'], [1, 2]))", "[a, b]"),
        ("map_values(map(['a', 'b'], [1, 2]))", "[1, 2]"),
        (
            "map_union(map(['a', 'b'], [1, 2]), map(['b', 'c'], [3, 4]))",
            "{a: 1, b: 3, c: 4}",
        ),
        (
            "map_union(map(['a'], [1]), CASE WHEN false THEN map(['b'], [2]) END)",
            "{a: 1}",
        ),
        (
            "entries(map(['b', 'a'], [2, 1]), true)",
            "[{K: a, V: 1}, {K: b, V: 2}]",
        ),
    ]);
}

#[test]
fn nulls_and_values() {
    check(&[
        ("coalesce(CAST(NULL AS INT), 2, 3)", "2"),
        ("coalesce(CAST(NULL AS INT), CAST(NULL AS INT))", "NULL"),
        ("ifnull(CAST(NULL AS VARCHAR), 'x')", "x"),
        ("ifnull('a', 'x')", "a"),
        ("nullif('a', 'a')", "NULL"),
        ("nullif('a', 'b')", "a"),
        ("as_value(5)", "5"),
        ("as_value(CAST(NULL AS VARCHAR))", "NULL"),
        // Numbers of two types meet at the wider one.
        ("ifnull(CAST(NULL AS BIGINT), CAST(0 AS INT))", "0"),
        (
            "array_length(ifnull(CAST(NULL AS ARRAY<INT>), make_array(1, 2)))",
            "2",
        ),
    ]);
    refused(&["coalesce(1, 'x')", "ifnull(1, 'x')", "nullif('a', 1)"]);
}

#[test]
fn bytes_to_numbers() {
    check(&[
        ("int_from_bytes(to_bytes('AAAH5Q==', 'base64'))", "2021"),
        (
            "int_from_bytes(to_bytes('5QcAAA==', 'base64'), 'LITTLE_ENDIAN')",
            "2021",
        ),
        (
            "bigint_from_bytes(to_bytes('AAAAASoF8gA=', 'base64'))",
            "5000000000",
        ),
        (
            "double_from_bytes(to_bytes('QICMzMzMzM0=', 'base64'))",
            "529.6",
        ),
        ("int_from_bytes(CAST(NULL AS BYTEA))", "NULL"),
        // Not four bytes: NULL (and the row's failure is logged).
        ("int_from_bytes(to_bytes('AAE=', 'base64'))", "NULL"),
    ]);
    refused(&["int_from_bytes('x')"]);
}

#[test]
fn urls() {
    let url = "'http://user:pw@www.test.com:8080/nested/path?query=1&other=x#frag'";
    check(&[
        (&format!("url_extract_protocol({url})"), "http"),
        (&format!("url_extract_host({url})"), "www.test.com"),
        (&format!("url_extract_port({url})"), "8080"),
        (&format!("url_extract_path({url})"), "/nested/path"),
        (&format!("url_extract_query({url})"), "query=1&other=x"),
        (&format!("url_extract_parameter({url}, 'other')"), "x"),
        (&format!("url_extract_parameter({url}, 'missing')"), "NULL"),
        (&format!("url_extract_fragment({url})"), "frag"),
        ("url_extract_port('http://www.test.com/path')", "NULL"),
        ("url_extract_host(CAST(NULL AS VARCHAR))", "NULL"),
        ("url_encode_param('a b&c=d')", "a+b%26c%3Dd"),
        ("url_decode_param('a+b%26c%3Dd')", "a b&c=d"),
        ("url_decode_param(CAST(NULL AS VARCHAR))", "NULL"),
    ]);
    refused(&["url_extract_host(1)"]);
}

#[test]
fn geo_distance() {
    check(&[
        (
            "round(geo_distance(37.4439, -122.1663, 51.5257, -0.1122), 6)",
            "8634.659797",
        ),
        (
            "round(geo_distance(37.4439, -122.1663, 51.5257, -0.1122, 'MI'), 6)",
            "5365.659729",
        ),
        ("geo_distance(CAST(NULL AS DOUBLE), 0.0, 0.0, 0.0)", "NULL"),
    ]);
    assert!(
        eval_error("geo_distance(0.0, 0.0, 0.0, 0.0, 'parsecs')").contains("parsecs"),
        "an unknown unit is named"
    );
}

#[test]
fn aggregates() {
    let numbers = "(1), (5), (NULL), (3), (5)";
    let cases = [
        ("count(*)", numbers, "5"),
        ("count(x)", numbers, "4"),
        ("count_distinct(x)", numbers, "3"),
        ("sum(x)", numbers, "14"),
        ("avg(x)", numbers, "3.5"),
        ("min(x)", numbers, "1"),
        ("max(x)", numbers, "5"),
        ("topk(x, 2)", numbers, "[5, 5]"),
        ("topkdistinct(x, 2)", numbers, "[5, 3]"),
        ("collect_set(x)", "(1), (5), (3), (5)", "[1, 5, 3]"),
        ("collect_list(x)", "(1), (5), (3), (5)", "[1, 5, 3, 5]"),
        ("earliest_by_offset(x)", "(NULL), (1), (5)", "1"),
        ("earliest_by_offset(x, false)", "(NULL), (1), (5)", "NULL"),
        ("earliest_by_offset(x, 2)", numbers, "[1, 5]"),
        ("latest_by_offset(x)", "(1), (5), (NULL)", "5"),
        ("latest_by_offset(x, 2)", numbers, "[3, 5]"),
        (
            "histogram(x)",
            "('a'), ('b'), ('a'), (NULL)",
            "{a: 2, b: 1}",
        ),
        // ksqlDB's STDDEV_SAMP answers the sample variance; STDDEV_SAMPLE the deviation.
        (
            "stddev_samp(x)",
            "(1.0), (2.0), (3.0), (4.0)",
            "1.6666666666666667",
        ),
        (
            "stddev_sample(x)",
            "(1.0), (2.0), (3.0), (4.0)",
            "1.2909944487358056",
        ),
        (
            "round(correlation(x, x * 2.0), 9)",
            "(1.0), (2.0), (4.0)",
            "1.0",
        ),
        (
            "round(correlation(x, 0.0 - x), 9)",
            "(1.0), (2.0), (4.0)",
            "-1.0",
        ),
        (
            "sum_list(x)",
            "(make_array(1, 2)), (make_array(3)), (NULL)",
            "6",
        ),
        ("attr(x)", "('a'), ('a')", "a"),
        ("attr(x)", "('a'), ('b')", "NULL"),
        // ksqlDB's SUM starts from zero and skips NULLs.
        ("sum(x)", "(CAST(NULL AS INT))", "0"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(call, rows, expected)| {
            let value = try_aggregate(call, rows).unwrap_or_else(|e| e);
            (value != *expected).then(|| format!("{call} over {rows} gave {value}, not {expected}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let error = try_aggregate("sum(x)", "('a')").expect_err("SUM of text is refused");
    assert!(
        error.contains("does not accept parameters (STRING)"),
        "{error}"
    );
}
