//! Runs one conformance case in a fresh in-process engine on a fresh embedded log, and says
//! whether Riffle's behaviour matches ksqlDB's expected outputs or error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use riffle_server::catalog::Source;
use riffle_server::engine::{Engine, PROCESSING_LOG_TOPIC, Properties};
use riffle_server::format::{Format, FormatSpec};
use riffle_server::log::embedded::{EmbeddedLog, EmbeddedOptions};
use riffle_server::log::{Acks, FetchRequest, Log, ProducerRecord, Record, TopicConfig};
use riffle_server::types::{LogicalSchema, SqlType};
use serde_json::Value;

use crate::corpus::{Case, TestRecord};

/// How a case went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// Runs a case (in its own runtime-independent way: the caller provides the runtime).
pub async fn run_case(case: &Case) -> Outcome {
    outcome(case, || run(case)).await
}

/// How a case went when `run` runs it: skipped when the case says so, failed after 60 s.
pub(crate) async fn outcome<F>(case: &Case, run: impl FnOnce() -> F) -> Outcome
where
    F: std::future::Future<Output = Result<(), String>>,
{
    if let Some(reason) = &case.skip {
        return Outcome::Skipped(reason.clone());
    }
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(reason)) => Outcome::Failed(reason),
        Err(_) => Outcome::Failed("timed out after 60 s".into()),
    }
}

async fn run(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let options = EmbeddedOptions {
        cleaner_interval: Duration::from_secs(3600),
    };
    let log = EmbeddedLog::open(dir.path(), options).map_err(|e| format!("log: {e}"))?;
    let engine = Engine::start(Arc::new(log.clone()))
        .await
        .map_err(|e| format!("engine: {e}"))?;
    for udaf in crate::test_functions::aggregate_functions() {
        engine.register_aggregate_function(udaf);
    }
    for udf in crate::test_functions::scalar_functions() {
        engine.register_scalar_function(udf);
    }
    for udtf in crate::test_functions::table_functions() {
        engine.register_table_function(udtf);
    }
    let result = drive(case, &log, &engine).await;
    engine.shutdown().await;
    result
}

/// ksqlDB's record cache size: 0 emits every change of an aggregation.
pub const CACHE_PROPERTY: &str = "ksql.streams.cache.max.bytes.buffering";

async fn drive(case: &Case, log: &EmbeddedLog, engine: &Engine) -> Result<(), String> {
    // ksqlDB's test harness reads from the start and turns the record cache off: every
    // change an aggregation makes is emitted.
    let mut properties = Properties::from([
        ("auto.offset.reset".to_string(), "earliest".to_string()),
        (CACHE_PROPERTY.to_string(), "0".to_string()),
    ]);
    properties.extend(case.properties.iter().cloned());
    create_topics(case, log, Layout::QUERY_VALIDATION).await?;
    // As ksqlDB's test driver, the statements run as one script, one per line: errors
    // point at their line and column in it.
    let script = case
        .statements
        .iter()
        .map(|statement| match statement.trim_end().ends_with(';') {
            true => statement.clone(),
            false => format!("{statement};"),
        })
        .collect::<Vec<_>>()
        .join("\n");
    if let Err(error) = engine.execute(&script, &properties).await {
        let message = error.to_string();
        return match &case.expected_error {
            Some(expected) if message.contains(expected.as_str()) => Ok(()),
            Some(expected) => Err(format!(
                "expected an error containing {expected:?}, got {message:?}"
            )),
            None => Err(format!("statement failed: {message}")),
        };
    }
    let produced = produce_inputs(case, log, engine, Layout::QUERY_VALIDATION).await;
    // An expected error that no statement raised may stop a query on a record.
    if let Some(expected) = &case.expected_error {
        return match produced {
            Err(message) if message.contains(expected.as_str()) => Ok(()),
            Err(message) => Err(format!(
                "expected an error containing {expected:?}, got {message:?}"
            )),
            Ok(_) => Err(format!(
                "expected an error containing {expected:?}, but every statement ran and every \
                 input was processed"
            )),
        };
    }
    let arrivals = produced?;
    compare_outputs(case, log, engine, &arrivals).await?;
    if let Some(pattern) = &case.topic_blacklist {
        check_topic_blacklist(log, pattern).await?;
    }
    for (name, schema) in &case.post_sources {
        let source = engine
            .source(name)
            .await
            .ok_or_else(|| format!("expected a source named {name}"))?;
        let expected = riffle_grammar::parse_table_elements(schema)
            .map_err(|e| format!("the expected schema of {name} does not parse: {e}"))
            .and_then(|defs| LogicalSchema::from_column_defs(&defs, &|_| None).map_err(|e| e.0))?;
        if expected != source.schema {
            return Err(format!(
                "schema of {name}: expected {expected}, got {}",
                source.schema
            ));
        }
    }
    Ok(())
}

/// Fails when a topic's whole name matches `pattern` (a Java regular expression; the
/// corpus only uses forms Rust's `regex` reads the same way).
async fn check_topic_blacklist(log: &EmbeddedLog, pattern: &str) -> Result<(), String> {
    let whole = regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("the topic blacklist {pattern:?} does not parse: {e}"))?;
    let topics = log
        .list_topics()
        .await
        .map_err(|e| format!("listing topics: {e}"))?;
    match topics.iter().find(|topic| whole.is_match(topic)) {
        Some(topic) => Err(format!(
            "topic {topic} should not exist (matches {pattern})"
        )),
        None => Ok(()),
    }
}

/// How a harness lays out the topics it creates and the inputs it writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Partitions of a topic the case does not size.
    default_partitions: i32,
    /// Inputs go to the partition their key hashes to (Kafka's default partitioner), not
    /// all to partition 0.
    by_key: bool,
}

impl Layout {
    /// ksqlDB's query-validation driver: one partition, every input in it.
    pub(crate) const QUERY_VALIDATION: Layout = Layout {
        default_partitions: 1,
        by_key: false,
    };
    /// ksqlDB's REST test driver: four partitions, inputs placed by key (its cases read
    /// `ROWPARTITION` 2 for the key `x`).
    pub(crate) const REST: Layout = Layout {
        default_partitions: 4,
        by_key: true,
    };
}

/// Creates the topics the case needs before its statements run.
pub(crate) async fn create_topics(
    case: &Case,
    log: &EmbeddedLog,
    layout: Layout,
) -> Result<(), String> {
    for topic in topics_to_create(case, layout.default_partitions) {
        if log.describe_topic(&topic.0).await.is_err() {
            log.create_topic(&topic.0, TopicConfig::new(topic.1))
                .await
                .map_err(|e| format!("creating topic {}: {e}", topic.0))?;
        }
    }
    Ok(())
}

/// When each record of the case's output topics arrived: the end offset of every partition
/// of each output topic before the first input and after each input was processed. Records
/// are compared in the order of the inputs that caused them, as ksqlDB's test driver
/// produces them, whichever partitions they went to.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    ends: std::collections::HashMap<String, Vec<Vec<i64>>>,
}

impl Arrivals {
    /// Notes the output topics' end offsets now.
    async fn snapshot(&mut self, case: &Case, log: &EmbeddedLog) {
        let mut topics: Vec<&str> = case.outputs.iter().map(|o| o.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            let ends = match log.describe_topic(topic).await {
                Ok(description) => description
                    .partitions
                    .iter()
                    .map(|p| p.end_offset)
                    .collect(),
                Err(_) => Vec::new(),
            };
            self.ends.entry(topic.to_string()).or_default().push(ends);
        }
    }

    /// Which step a record at `offset` of a partition arrived in: 0 before the first input,
    /// `i` while the `i`-th input was processed.
    fn step(&self, topic: &str, partition: usize, offset: i64) -> usize {
        self.ends.get(topic).map_or(0, |steps| {
            steps
                .iter()
                .take_while(|ends| ends.get(partition).is_none_or(|end| *end <= offset))
                .count()
        })
    }
}

/// Writes the case's inputs one at a time, each encoded in the formats of the source over
/// its topic, waiting after each until the queries have processed it.
pub(crate) async fn produce_inputs(
    case: &Case,
    log: &EmbeddedLog,
    engine: &Engine,
    layout: Layout,
) -> Result<Arrivals, String> {
    let mut arrivals = Arrivals::default();
    arrivals.snapshot(case, log).await;
    for input in &case.inputs {
        let source = source_on(engine, &input.topic, &case.statements).await;
        let record = ProducerRecord {
            partition: (!layout.by_key).then_some(0),
            timestamp: Some(input.timestamp.unwrap_or(0)),
            key: windowed(
                encode(
                    &input.key,
                    source.as_ref().map(|s| (&s.key_format, s.key_columns())),
                ),
                source.as_ref().and_then(|s| s.window),
                input.window.as_ref(),
            ),
            value: encode(
                &input.value,
                source
                    .as_ref()
                    .map(|s| (&s.value_format, s.value_columns())),
            )
            .map(Bytes::from),
            headers: input.headers.clone(),
        };
        log.produce(&input.topic, vec![record], Acks::Leader)
            .await
            .map_err(|e| format!("producing to {}: {e}", input.topic))?;
        // One record at a time, as ksqlDB's test driver pipes them: outputs follow the
        // order of the inputs that caused them.
        engine
            .wait_until_caught_up()
            .await
            .map_err(|e| format!("queries did not catch up: {e}"))?;
        arrivals.snapshot(case, log).await;
    }
    Ok(arrivals)
}

/// An input key with its window appended, for a windowed source.
fn windowed(
    key: Option<Vec<u8>>,
    kind: Option<riffle_server::plan::aggregate::WindowKind>,
    window: Option<&Value>,
) -> Option<Bytes> {
    match (kind, window) {
        (Some(kind), Some(window)) => {
            let bound = |name: &str| window[name].as_i64().unwrap_or(0);
            Some(riffle_server::runtime::aggregate::windowed_key(
                key.as_deref().unwrap_or_default(),
                kind,
                bound("start"),
                bound("end"),
            ))
        }
        _ => key.map(Bytes::from),
    }
}

/// Topics the case's inputs, declared topics and source statements need before they run.
fn topics_to_create(case: &Case, default_partitions: i32) -> Vec<(String, i32)> {
    let mut topics: Vec<(String, i32)> = case.topics.clone();
    for input in &case.inputs {
        if !topics.iter().any(|(t, _)| t == &input.topic) {
            topics.push((input.topic.clone(), default_partitions));
        }
    }
    for statement in &case.statements {
        if let Ok(riffle_grammar::Statement::CreateSource(create)) =
            riffle_grammar::parse_statement(statement)
            && create.properties.get("PARTITIONS").is_none()
            && let Some(topic) = create.properties.get("KAFKA_TOPIC")
        {
            let topic = riffle_server::catalog::properties::literal_text(topic);
            if !topics.iter().any(|(t, _)| t == &topic) {
                topics.push((topic, default_partitions));
            }
        }
    }
    topics
}

/// The source declared over a topic (the first one a statement created).
async fn source_on(engine: &Engine, topic: &str, statements: &[String]) -> Option<Source> {
    for statement in statements {
        let name = match riffle_grammar::parse_statement(statement) {
            Ok(riffle_grammar::Statement::CreateSource(c)) => c.name.value,
            Ok(riffle_grammar::Statement::CreateAsSelect(c)) => c.name.value,
            _ => continue,
        };
        if let Some(source) = engine.source(&name).await
            && source.topic == topic
        {
            return Some(source);
        }
    }
    None
}

/// Serializes a test value as a source with these formats would hold it.
fn encode(value: &Value, format: Option<(&FormatSpec, Vec<(String, SqlType)>)>) -> Option<Vec<u8>> {
    if value.is_null() {
        return None;
    }
    let Some((spec, columns)) = format else {
        return Some(plain_bytes(value));
    };
    match spec.format {
        Format::None => None,
        Format::Json => Some(value.to_string().into_bytes()),
        Format::Delimited => Some(plain_bytes(value)),
        Format::Kafka => {
            let ty = columns
                .first()
                .map(|(_, t)| t.clone())
                .unwrap_or(SqlType::String);
            Some(match (ty, value) {
                (SqlType::Integer, Value::Number(n)) => (n.as_i64().unwrap_or_default() as i32)
                    .to_be_bytes()
                    .to_vec(),
                (SqlType::BigInt, Value::Number(n)) => {
                    n.as_i64().unwrap_or_default().to_be_bytes().to_vec()
                }
                (SqlType::Double, Value::Number(n)) => {
                    n.as_f64().unwrap_or_default().to_be_bytes().to_vec()
                }
                _ => plain_bytes(value),
            })
        }
    }
}

fn plain_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Reads a payload back as the test corpus writes values.
fn decode(payload: Option<&[u8]>, spec: &FormatSpec, columns: &[(String, SqlType)]) -> Value {
    let Some(bytes) = payload else {
        return Value::Null;
    };
    match spec.format {
        Format::None => Value::Null,
        Format::Json => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
        Format::Delimited => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        Format::Kafka => {
            let ty = columns
                .first()
                .map(|(_, t)| t.clone())
                .unwrap_or(SqlType::String);
            match (ty, bytes.len()) {
                (SqlType::Integer, 4) => {
                    Value::from(i32::from_be_bytes(bytes.try_into().unwrap_or([0; 4])))
                }
                (SqlType::BigInt, 8) => {
                    Value::from(i64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])))
                }
                (SqlType::Double, 8) => {
                    Value::from(f64::from_be_bytes(bytes.try_into().unwrap_or([0; 8])))
                }
                _ => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            }
        }
    }
}

pub(crate) async fn compare_outputs(
    case: &Case,
    log: &EmbeddedLog,
    engine: &Engine,
    arrivals: &Arrivals,
) -> Result<(), String> {
    let mut topics: Vec<&str> = Vec::new();
    for output in &case.outputs {
        if !topics.contains(&output.topic.as_str()) {
            topics.push(&output.topic);
        }
    }
    let numbers = Numbers::of(case);
    for topic in topics {
        let expected: Vec<&TestRecord> = case.outputs.iter().filter(|o| o.topic == topic).collect();
        let source = source_on(engine, topic, &case.statements).await;
        let description = log
            .describe_topic(topic)
            .await
            .map_err(|_| format!("expected output topic {topic} does not exist"))?;
        let mut actual = read_topic(log, topic, description).await?;
        // Partition by partition as read; then in the order of the inputs that caused them.
        actual.sort_by_key(|(partition, record)| arrivals.step(topic, *partition, record.offset));
        let actual: Vec<Record> = actual.into_iter().map(|(_, record)| record).collect();
        if actual.len() != expected.len() {
            // The processing log usually says why records went missing.
            let mut why = String::new();
            if let Ok(description) = log.describe_topic(PROCESSING_LOG_TOPIC).await {
                for (_, record) in read_topic(log, PROCESSING_LOG_TOPIC, description)
                    .await?
                    .iter()
                    .take(2)
                {
                    if let Some(value) = &record.value {
                        why.push_str("; processing log: ");
                        why.push_str(&String::from_utf8_lossy(value));
                    }
                }
            }
            return Err(format!(
                "topic {topic}: expected {} records, got {}{why}",
                expected.len(),
                actual.len()
            ));
        }
        for (i, (want, got)) in expected.iter().zip(&actual).enumerate() {
            let (key_bytes, window) = match &source {
                Some(s) => split_window(got.key.as_deref(), s.window),
                None => (got.key.as_deref(), None),
            };
            if let Some(expected) = &want.window
                && window.as_ref() != Some(expected)
            {
                return Err(format!(
                    "topic {topic} record {i}: window {} != expected {expected}",
                    window.unwrap_or(Value::Null)
                ));
            }
            let (key, value) = match &source {
                Some(s) => (
                    decode(key_bytes, &s.key_format, &s.key_columns()),
                    decode(got.value.as_deref(), &s.value_format, &s.value_columns()),
                ),
                None => (
                    got.key.as_deref().map_or(Value::Null, |b| {
                        Value::String(String::from_utf8_lossy(b).into_owned())
                    }),
                    got.value.as_deref().map_or(Value::Null, |b| {
                        serde_json::from_slice(b).unwrap_or(Value::Null)
                    }),
                ),
            };
            if !matches(&want.key, &key, numbers) {
                return Err(format!(
                    "topic {topic} record {i}: key {} != expected {}",
                    key, want.key
                ));
            }
            if !matches(&want.value, &value, numbers) {
                return Err(format!(
                    "topic {topic} record {i}: value {value} != expected {}",
                    want.value
                ));
            }
            if want.headers != got.headers {
                return Err(format!(
                    "topic {topic} record {i}: headers {:?} != expected {:?}",
                    got.headers, want.headers
                ));
            }
            if let Some(timestamp) = want.timestamp
                && timestamp != got.timestamp
            {
                return Err(format!(
                    "topic {topic} record {i}: timestamp {} != expected {timestamp}",
                    got.timestamp
                ));
            }
        }
    }
    Ok(())
}

/// A windowed key's bytes without their window, and the window as the corpus writes it
/// (`{"start", "end", "type"}`).
fn split_window(
    key: Option<&[u8]>,
    window: Option<riffle_server::plan::aggregate::WindowKind>,
) -> (Option<&[u8]>, Option<Value>) {
    use riffle_server::plan::aggregate::WindowKind;
    let Some(kind) = window else {
        return (key, None);
    };
    let (inner, bounds) = riffle_server::runtime::aggregate::split_windowed_key(key, kind);
    let kind = match kind {
        WindowKind::Session { .. } => "session",
        _ => "time",
    };
    let window =
        bounds.map(|(start, end)| serde_json::json!({"start": start, "end": end, "type": kind}));
    (inner, window)
}

/// Equality as the corpus means it: decimals keep their scale, doubles within 1e-6,
/// objects regardless of key order.
pub fn same(expected: &Value, actual: &Value) -> bool {
    matches(expected, actual, Numbers::Exact)
}

/// How the numbers of a case compare: `Exact` keeps decimal scale; `Approximate` (a case
/// with `use.exact.numeric.comparison: false`, written for results that differ between
/// JDKs in the last digits) compares every number by value within 1e-6.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Numbers {
    Exact,
    Approximate,
}

impl Numbers {
    pub fn of(case: &Case) -> Numbers {
        let approximate = case.properties.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("use.exact.numeric.comparison")
                && value.eq_ignore_ascii_case("false")
        });
        if approximate {
            Numbers::Approximate
        } else {
            Numbers::Exact
        }
    }
}

pub fn matches(expected: &Value, actual: &Value, numbers: Numbers) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            let (a_text, b_text) = (a.to_string(), b.to_string());
            if a_text == b_text {
                return true;
            }
            let plain = |t: &str| !t.contains(['e', 'E']);
            let fraction = |t: &str| t.split_once('.').map_or(0, |(_, f)| f.len());
            if numbers == Numbers::Exact
                && plain(&a_text)
                && plain(&b_text)
                && a_text.contains('.')
                && b_text.contains('.')
                && fraction(&a_text) != fraction(&b_text)
            {
                return false;
            }
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
                _ => false,
            }
        }
        // An expected text against a number: the decimal it spells, scale included (ksqlDB's
        // runner reads `"3.40"` as the DECIMAL 3.40).
        (Value::String(text), Value::Number(number)) => *text == number.to_string(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| matches(x, y, numbers))
        }
        (Value::Object(a), Value::Object(b)) => {
            // Field names match exactly or, as ksqlDB's test runner matches them, ignoring
            // case; an expected NULL field matches a field the record does not have (the
            // runner looks each expected field up in the record, and a missing one reads
            // as NULL).
            a.len() == b.len()
                && a.iter().all(|(k, v)| {
                    match b.get(k).or_else(|| {
                        b.iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(k))
                            .map(|(_, w)| w)
                    }) {
                        Some(w) => matches(v, w, numbers),
                        None => v.is_null(),
                    }
                })
        }
        (a, b) => a == b,
    }
}

/// Every record of a topic with the index of its partition, partition by partition.
async fn read_topic(
    log: &EmbeddedLog,
    topic: &str,
    description: riffle_server::log::TopicDescription,
) -> Result<Vec<(usize, Record)>, String> {
    let mut records = Vec::new();
    for (index, partition) in description.partitions.into_iter().enumerate() {
        let mut offset = partition.start_offset;
        while offset < partition.end_offset {
            let response = log
                .fetch(&FetchRequest::new(topic, partition.partition, offset))
                .await
                .map_err(|e| format!("reading {topic}: {e}"))?;
            records.extend(response.records.into_iter().map(|r| (index, r)));
            offset = response.next_offset;
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_ordered_by_the_input_that_caused_them() {
        // Two partitions; no topic before the inputs, then input 1 wrote to partition 1,
        // input 2 to partition 0, input 3 to both.
        let arrivals = Arrivals {
            ends: [(
                "OUT".to_string(),
                vec![vec![], vec![0, 1], vec![1, 1], vec![2, 2]],
            )]
            .into(),
        };
        let steps: Vec<usize> = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|&(partition, offset)| arrivals.step("OUT", partition, offset))
            .collect();
        assert_eq!(steps, [2, 3, 1, 3]);
        assert_eq!(arrivals.step("ELSEWHERE", 0, 5), 0);
    }

    fn number(text: &str) -> Value {
        serde_json::from_str(text).expect("a JSON number")
    }

    #[test]
    fn decimals_keep_their_scale_unless_the_case_compares_approximately() {
        assert!(same(&number("1.10"), &number("1.10")));
        assert!(!same(&number("1.10"), &number("1.1")));
        assert!(!same(&number("0.1"), &number("0.1000000001")));
        let (expected, actual) = (
            number("0.03447366811448324"),
            number("0.034473668114483255"),
        );
        assert!(!matches(&expected, &actual, Numbers::Exact));
        assert!(matches(&expected, &actual, Numbers::Approximate));
        assert!(!matches(
            &number("0.5"),
            &number("0.6"),
            Numbers::Approximate
        ));
    }

    #[test]
    fn an_expected_null_field_matches_a_field_the_record_lacks() {
        let expected = json!({"HEX": null, "UTF8": null});
        assert!(same(&expected, &json!({"ASCII": null, "UTF8": null})));
        // As ksqlDB's runner does: only the expected fields are looked up.
        assert!(same(&expected, &json!({"ASCII": 1, "UTF8": null})));
        assert!(!same(
            &json!({"HEX": 1, "UTF8": null}),
            &json!({"ASCII": 1, "UTF8": null})
        ));
        assert!(!same(&expected, &json!({"UTF8": null})));
        assert!(same(&json!({"hex": 2}), &json!({"HEX": 2})));
    }
}
