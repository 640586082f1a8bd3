//! The GitHub Actions workflows in `.github/workflows/` cannot land broken:
//! `actionlint` (from PyPI into a cached venv by `.ci/install-actionlint`,
//! with shellcheck for the `run:` scripts) must report nothing, and the
//! workflows must keep doing what the README and issue promise (the README
//! test command in ci.yml, the AppArmor fix, the unprivileged container,
//! every fuzz target, every bench, the summary table).

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workflows() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo().join(".github/workflows"))
        .expect(".github/workflows")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    v.sort();
    v
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// actionlint from `DIBR_ACTIONLINT`, else the cached venv.
fn actionlint(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DIBR_ACTIONLINT") {
        return Some(PathBuf::from(p));
    }
    let o = run(Command::new("bash").arg(repo().join(".ci/install-actionlint")));
    if !o.status.success() {
        assert!(
            !is_ci(),
            "{test}: .ci/install-actionlint failed in CI\n{}",
            out_text(&o)
        );
        skip(
            test,
            "actionlint could not be installed from PyPI (offline?)",
        );
        return None;
    }
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    Some(PathBuf::from(p))
}

fn lint(bin: &Path, files: &[PathBuf], shellcheck: Option<&Path>) -> std::process::Output {
    let mut c = Command::new(bin);
    c.arg("-no-color").arg("-pyflakes=");
    match shellcheck {
        Some(s) => c.arg(format!("-shellcheck={}", s.display())),
        None => c.arg("-shellcheck="),
    };
    c.args(files).current_dir(repo());
    run(&mut c)
}

#[test]
fn actionlint_finds_nothing() {
    let test = "workflows: actionlint";
    let files = workflows();
    for want in ["ci.yml", "fuzz.yml", "bench.yml"] {
        assert!(
            files.iter().any(|f| f.ends_with(want)),
            "no .github/workflows/{want}"
        );
    }
    let Some(bin) = actionlint(test) else { return };
    let shellcheck = which("shellcheck");
    if shellcheck.is_none() {
        // The run: scripts go unchecked; CI installs shellcheck.
        skip(
            "workflows: shellcheck of run: scripts",
            "no shellcheck (apt install shellcheck)",
        );
    }
    let o = lint(&bin, &files, shellcheck.as_deref());
    assert!(
        o.status.success() && o.stdout.is_empty(),
        "actionlint reports findings in .github/workflows:\n{}",
        out_text(&o)
    );

    // The linter is alive: a broken workflow is caught.
    let dir = scratch("workflows");
    let bad = dir.path().join("bad.yml");
    fs::write(
        &bad,
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ matrix.nope }}\n      - uses: actions/checkout@v5\n        with:\n          no-such-input: 1\n",
    )
    .unwrap();
    let o = lint(&bin, &[bad], shellcheck.as_deref());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        !o.status.success() && text.contains("matrix") && text.contains("no-such-input"),
        "actionlint missed a broken workflow:\n{}",
        out_text(&o)
    );
}

/// The README's test command, as ci_consistency reads it.
fn readme_test_command() -> String {
    let readme = read("README.md");
    let section = readme.split("\n## Testing").nth(1).expect("## Testing");
    let block = section.split("```").nth(1).expect("a fenced block");
    block.lines().nth(1).unwrap().trim().to_string()
}

#[test]
fn ci_runs_the_readme_command_rootless_with_the_apparmor_fix() {
    let ci = read(".github/workflows/ci.yml");
    let cmd = readme_test_command();
    assert!(
        ci.lines().any(|l| l.trim() == cmd),
        "ci.yml does not run the README test command verbatim: {cmd}"
    );
    for want in [
        "runs-on: ubuntu-24.04",
        "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        "contrib/apparmor/dibr",
        "apparmor_parser -r",
        "useradd -m -s /bin/bash dibr-ci",
        "--add-subuids",
        "container:",
        "seccomp",
    ] {
        assert!(ci.contains(want), "ci.yml lacks {want:?}");
    }
    assert!(repo().join("contrib/apparmor/dibr").is_file());
}

#[test]
fn fuzz_covers_every_target_and_keeps_corpus_and_crashes() {
    let y = read(".github/workflows/fuzz.yml");
    for want in [
        "schedule:",
        "workflow_dispatch:",
        "fuzz/Cargo.toml",
        "-max_total_time=",
        "actions/cache@",
        "fuzz/corpus/${{ matrix.target }}",
        "actions/upload-artifact@",
        "fuzz/artifacts/${{ matrix.target }}",
        "regressions/$TARGET",
    ] {
        assert!(y.contains(want), "fuzz.yml lacks {want:?}");
    }
    // 600 s per target on schedule and on dispatch alike: no input can
    // shorten it (issue 14).
    assert!(
        y.contains("SECONDS_PER_TARGET: \"600\"") && !y.contains("inputs."),
        "fuzz.yml must fuzz every target for 600 s however it is started"
    );
    // The workflow lists the [[bin]]s of fuzz/Cargo.toml: each target
    // file must be one.
    let cargo = read("fuzz/Cargo.toml");
    for e in fs::read_dir(repo().join("fuzz/fuzz_targets")).unwrap() {
        let p = e.unwrap().path();
        let rel = format!(
            "path = \"fuzz_targets/{}\"",
            p.file_name().unwrap().to_str().unwrap()
        );
        assert!(
            cargo.contains(&rel),
            "fuzz/Cargo.toml has no [[bin]] for {rel}"
        );
    }
}

#[test]
fn bench_runs_every_bench_and_summarizes() {
    let y = read(".github/workflows/bench.yml");
    for e in fs::read_dir(repo().join("benches")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) == Some("rs") {
            let name = p.file_stem().unwrap().to_str().unwrap().to_string();
            assert!(
                y.contains(&format!("cargo bench --bench {name} ")),
                "bench.yml does not run benches/{name}.rs"
            );
        }
    }
    for want in [
        "mmdebstrap",
        "DIBR_BENCH_TAR",
        "DIBR_BENCH_BOOT_TAR",
        "GITHUB_STEP_SUMMARY",
        "actions/upload-artifact@",
        "bench.json",
    ] {
        assert!(y.contains(want), "bench.yml lacks {want:?}");
    }
    // The summary script turns the benches' outputs into a ratio table.
    if !require("workflows: bench summary", false, &["python3"]) {
        return;
    }
    let dir = scratch("workflows-bench");
    let d = dir.path();
    fs::write(
        d.join("mkfs.json"),
        r#"[{"case":"root-tarball","dibr_s":2.0,"tar_x_mke2fs_s":14.0,"mke2fs_d_s":7.0,"ratio_a":7.0,"ratio_b":3.5},{"case":"flat-100k","dibr_s":0.5,"mke2fs_d_s":2.0,"ratio":4.0}]"#,
    )
    .unwrap();
    fs::write(
        d.join("qcow2.log"),
        "qcow2 -c: dibr 1.00s 100 bytes | qemu-img 3.00s 120 bytes | ratio 3.00x\nqcow2 -c zstd: dibr 0.50s 90 bytes | qemu-img 2.00s 95 bytes | ratio 4.00x\nvhd: dibr 0.50s 10 bytes | qemu-img 1.00s 10 bytes | ratio 2.00x\n",
    )
    .unwrap();
    fs::write(
        d.join("assemble.json"),
        r#"{"input_bytes":1,"runs":5,"dibr_s":10.0,"pipeline_s":25.0,"ratio":2.5,"dibr_zstd_s":2.0,"pipeline_zstd_s":20.0,"ratio_zstd":10.0,"sizes":[1,2,2,1,1,1]}"#,
    )
    .unwrap();
    let o = run_ok(
        Command::new("python3")
            .arg(repo().join(".github/scripts/bench_summary.py"))
            .arg("--mkfs")
            .arg(d.join("mkfs.json"))
            .arg("--qcow2-log")
            .arg(d.join("qcow2.log"))
            .arg("--assemble")
            .arg(d.join("assemble.json"))
            .arg("--build")
            .arg(d.join("absent.json"))
            .arg("--json")
            .arg(d.join("bench.json")),
    );
    let md = String::from_utf8_lossy(&o.stdout);
    for want in [
        "| mkfs: root tarball | tar -x + mke2fs -d | 2.00 | 14.00 | 7.00x |",
        "| raw → qcow2 (compressed) | qemu-img convert | 1.00 | 3.00 | 3.00x |",
        "| raw → qcow2 (compression_type=zstd) | qemu-img convert | 0.50 | 2.00 | 4.00x |",
        "| assemble: tarball → bootable qcow2 | rootless shell pipeline | 10.00 | 25.00 | 2.50x |",
        "| assemble: tarball → bootable qcow2, zstd | rootless shell pipeline, qemu-img zstd | 2.00 | 20.00 | 10.00x |",
        "Missing: build.",
    ] {
        assert!(md.contains(want), "{want:?} not in\n{md}");
    }
    let json = fs::read_to_string(d.join("bench.json")).unwrap();
    assert!(
        json.contains("\"ratios\"") && json.contains("\"ratio\": 2.5"),
        "{json}"
    );
    // build_vs_dib's result.json: a total row and an assembly-phase row.
    fs::write(
        d.join("build.json"),
        r#"{"mode":"raw","elements":"debian-minimal","runs":1,"dib_s":100.0,"dibr_s":80.0,"dib_assembly_s":10.0,"dibr_assembly_s":2.0,"ratio":1.25,"ratio_assembly":5.0}"#,
    )
    .unwrap();
    let o = run_ok(
        Command::new("python3")
            .arg(repo().join(".github/scripts/bench_summary.py"))
            .arg("--build")
            .arg(d.join("build.json"))
            .arg("--json")
            .arg(d.join("bench.json")),
    );
    let md = String::from_utf8_lossy(&o.stdout);
    for want in [
        "| build: debian-minimal -t raw, total | disk-image-create (root) | 80.00 | 100.00 | 1.25x |",
        "| build: debian-minimal -t raw, assembly phase | disk-image-create (root) | 2.00 | 10.00 | 5.00x |",
    ] {
        assert!(md.contains(want), "{want:?} not in\n{md}");
    }
}
