//! The conformance runner: runs ksqlDB's functional test cases against Riffle.
//!
//! ```text
//! conformance [--dir DIR] [--rest] [--only FILE.json]… [--case NAME] [--report PATH]
//!             [--update-ratchet] [--check-ratchet]
//! ```
//! Prints one line per file and a closing `N passed, N failed, N skipped` line. The report
//! is JSON: `{"cases": [{"file", "name", "status", "reason"}]}`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use riffle_tests::corpus::{Suite, case_files, default_dir, load_file};
use riffle_tests::runner::Outcome;
use riffle_tests::{ratchet_path, read_ratchet, run_case};
use serde_json::json;

const USAGE: &str = "usage: conformance [--dir DIR] [--rest] [--only FILE.json]… [--case NAME] \
     [--report PATH] [--update-ratchet] [--check-ratchet]";

fn main() -> Result<()> {
    let mut dir = default_dir();
    let mut only: Vec<String> = Vec::new();
    let mut case_filter: Option<String> = None;
    let mut report: Option<PathBuf> = None;
    let mut update_ratchet = false;
    let mut check_ratchet = false;
    let mut suite = Suite::Queries;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = PathBuf::from(args.next().context("--dir needs a folder")?),
            "--only" => only.push(args.next().context("--only needs a file name")?),
            "--case" => case_filter = Some(args.next().context("--case needs a name")?),
            "--report" => {
                report = Some(PathBuf::from(args.next().context("--report needs a path")?))
            }
            "--update-ratchet" => update_ratchet = true,
            "--check-ratchet" => check_ratchet = true,
            "--rest" => suite = Suite::Rest,
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => {
                eprintln!("conformance: unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for path in case_files(&dir, suite)? {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !only.is_empty() && !only.contains(&file) {
            continue;
        }
        let cases = load_file(&path)?;
        let (mut p, mut f, mut s) = (0, 0, 0);
        for case in cases {
            if case_filter.as_ref().is_some_and(|name| &case.name != name) {
                continue;
            }
            let outcome = runtime.block_on(run_case(suite, &case));
            let (status, reason) = match &outcome {
                Outcome::Passed => {
                    p += 1;
                    ("passed", String::new())
                }
                Outcome::Failed(reason) => {
                    f += 1;
                    ("failed", reason.clone())
                }
                Outcome::Skipped(reason) => {
                    s += 1;
                    ("skipped", reason.clone())
                }
            };
            if case_filter.is_some() {
                println!("{}: {status} {reason}", case.name);
            }
            results.push((case.file.clone(), case.name.clone(), status, reason));
        }
        println!("{file}: {p} passed, {f} failed, {s} skipped");
        passed += p;
        failed += f;
        skipped += s;
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if let Some(path) = report {
        let cases: Vec<_> = results
            .iter()
            .map(|(file, name, status, reason)| {
                json!({"file": file, "name": name, "status": status, "reason": reason})
            })
            .collect();
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&json!({ "cases": cases }))?,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let passing: BTreeSet<(String, String)> = results
        .iter()
        .filter(|(_, _, status, _)| *status == "passed")
        .map(|(file, name, _, _)| (file.clone(), name.clone()))
        .collect();
    if update_ratchet {
        let mut ratchet = read_ratchet(&ratchet_path(suite));
        ratchet.extend(passing.iter().cloned());
        let mut text = String::from(
            "# Conformance cases that pass and must keep passing (file<TAB>case name).\n\
             # Grown with: cargo run --release -p riffle-tests --bin conformance -- [--rest] --update-ratchet\n",
        );
        for (file, name) in &ratchet {
            text.push_str(&format!("{file}\t{name}\n"));
        }
        std::fs::write(ratchet_path(suite), text)?;
    }
    if check_ratchet {
        let ran: BTreeSet<(String, String)> = results
            .iter()
            .map(|(f, n, _, _)| (f.clone(), n.clone()))
            .collect();
        let regressed: Vec<_> = read_ratchet(&ratchet_path(suite))
            .into_iter()
            .filter(|case| ran.contains(case) && !passing.contains(case))
            .collect();
        if !regressed.is_empty() {
            for (file, name) in &regressed {
                eprintln!("regressed: {file}: {name}");
            }
            bail!("{} ratchet cases no longer pass", regressed.len());
        }
    }
    Ok(())
}
