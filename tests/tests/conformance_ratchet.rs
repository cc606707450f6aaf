//! The ratchet: every conformance case listed in `conformance-ratchet.txt` must still pass.
//! Skipped with a notice when the corpus is not beside the repository.

use riffle_tests::corpus::{Suite, case_files, default_dir, load_file};
use riffle_tests::runner::Outcome;
use riffle_tests::{ratchet_path, read_ratchet, run_case};

#[test]
fn every_case_in_the_ratchet_still_passes() {
    check_ratchet(Suite::Queries);
}

#[test]
fn every_case_in_the_rest_ratchet_still_passes() {
    check_ratchet(Suite::Rest);
}

fn check_ratchet(suite: Suite) {
    let dir = default_dir();
    if !dir.is_dir() {
        eprintln!(
            "conformance corpus not found at {}: skipping the ratchet",
            dir.display()
        );
        return;
    }
    let ratchet = read_ratchet(&ratchet_path(suite));
    assert!(!ratchet.is_empty(), "the ratchet file lists no cases");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut ran = 0;
    let mut regressions = Vec::new();
    for path in case_files(&dir, suite).expect("case files") {
        for case in load_file(&path).expect("a readable case file") {
            if !ratchet.contains(&(case.file.clone(), case.name.clone())) {
                continue;
            }
            ran += 1;
            if let outcome @ (Outcome::Failed(_) | Outcome::Skipped(_)) =
                runtime.block_on(run_case(suite, &case))
            {
                regressions.push(format!("{}: {}: {outcome:?}", case.file, case.name));
            }
        }
    }
    assert_eq!(
        ran,
        ratchet.len(),
        "some ratchet cases are no longer in the corpus (renamed or removed)"
    );
    assert!(
        regressions.is_empty(),
        "{} ratchet cases regressed:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}
