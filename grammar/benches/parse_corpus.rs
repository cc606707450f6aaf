//! Parse throughput over every statement of the ksqlDB conformance corpus.
//!
//! The corpus is read from `../shared/conformance/ksqldb` (or `RIFFLE_CONFORMANCE_DIR`); the
//! benchmark reports statements per second and bytes per second.

#[path = "../tests/corpus_support/mod.rs"]
#[allow(dead_code)] // the bench uses the statements, not their origins
mod corpus_support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use riffle_grammar::{parse_script, parse_statement};

fn parse_corpus(c: &mut Criterion) {
    let Some(statements) = corpus_support::corpus_statements() else {
        eprintln!("conformance corpus not found: nothing to benchmark");
        return;
    };
    let statements: Vec<String> = statements.into_iter().map(|s| s.sql).collect();
    let bytes: usize = statements.iter().map(String::len).sum();
    let script = statements.join("\n");

    let mut group = c.benchmark_group("parse_corpus");
    group.throughput(Throughput::Elements(statements.len() as u64));
    group.bench_function("statements_one_by_one", |b| {
        b.iter(|| {
            for sql in &statements {
                let _ = std::hint::black_box(parse_statement(sql));
            }
        })
    });
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("as_one_script", |b| {
        b.iter(|| std::hint::black_box(parse_script(&script)))
    });
    group.finish();
}

criterion_group!(benches, parse_corpus);
criterion_main!(benches);
