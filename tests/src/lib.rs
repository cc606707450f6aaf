//! `riffle-tests`: Riffle's end-to-end suites. Today: the ksqlDB conformance runner
//! ([`corpus`] reads the cases, [`runner`] runs a statement case in-process, [`rest`] a
//! REST case over HTTP), the test-only functions the corpus needs ([`test_functions`]) and
//! the ratchets of passing cases.

pub mod corpus;
pub mod measure;
pub mod rest;
pub mod runner;
pub mod server;
pub mod test_functions;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The ratchet file of a suite: one `file.json<TAB>case name` line per case that must keep
/// passing.
pub fn ratchet_path(suite: corpus::Suite) -> PathBuf {
    let name = match suite {
        corpus::Suite::Queries => "conformance-ratchet.txt",
        corpus::Suite::Rest => "rest-conformance-ratchet.txt",
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Runs a case of `suite`.
pub async fn run_case(suite: corpus::Suite, case: &corpus::Case) -> runner::Outcome {
    match suite {
        corpus::Suite::Queries => runner::run_case(case).await,
        corpus::Suite::Rest => rest::run_rest_case(case).await,
    }
}

pub fn read_ratchet(path: &Path) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (file, name) = line.split_once('\t')?;
            Some((file.to_string(), name.to_string()))
        })
        .collect()
}
