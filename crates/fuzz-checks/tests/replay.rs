//! Replays every fuzz seed and every input that once failed (fuzz/regressions/<target>) through the
//! same properties cargo-fuzz checks, on stable Rust in every test run.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dirs` (missing directories hold nothing), sorted so a failure names the same
/// input each time.
fn inputs(dirs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(repo().join(d)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, extra: &[&str], check: fn(&[u8])) -> usize {
    let seeds = format!("fuzz/seeds/{target}");
    let regressions = format!("fuzz/regressions/{target}");
    let mut dirs = vec![seeds.as_str(), regressions.as_str()];
    dirs.extend_from_slice(extra);
    let files = inputs(&dirs);
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails its property",
            f.display()
        );
    }
    files.len()
}

#[test]
fn resource_seeds_and_examples() {
    let n = replay(
        "resource",
        &["deploy/examples"],
        meshplane_fuzz_checks::resource,
    );
    assert!(
        n >= 10,
        "only {n} inputs found: is the repository layout intact?"
    );
}

#[test]
fn duration_seeds() {
    let n = replay("duration", &[], meshplane_fuzz_checks::duration);
    assert!(n >= 10, "only {n} inputs found");
}

#[test]
fn template_seeds_and_past_failures() {
    let n = replay("template", &[], meshplane_fuzz_checks::template);
    assert!(n >= 8, "only {n} inputs found");
}
