//! Parses every statement of the ksqlDB conformance corpus that ksqlDB itself accepts, and
//! checks that the printed text parses back to the same AST.
//!
//! The corpus lives outside the repository (`../shared/conformance/ksqldb`, or the folder
//! named by `RIFFLE_CONFORMANCE_DIR`); without it the test prints a notice and passes.

mod corpus_support;

use corpus_support::{CorpusStatement, corpus_statements};
use riffle_grammar::parse_statement;

#[test]
fn every_accepted_corpus_statement_parses_and_round_trips() {
    let Some(statements) = corpus_statements() else {
        eprintln!("conformance corpus not found: skipping the corpus parse test");
        return;
    };
    let mut failures = Vec::new();
    for CorpusStatement { origin, sql } in &statements {
        let parsed = match parse_statement(sql) {
            Ok(parsed) => parsed,
            Err(error) => {
                failures.push(format!("{origin}\n  {sql}\n  parse: {error}"));
                continue;
            }
        };
        let printed = parsed.to_string();
        match parse_statement(&printed) {
            Ok(reparsed) if reparsed == parsed => {
                let reprinted = reparsed.to_string();
                if reprinted != printed {
                    failures.push(format!(
                        "{origin}\n  {sql}\n  printed:   {printed}\n  reprinted: {reprinted}"
                    ));
                }
            }
            Ok(reparsed) => failures.push(format!(
                "{origin}\n  {sql}\n  printed: {printed}\n  reparsed to a different AST:\n  \
                 {parsed:?}\n  {reparsed:?}"
            )),
            Err(error) => failures.push(format!(
                "{origin}\n  {sql}\n  printed: {printed}\n  reparse: {error}"
            )),
        }
    }
    println!(
        "corpus statements: {} parsed and round-tripped, {} failed",
        statements.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} corpus statements failed:\n{}",
        failures.len(),
        statements.len(),
        failures.join("\n")
    );
}
