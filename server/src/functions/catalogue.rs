//! What `DESCRIBE FUNCTION` says about ksqlDB's functions: a description and each
//! signature (`name TYPE` arguments, the return type), as ksqlDB documents them. `T`, `K`,
//! `V`, `S` and `R` stand for any type. [`CATALOGUE`] holds ksqlDB's 129 scalar functions
//! and its 2 table functions, [`AGGREGATES`] its 18 aggregate functions (tests check each
//! is registered).

/// One function as `DESCRIBE FUNCTION` shows it.
#[derive(Debug)]
pub struct Documented {
    /// Upper case.
    pub name: &'static str,
    pub description: &'static str,
    /// Each form: its arguments (`"input STRING, length INT"`) and return type; a last
    /// argument ending in `...` is variadic.
    pub signatures: &'static [(&'static str, &'static str)],
}

/// The documentation of a function, by name in any case.
pub fn documented(name: &str) -> Option<&'static Documented> {
    CATALOGUE
        .iter()
        .chain(AGGREGATES)
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Whether a documented function is one of ksqlDB's aggregates.
pub fn is_aggregate(documented: &Documented) -> bool {
    AGGREGATES.iter().any(|a| std::ptr::eq(a, documented))
}

macro_rules! function {
    ($name:literal, $description:literal, [$(($args:literal, $returns:literal)),* $(,)?]) => {
        Documented {
            name: $name,
            description: $description,
            signatures: &[$(($args, $returns)),*],
        }
    };
}

pub const CATALOGUE: &[Documented] = &[
    // Strings
    function!(
        "CHR",
        "The character of a Unicode code point, or of a UTF-16 escape such as '\\u004b'.",
        [
            ("decimalCode INT", "STRING"),
            ("utf16Code STRING", "STRING")
        ]
    ),
    function!(
        "CONCAT",
        "The texts (or bytes) one after another; NULL arguments are left out.",
        [("inputs STRING...", "STRING"), ("inputs BYTES...", "BYTES")]
    ),
    function!(
        "CONCAT_WS",
        "The texts (or bytes) joined with the separator; NULL arguments are left out.",
        [
            ("separator STRING, inputs STRING...", "STRING"),
            ("separator BYTES, inputs BYTES...", "BYTES")
        ]
    ),
    function!(
        "ELT",
        "The n-th text (from 1), NULL when n is out of range.",
        [("n INT, args STRING...", "STRING")]
    ),
    function!(
        "ENCODE",
        "Text written in one encoding (hex, utf8, ascii, base64) rewritten in another.",
        [(
            "input STRING, inputEncoding STRING, outputEncoding STRING",
            "STRING"
        )]
    ),
    function!(
        "FIELD",
        "The position (from 1) of the first argument equal to the text, 0 when none is.",
        [("str STRING, args STRING...", "INT")]
    ),
    function!(
        "FROM_BYTES",
        "Bytes as text in an encoding: hex, utf8, ascii or base64.",
        [("bytes BYTES, encoding STRING", "STRING")]
    ),
    function!(
        "INITCAP",
        "The text with the first letter of each word upper case and the rest lower case.",
        [("input STRING", "STRING")]
    ),
    function!(
        "INSTR",
        "The position (from 1) of a substring, searching from a position for its n-th occurrence; 0 when absent.",
        [
            ("str STRING, substring STRING", "INT"),
            ("str STRING, substring STRING, position INT", "INT"),
            (
                "str STRING, substring STRING, position INT, occurrence INT",
                "INT"
            )
        ]
    ),
    function!(
        "LCASE",
        "The text in lower case.",
        [("input STRING", "STRING")]
    ),
    function!(
        "LEN",
        "The length of a text in UTF-16 code units, as Java counts it (an emoji counts two), or its number of bytes.",
        [("input STRING", "INT"), ("input BYTES", "INT")]
    ),
    function!(
        "LPAD",
        "The input cut or padded on the left with the padding to the length; NULL for a negative length or empty padding.",
        [
            ("input STRING, length INT, padding STRING", "STRING"),
            ("input BYTES, length INT, padding BYTES", "BYTES")
        ]
    ),
    function!(
        "MASK",
        "Upper-case letters as X, lower-case as x, digits as n, other characters as -, or as the replacements given (NULL keeps them).",
        [
            ("input STRING", "STRING"),
            (
                "input STRING, upper STRING, lower STRING, digit STRING, other STRING",
                "STRING"
            )
        ]
    ),
    function!(
        "MASK_KEEP_LEFT",
        "MASK except the first numChars characters.",
        [
            ("input STRING, numChars INT", "STRING"),
            (
                "input STRING, numChars INT, upper STRING, lower STRING, digit STRING, other STRING",
                "STRING"
            )
        ]
    ),
    function!(
        "MASK_KEEP_RIGHT",
        "MASK except the last numChars characters.",
        [
            ("input STRING, numChars INT", "STRING"),
            (
                "input STRING, numChars INT, upper STRING, lower STRING, digit STRING, other STRING",
                "STRING"
            )
        ]
    ),
    function!(
        "MASK_LEFT",
        "MASK of the first numChars characters only.",
        [
            ("input STRING, numChars INT", "STRING"),
            (
                "input STRING, numChars INT, upper STRING, lower STRING, digit STRING, other STRING",
                "STRING"
            )
        ]
    ),
    function!(
        "MASK_RIGHT",
        "MASK of the last numChars characters only.",
        [
            ("input STRING, numChars INT", "STRING"),
            (
                "input STRING, numChars INT, upper STRING, lower STRING, digit STRING, other STRING",
                "STRING"
            )
        ]
    ),
    function!(
        "MD5",
        "The MD5 hash of the text, as 32 hex digits.",
        [("input STRING", "STRING")]
    ),
    function!(
        "REPLACE",
        "The text with every occurrence of a substring replaced.",
        [("str STRING, substring STRING, replacement STRING", "STRING")]
    ),
    function!(
        "RPAD",
        "The input cut or padded on the right with the padding to the length; NULL for a negative length or empty padding.",
        [
            ("input STRING, length INT, padding STRING", "STRING"),
            ("input BYTES, length INT, padding BYTES", "BYTES")
        ]
    ),
    function!(
        "SPLIT",
        "The parts between delimiters, empty ones kept; an empty delimiter splits into characters (bytes).",
        [
            ("string STRING, delimiter STRING", "ARRAY<STRING>"),
            ("bytes BYTES, delimiter BYTES", "ARRAY<BYTES>")
        ]
    ),
    function!(
        "SPLIT_TO_MAP",
        "A map from a text of entries split at entryDelimiter, each split at kvDelimiter.",
        [(
            "input STRING, entryDelimiter STRING, kvDelimiter STRING",
            "MAP<STRING, STRING>"
        )]
    ),
    function!(
        "SUBSTRING",
        "The part of a text (or bytes) from a position (from 1; negative counts from the end), of a length or to the end.",
        [
            ("str STRING, pos INT", "STRING"),
            ("str STRING, pos INT, length INT", "STRING"),
            ("bytes BYTES, pos INT", "BYTES"),
            ("bytes BYTES, pos INT, length INT", "BYTES")
        ]
    ),
    function!(
        "TO_BYTES",
        "Text in an encoding (hex, utf8, ascii, base64) as bytes.",
        [("string STRING, encoding STRING", "BYTES")]
    ),
    function!(
        "TRIM",
        "The text without leading and trailing spaces and control characters.",
        [("input STRING", "STRING")]
    ),
    function!(
        "UCASE",
        "The text in upper case.",
        [("input STRING", "STRING")]
    ),
    function!("UUID", "A random UUID, as text.", [("", "STRING")]),
    // Regular expressions
    function!(
        "REGEXP_EXTRACT",
        "The first match of the pattern in the text, or the group of it; NULL when nothing matches.",
        [
            ("pattern STRING, str STRING", "STRING"),
            ("pattern STRING, str STRING, group INT", "STRING")
        ]
    ),
    function!(
        "REGEXP_EXTRACT_ALL",
        "Every match of the pattern in the text, or the group of each.",
        [
            ("pattern STRING, str STRING", "ARRAY<STRING>"),
            ("pattern STRING, str STRING, group INT", "ARRAY<STRING>")
        ]
    ),
    function!(
        "REGEXP_REPLACE",
        "The text with every match of the pattern replaced ($1 names a group).",
        [("str STRING, pattern STRING, replacement STRING", "STRING")]
    ),
    function!(
        "REGEXP_SPLIT_TO_ARRAY",
        "The parts of the text between matches of the pattern.",
        [("str STRING, pattern STRING", "ARRAY<STRING>")]
    ),
    // Math
    function!(
        "ABS",
        "The absolute value.",
        [
            ("value INT", "INT"),
            ("value BIGINT", "BIGINT"),
            ("value DOUBLE", "DOUBLE"),
            ("value DECIMAL", "DECIMAL")
        ]
    ),
    function!(
        "ACOS",
        "The inverse cosine, in radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "ASIN",
        "The inverse sine, in radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "ATAN",
        "The inverse tangent, in radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "ATAN2",
        "The angle, in radians, of the point (x, y).",
        [("y DOUBLE, x DOUBLE", "DOUBLE")]
    ),
    function!("CBRT", "The cube root.", [("value DOUBLE", "DOUBLE")]),
    function!(
        "CEIL",
        "The smallest whole number not below the value.",
        [
            ("value INT", "INT"),
            ("value BIGINT", "BIGINT"),
            ("value DOUBLE", "DOUBLE"),
            ("value DECIMAL", "DECIMAL")
        ]
    ),
    function!(
        "COS",
        "The cosine of an angle in radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "COSH",
        "The hyperbolic cosine.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "COT",
        "The cotangent of an angle in radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "DEGREES",
        "Radians as degrees.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "EXP",
        "e raised to the value.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "FLOOR",
        "The largest whole number not above the value.",
        [
            ("value INT", "INT"),
            ("value BIGINT", "BIGINT"),
            ("value DOUBLE", "DOUBLE"),
            ("value DECIMAL", "DECIMAL")
        ]
    ),
    function!(
        "GREATEST",
        "The greatest of the values, NULLs left out; a DECIMAL keeps the scale of the value taken.",
        [("val T, vals T...", "T")]
    ),
    function!(
        "LEAST",
        "The least of the values, NULLs left out; a DECIMAL keeps the scale of the value taken.",
        [("val T, vals T...", "T")]
    ),
    function!("LN", "The natural logarithm.", [("value DOUBLE", "DOUBLE")]),
    function!(
        "LOG",
        "The natural logarithm, or the logarithm in a base (NaN for a base not above 0, or 1).",
        [
            ("value DOUBLE", "DOUBLE"),
            ("base DOUBLE, value DOUBLE", "DOUBLE")
        ]
    ),
    function!("PI", "The number pi.", [("", "DOUBLE")]),
    function!(
        "POWER",
        "The base raised to the exponent.",
        [("base DOUBLE, exponent DOUBLE", "DOUBLE")]
    ),
    function!(
        "RADIANS",
        "Degrees as radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "RANDOM",
        "A random DOUBLE from 0 (included) to 1.",
        [("", "DOUBLE")]
    ),
    function!(
        "ROUND",
        "The value rounded to a whole number or to decimal places, ties towards positive infinity.",
        [
            ("value INT", "INT"),
            ("value BIGINT", "BIGINT"),
            ("value DOUBLE", "BIGINT"),
            ("value DOUBLE, decimalPlaces INT", "DOUBLE"),
            ("value DECIMAL", "DECIMAL"),
            ("value DECIMAL, decimalPlaces INT", "DECIMAL")
        ]
    ),
    function!(
        "SIGN",
        "-1, 0 or 1: the sign of the value.",
        [
            ("value INT", "INT"),
            ("value BIGINT", "INT"),
            ("value DOUBLE", "INT"),
            ("value DECIMAL", "INT")
        ]
    ),
    function!(
        "SIN",
        "The sine of an angle in radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!("SINH", "The hyperbolic sine.", [("value DOUBLE", "DOUBLE")]),
    function!(
        "SQRT",
        "The square root (NaN below zero).",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "TAN",
        "The tangent of an angle in radians.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "TANH",
        "The hyperbolic tangent.",
        [("value DOUBLE", "DOUBLE")]
    ),
    function!(
        "TRUNC",
        "The value without its fraction, or cut to decimal places.",
        [
            ("value DOUBLE", "DOUBLE"),
            ("value DOUBLE, decimalPlaces INT", "DOUBLE"),
            ("value DECIMAL", "DECIMAL"),
            ("value DECIMAL, decimalPlaces INT", "DECIMAL")
        ]
    ),
    // Dates and times
    function!(
        "CONVERT_TZ",
        "A wall-clock TIMESTAMP of one time zone read in another.",
        [("ts TIMESTAMP, fromTz STRING, toTz STRING", "TIMESTAMP")]
    ),
    function!(
        "DATEADD",
        "A DATE moved forward by an interval of a unit (DAYS, HOURS, …).",
        [("unit TIMEUNIT, interval INT, date DATE", "DATE")]
    ),
    function!(
        "DATESUB",
        "A DATE moved back by an interval of a unit.",
        [("unit TIMEUNIT, interval INT, date DATE", "DATE")]
    ),
    function!(
        "FORMAT_DATE",
        "A DATE as text in a Java DateTimeFormatter pattern.",
        [("date DATE, pattern STRING", "STRING")]
    ),
    function!(
        "FORMAT_TIME",
        "A TIME as text in a Java DateTimeFormatter pattern.",
        [("time TIME, pattern STRING", "STRING")]
    ),
    function!(
        "FORMAT_TIMESTAMP",
        "A TIMESTAMP as text in a Java DateTimeFormatter pattern, in UTC or a time zone.",
        [
            ("ts TIMESTAMP, pattern STRING", "STRING"),
            ("ts TIMESTAMP, pattern STRING, timeZone STRING", "STRING")
        ]
    ),
    function!(
        "FROM_DAYS",
        "Days since 1970-01-01 as a DATE.",
        [("days INT", "DATE")]
    ),
    function!(
        "FROM_UNIXTIME",
        "Milliseconds since the epoch as a TIMESTAMP.",
        [("millis BIGINT", "TIMESTAMP")]
    ),
    function!(
        "PARSE_DATE",
        "Text in a Java DateTimeFormatter pattern as a DATE.",
        [("date STRING, pattern STRING", "DATE")]
    ),
    function!(
        "PARSE_TIME",
        "Text in a Java DateTimeFormatter pattern as a TIME.",
        [("time STRING, pattern STRING", "TIME")]
    ),
    function!(
        "PARSE_TIMESTAMP",
        "Text in a Java DateTimeFormatter pattern as a TIMESTAMP, read in UTC or a time zone.",
        [
            ("ts STRING, pattern STRING", "TIMESTAMP"),
            ("ts STRING, pattern STRING, timeZone STRING", "TIMESTAMP")
        ]
    ),
    function!(
        "TIMEADD",
        "A TIME moved forward by an interval of a unit, around the clock.",
        [("unit TIMEUNIT, interval INT, time TIME", "TIME")]
    ),
    function!(
        "TIMESUB",
        "A TIME moved back by an interval of a unit, around the clock.",
        [("unit TIMEUNIT, interval INT, time TIME", "TIME")]
    ),
    function!(
        "TIMESTAMPADD",
        "A TIMESTAMP moved forward by an interval of a unit.",
        [("unit TIMEUNIT, interval INT, ts TIMESTAMP", "TIMESTAMP")]
    ),
    function!(
        "TIMESTAMPSUB",
        "A TIMESTAMP moved back by an interval of a unit.",
        [("unit TIMEUNIT, interval INT, ts TIMESTAMP", "TIMESTAMP")]
    ),
    function!(
        "UNIX_DATE",
        "Days since 1970-01-01: of a DATE, or of today.",
        [("", "INT"), ("date DATE", "INT")]
    ),
    function!(
        "UNIX_TIMESTAMP",
        "Milliseconds since the epoch: of a TIMESTAMP, or of now.",
        [("", "BIGINT"), ("ts TIMESTAMP", "BIGINT")]
    ),
    function!(
        "DATETOSTRING",
        "Days since 1970-01-01 as text in a Java DateTimeFormatter pattern (deprecated: FORMAT_DATE).",
        [("epochDays INT, pattern STRING", "STRING")]
    ),
    function!(
        "STRINGTODATE",
        "Text in a Java DateTimeFormatter pattern as days since 1970-01-01 (deprecated: PARSE_DATE).",
        [("date STRING, pattern STRING", "INT")]
    ),
    function!(
        "STRINGTOTIMESTAMP",
        "Text in a Java DateTimeFormatter pattern as milliseconds since the epoch (deprecated: PARSE_TIMESTAMP).",
        [
            ("ts STRING, pattern STRING", "BIGINT"),
            ("ts STRING, pattern STRING, timeZone STRING", "BIGINT")
        ]
    ),
    function!(
        "TIMESTAMPTOSTRING",
        "Milliseconds since the epoch as text in a Java DateTimeFormatter pattern (deprecated: FORMAT_TIMESTAMP).",
        [
            ("epochMilli BIGINT, pattern STRING", "STRING"),
            (
                "epochMilli BIGINT, pattern STRING, timeZone STRING",
                "STRING"
            )
        ]
    ),
    // JSON
    function!(
        "EXTRACTJSONFIELD",
        "The value at a JSON path ($.a.b[0]) of a JSON text; strings unquoted, other values as JSON.",
        [("input STRING, path STRING", "STRING")]
    ),
    function!(
        "IS_JSON_STRING",
        "Whether the text is one JSON value.",
        [("json STRING", "BOOLEAN")]
    ),
    function!(
        "JSON_ARRAY_CONTAINS",
        "Whether a JSON array holds the value.",
        [
            ("jsonArray STRING, val STRING", "BOOLEAN"),
            ("jsonArray STRING, val INT", "BOOLEAN"),
            ("jsonArray STRING, val BIGINT", "BOOLEAN"),
            ("jsonArray STRING, val DOUBLE", "BOOLEAN"),
            ("jsonArray STRING, val BOOLEAN", "BOOLEAN")
        ]
    ),
    function!(
        "JSON_ARRAY_LENGTH",
        "The number of items of a JSON array.",
        [("jsonArray STRING", "INT")]
    ),
    function!(
        "JSON_CONCAT",
        "JSON objects merged, or every value joined into one JSON array.",
        [("jsonStrings STRING...", "STRING")]
    ),
    function!(
        "JSON_ITEMS",
        "The items of a JSON array, each as JSON text.",
        [("jsonArray STRING", "ARRAY<STRING>")]
    ),
    function!(
        "JSON_KEYS",
        "The keys of a JSON object.",
        [("jsonObj STRING", "ARRAY<STRING>")]
    ),
    function!(
        "JSON_RECORDS",
        "The fields of a JSON object, each value as JSON text.",
        [("jsonObj STRING", "MAP<STRING, STRING>")]
    ),
    function!(
        "TO_JSON_STRING",
        "Any value as JSON text.",
        [("input T", "STRING")]
    ),
    // Arrays
    function!(
        "ARRAY_CONCAT",
        "The items of both arrays, in order.",
        [("left ARRAY<T>, right ARRAY<T>", "ARRAY<T>")]
    ),
    function!(
        "ARRAY_CONTAINS",
        "Whether the array holds the value.",
        [("array ARRAY<T>, val T", "BOOLEAN")]
    ),
    function!(
        "ARRAY_DISTINCT",
        "The array without repeated items.",
        [("array ARRAY<T>", "ARRAY<T>")]
    ),
    function!(
        "ARRAY_EXCEPT",
        "The distinct items of the first array not in the second.",
        [("left ARRAY<T>, right ARRAY<T>", "ARRAY<T>")]
    ),
    function!(
        "ARRAY_INTERSECT",
        "The distinct items in both arrays.",
        [("left ARRAY<T>, right ARRAY<T>", "ARRAY<T>")]
    ),
    function!(
        "ARRAY_JOIN",
        "The items as text joined with a delimiter (a comma by default).",
        [
            ("array ARRAY<T>", "STRING"),
            ("array ARRAY<T>, delimiter STRING", "STRING")
        ]
    ),
    function!(
        "ARRAY_LENGTH",
        "The number of items.",
        [("array ARRAY<T>", "INT")]
    ),
    function!(
        "ARRAY_MAX",
        "The greatest item, NULLs left out.",
        [("array ARRAY<T>", "T")]
    ),
    function!(
        "ARRAY_MIN",
        "The least item, NULLs left out.",
        [("array ARRAY<T>", "T")]
    ),
    function!(
        "ARRAY_REMOVE",
        "The array without the items equal to the value.",
        [("array ARRAY<T>, victim T", "ARRAY<T>")]
    ),
    function!(
        "ARRAY_SORT",
        "The items sorted, ascending or descending, NULLs last.",
        [
            ("array ARRAY<T>", "ARRAY<T>"),
            ("array ARRAY<T>, direction STRING", "ARRAY<T>")
        ]
    ),
    function!(
        "ARRAY_UNION",
        "The distinct items of either array.",
        [("left ARRAY<T>, right ARRAY<T>", "ARRAY<T>")]
    ),
    function!(
        "GENERATE_SERIES",
        "The numbers from start to end, both included, by a step.",
        [
            ("start INT, end INT", "ARRAY<INT>"),
            ("start INT, end INT, step INT", "ARRAY<INT>"),
            ("start BIGINT, end BIGINT", "ARRAY<BIGINT>"),
            ("start BIGINT, end BIGINT, step INT", "ARRAY<BIGINT>")
        ]
    ),
    function!(
        "SLICE",
        "The items from one position to another (from 1, both included).",
        [("array ARRAY<T>, from INT, to INT", "ARRAY<T>")]
    ),
    // Maps
    function!(
        "AS_MAP",
        "A map of each key to the value at the same position.",
        [("keys ARRAY<STRING>, values ARRAY<T>", "MAP<STRING, T>")]
    ),
    function!(
        "ENTRIES",
        "The map's entries as structs of K and V, sorted by key if asked.",
        [(
            "map MAP<STRING, T>, sorted BOOLEAN",
            "ARRAY<STRUCT<K STRING, V T>>"
        )]
    ),
    function!(
        "MAP_KEYS",
        "The map's keys.",
        [("map MAP<STRING, T>", "ARRAY<STRING>")]
    ),
    function!(
        "MAP_UNION",
        "Both maps' entries; the second's value wins for a key in both.",
        [("map1 MAP<STRING, T>, map2 MAP<STRING, T>", "MAP<STRING, T>")]
    ),
    function!(
        "MAP_VALUES",
        "The map's values.",
        [("map MAP<STRING, T>", "ARRAY<T>")]
    ),
    // Lambdas
    function!(
        "TRANSFORM",
        "Each item of an array, or each key and value of a map, rewritten by lambdas.",
        [
            ("array ARRAY<T>, function T => R", "ARRAY<R>"),
            (
                "map MAP<K, V>, keyFunction (K, V) => K2, valueFunction (K, V) => V2",
                "MAP<K2, V2>"
            )
        ]
    ),
    function!(
        "FILTER",
        "The items of an array or map the lambda is true for.",
        [
            ("array ARRAY<T>, function T => BOOLEAN", "ARRAY<T>"),
            ("map MAP<K, V>, function (K, V) => BOOLEAN", "MAP<K, V>")
        ]
    ),
    function!(
        "REDUCE",
        "A state folded over the items of an array or map by a lambda, from an initial state.",
        [
            ("array ARRAY<T>, initialState S, function (S, T) => S", "S"),
            (
                "map MAP<K, V>, initialState S, function (S, K, V) => S",
                "S"
            )
        ]
    ),
    // Nulls
    function!(
        "COALESCE",
        "The first argument that is not NULL.",
        [("first T, others T...", "T")]
    ),
    function!(
        "IFNULL",
        "The expression, or the alternative where it is NULL.",
        [("expression T, altValue T", "T")]
    ),
    function!(
        "NULLIF",
        "NULL when both arguments are equal, else the first.",
        [("expr1 T, expr2 T", "T")]
    ),
    // Bytes
    function!(
        "BIGINT_FROM_BYTES",
        "Eight bytes as a BIGINT, big-endian or as the byte order says.",
        [
            ("value BYTES", "BIGINT"),
            ("value BYTES, byteOrder STRING", "BIGINT")
        ]
    ),
    function!(
        "DOUBLE_FROM_BYTES",
        "Eight bytes as a DOUBLE, big-endian or as the byte order says.",
        [
            ("value BYTES", "DOUBLE"),
            ("value BYTES, byteOrder STRING", "DOUBLE")
        ]
    ),
    function!(
        "INT_FROM_BYTES",
        "Four bytes as an INT, big-endian or as the byte order says.",
        [
            ("value BYTES", "INT"),
            ("value BYTES, byteOrder STRING", "INT")
        ]
    ),
    // URLs
    function!(
        "URL_DECODE_PARAM",
        "A form-encoded text decoded (+ is a space).",
        [("input STRING", "STRING")]
    ),
    function!(
        "URL_ENCODE_PARAM",
        "A text form-encoded (a space is +).",
        [("input STRING", "STRING")]
    ),
    function!(
        "URL_EXTRACT_FRAGMENT",
        "The fragment of a URL, decoded.",
        [("input STRING", "STRING")]
    ),
    function!(
        "URL_EXTRACT_HOST",
        "The host of a URL.",
        [("input STRING", "STRING")]
    ),
    function!(
        "URL_EXTRACT_PARAMETER",
        "The value of a query parameter of a URL, still encoded.",
        [("input STRING, paramToFind STRING", "STRING")]
    ),
    function!(
        "URL_EXTRACT_PATH",
        "The path of a URL, decoded.",
        [("input STRING", "STRING")]
    ),
    function!(
        "URL_EXTRACT_PORT",
        "The port of a URL.",
        [("input STRING", "INT")]
    ),
    function!(
        "URL_EXTRACT_PROTOCOL",
        "The scheme of a URL.",
        [("input STRING", "STRING")]
    ),
    function!(
        "URL_EXTRACT_QUERY",
        "The query of a URL, decoded.",
        [("input STRING", "STRING")]
    ),
    // Other
    function!(
        "AS_VALUE",
        "A key column copied into the value.",
        [("source T", "T")]
    ),
    function!(
        "GEO_DISTANCE",
        "The great-circle distance between two points, in km or miles.",
        [
            (
                "lat1 DOUBLE, lon1 DOUBLE, lat2 DOUBLE, lon2 DOUBLE",
                "DOUBLE"
            ),
            (
                "lat1 DOUBLE, lon1 DOUBLE, lat2 DOUBLE, lon2 DOUBLE, units STRING",
                "DOUBLE"
            )
        ]
    ),
    // Table functions
    function!(
        "EXPLODE",
        "One row per item of the array.",
        [("input ARRAY<DECIMAL>", "DECIMAL"), ("list ARRAY<T>", "T")]
    ),
    function!(
        "CUBE_EXPLODE",
        "One row per combination of the array's items with some left NULL.",
        [("list ARRAY<T>", "ARRAY<T>")]
    ),
];

/// ksqlDB's aggregate functions.
pub const AGGREGATES: &[Documented] = &[
    function!(
        "ATTR",
        "The value when every row of the group has the same one, else NULL.",
        [("col T", "T")]
    ),
    function!(
        "AVG",
        "The average of the values.",
        [
            ("col INT", "DOUBLE"),
            ("col BIGINT", "DOUBLE"),
            ("col DOUBLE", "DOUBLE"),
            ("col DECIMAL", "DOUBLE")
        ]
    ),
    function!(
        "COLLECT_LIST",
        "Every value, in the order the rows came (at most 1,000).",
        [("col T", "ARRAY<T>")]
    ),
    function!(
        "COLLECT_SET",
        "The distinct values, in the order they first came (at most 1,000).",
        [("col T", "ARRAY<T>")]
    ),
    function!(
        "CORRELATION",
        "The correlation coefficient of two columns.",
        [("x DOUBLE, y DOUBLE", "DOUBLE")]
    ),
    function!(
        "COUNT",
        "The number of rows (COUNT(*)), or of values that are not NULL.",
        [("", "BIGINT"), ("col T", "BIGINT")]
    ),
    function!(
        "COUNT_DISTINCT",
        "The number of distinct values that are not NULL (an estimate for many).",
        [("col T", "BIGINT")]
    ),
    function!(
        "EARLIEST_BY_OFFSET",
        "The value of the earliest row by offset, or the earliest n values; NULLs skipped \
         unless ignoreNulls is false.",
        [
            ("col T", "T"),
            ("col T, ignoreNulls BOOLEAN", "T"),
            ("col T, earliestN INT", "ARRAY<T>"),
            ("col T, earliestN INT, ignoreNulls BOOLEAN", "ARRAY<T>")
        ]
    ),
    function!(
        "HISTOGRAM",
        "How many times each value came (at most 1,000 values).",
        [("col STRING", "MAP<STRING, BIGINT>")]
    ),
    function!(
        "LATEST_BY_OFFSET",
        "The value of the latest row by offset, or the latest n values; NULLs skipped \
         unless ignoreNulls is false.",
        [
            ("col T", "T"),
            ("col T, ignoreNulls BOOLEAN", "T"),
            ("col T, latestN INT", "ARRAY<T>"),
            ("col T, latestN INT, ignoreNulls BOOLEAN", "ARRAY<T>")
        ]
    ),
    function!(
        "MAX",
        "The largest value.",
        [
            ("col INT", "INT"),
            ("col BIGINT", "BIGINT"),
            ("col DOUBLE", "DOUBLE"),
            ("col DECIMAL", "DECIMAL"),
            ("col STRING", "STRING"),
            ("col BYTES", "BYTES"),
            ("col DATE", "DATE"),
            ("col TIME", "TIME"),
            ("col TIMESTAMP", "TIMESTAMP")
        ]
    ),
    function!(
        "MIN",
        "The smallest value.",
        [
            ("col INT", "INT"),
            ("col BIGINT", "BIGINT"),
            ("col DOUBLE", "DOUBLE"),
            ("col DECIMAL", "DECIMAL"),
            ("col STRING", "STRING"),
            ("col BYTES", "BYTES"),
            ("col DATE", "DATE"),
            ("col TIME", "TIME"),
            ("col TIMESTAMP", "TIMESTAMP")
        ]
    ),
    function!(
        "STDDEV_SAMP",
        "The sample variance of the values, as ksqlDB's STDDEV_SAMP answers it.",
        [
            ("col INT", "DOUBLE"),
            ("col BIGINT", "DOUBLE"),
            ("col DOUBLE", "DOUBLE")
        ]
    ),
    function!(
        "STDDEV_SAMPLE",
        "The sample standard deviation of the values.",
        [
            ("col INT", "DOUBLE"),
            ("col BIGINT", "DOUBLE"),
            ("col DOUBLE", "DOUBLE")
        ]
    ),
    function!(
        "SUM",
        "The sum of the values.",
        [
            ("col INT", "INT"),
            ("col BIGINT", "BIGINT"),
            ("col DOUBLE", "DOUBLE"),
            ("col DECIMAL", "DECIMAL")
        ]
    ),
    function!(
        "SUM_LIST",
        "The sum of the items of every array.",
        [
            ("col ARRAY<INT>", "INT"),
            ("col ARRAY<BIGINT>", "BIGINT"),
            ("col ARRAY<DOUBLE>", "DOUBLE")
        ]
    ),
    function!(
        "TOPK",
        "The k largest values, largest first.",
        [("col T, k INT", "ARRAY<T>")]
    ),
    function!(
        "TOPKDISTINCT",
        "The k largest distinct values, largest first.",
        [("col T, k INT", "ARRAY<T>")]
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ksqldb_scalar_and_table_function_is_documented_once() {
        let mut names: Vec<&str> = CATALOGUE.iter().chain(AGGREGATES).map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            CATALOGUE.len() + AGGREGATES.len(),
            "a function documented twice"
        );
        assert_eq!(AGGREGATES.len(), 18);
        for name in super::super::table::NAMES {
            assert!(documented(name).is_some(), "{name}");
        }
        for function in CATALOGUE.iter().chain(AGGREGATES) {
            assert!(!function.signatures.is_empty(), "{}", function.name);
            assert!(!function.description.is_empty(), "{}", function.name);
        }
    }
}
