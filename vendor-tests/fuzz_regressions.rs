//! The fuzz targets on stable Rust, without cargo-fuzz: every file of
//! `fuzz/corpus/<target>/` (checked-in seeds, plus whatever a local
//! `cargo fuzz run` added) and of `fuzz/regressions/<target>/` (inputs that
//! once crashed the target) goes through the target's body,
//! `dibr::fuzz_harness`, which panics on a bug. How to add a crash:
//! README.md, "Fuzzing".

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use dibr::fuzz_harness::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files directly in `dir` (none if it does not exist), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// The `[[bin]]` names of fuzz/Cargo.toml.
fn cargo_fuzz_targets() -> Vec<String> {
    let toml = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let (true, Some(v)) = (in_bin, line.strip_prefix("name = ")) {
            names.push(v.trim_matches('"').to_string());
        }
    }
    names.sort();
    names
}

#[test]
fn every_fuzz_target_runs_the_shared_harness_and_has_seeds() {
    let mut harness: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    harness.sort();
    assert_eq!(
        cargo_fuzz_targets(),
        harness,
        "fuzz/Cargo.toml [[bin]]s and dibr::fuzz_harness::TARGETS differ"
    );
    for name in &harness {
        let src = fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz_targets/{name}.rs: {e}"));
        let call = format!("dibr::fuzz_harness::{name}(data)");
        assert!(
            src.contains(&call),
            "fuzz_targets/{name}.rs does not call {call}"
        );
        let seeds = inputs(&fuzz_dir().join("corpus").join(name))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with("seed-"))
            })
            .count();
        assert!(seeds >= 2, "fuzz/corpus/{name}/ has {seeds} seed-* inputs");
    }
}

#[test]
fn fuzz_corpora_and_past_crashes_pass_their_targets() {
    let failures: Vec<String> = std::thread::scope(|s| {
        let jobs: Vec<_> = TARGETS
            .iter()
            .map(|&(name, body)| s.spawn(move || run_target(name, body)))
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().expect("target thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "inputs that fail their fuzz target:\n{}",
        failures.join("\n")
    );
}

/// Run one target on its corpus and regressions; the inputs that panicked.
fn run_target(name: &str, body: fn(&[u8])) -> Vec<String> {
    let mut failed = Vec::new();
    let mut ran = 0;
    for kind in ["corpus", "regressions"] {
        for path in inputs(&fuzz_dir().join(kind).join(name)) {
            let data = fs::read(&path).expect("read fuzz input");
            ran += 1;
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failed.push(format!("  {name}: {}", path.display()));
            }
        }
    }
    println!("{name}: {ran} inputs");
    failed
}
