//! Ten of ksqlDB's most used scalar functions over one batch of 8192 rows, as a query
//! evaluates them: SUBSTRING, CONCAT, UCASE, TRIM, LEN, REPLACE, SPLIT, EXTRACTJSONFIELD,
//! FORMAT_TIMESTAMP and ROUND. Throughput is in rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::common::DFSchema;
use datafusion::execution::context::SessionContext;

const ROWS: usize = 8192;

/// Rows like a click stream's: a page path, a user name with spaces around it, a small JSON
/// document, a time and an amount.
fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("page", DataType::Utf8, true),
        Field::new("user_name", DataType::Utf8, true),
        Field::new("doc", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let pages: StringArray = (0..ROWS)
        .map(|i| Some(format!("/shop/category-{}/item-{}", i % 37, i)))
        .collect();
    let users: StringArray = (0..ROWS)
        .map(|i| Some(format!("  user number {}\t", i % 1000)))
        .collect();
    let docs: StringArray = (0..ROWS)
        .map(|i| {
            Some(format!(
                r#"{{"device": {{"os": "os-{}", "version": {}}}, "ok": true}}"#,
                i % 5,
                i % 13
            ))
        })
        .collect();
    let times = TimestampMillisecondArray::from_iter_values(
        (0..ROWS as i64).map(|i| 1_700_000_000_000 + i * 1_234),
    );
    let amounts = Float64Array::from_iter_values((0..ROWS).map(|i| i as f64 * 1.005));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(pages),
        Arc::new(users),
        Arc::new(docs),
        Arc::new(times),
        Arc::new(amounts),
    ];
    RecordBatch::try_new(schema, columns).expect("a valid batch")
}

const CALLS: [(&str, &str); 10] = [
    ("substring", "substring(page, 7, 8)"),
    ("concat", "concat(page, '?user=', user_name)"),
    ("ucase", "ucase(page)"),
    ("trim", "trim(user_name)"),
    ("len", "len(page)"),
    ("replace", "replace(page, 'item', 'product')"),
    ("split", "split(page, '/')"),
    ("extractjsonfield", "extractjsonfield(doc, '$.device.os')"),
    (
        "format_timestamp",
        "format_timestamp(ts, 'yyyy-MM-dd HH:mm:ss', 'UTC')",
    ),
    ("round", "round(amount, 2)"),
];

fn functions(c: &mut Criterion) {
    let context = SessionContext::new();
    riffle_server::functions::register(&context);
    let batch = batch();
    let schema = DFSchema::try_from(batch.schema().as_ref().clone()).expect("a schema");
    let mut group = c.benchmark_group("functions");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, sql) in CALLS {
        let logical = context.parse_sql_expr(sql, &schema).expect("parses");
        let physical = context
            .create_physical_expr(logical, &schema)
            .expect("plans");
        group.bench_function(name, |b| {
            b.iter(|| {
                physical
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(ROWS))
                    .expect("evaluates")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, functions);
criterion_main!(benches);
