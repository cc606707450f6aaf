//! `riffle-tests`: Riffle's end-to-end suites. Today: the ksqlDB conformance runner
//! ([`corpus`] reads the cases, [`runner`] runs one) and the ratchet of passing cases.

pub mod corpus;
pub mod runner;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The ratchet file: one `file.json<TAB>case name` line per case that must keep passing.
pub fn ratchet_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance-ratchet.txt")
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
