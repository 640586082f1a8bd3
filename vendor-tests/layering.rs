//! The layering rules of issue 12, checked on the source text:
//! - the environment is read only by the command line, the settings module,
//!   the build pipeline and where a hook's environment is put together
//!   (elements, sandbox); a few known leftovers are listed with why;
//! - the format tier imports no pipeline stage.
//!
//! A new `std::env` or `crate::<stage>` in the wrong place fails here with
//! the file and line; move the read up into `src/settings.rs` and hand the
//! value down as an option instead.

use std::fs;
use std::path::{Path, PathBuf};

/// Where reading the environment belongs.
const ENV_ALLOWED: &[&str] = &[
    "src/main.rs",
    "src/settings.rs",
    "src/cli/",
    "src/build/",
    // Hook environments and element discovery (ELEMENTS_PATH, the
    // variables package-installs passes on).
    "src/elements/",
    "src/sandbox/",
];

/// Known leftovers, each with why it is still there.
const ENV_LEFTOVERS: &[(&str, &str)] = &[
    (
        "src/formats/boot/mkimage.rs",
        "the host's PATH to find grub-mkimage and the temporary directory: system lookups, not settings",
    ),
    (
        "src/fuzz_harness/mod.rs",
        "the fuzz targets' scratch files in the temporary directory: test-only code",
    ),
    (
        "src/formats/tarstream/tests.rs",
        "DIBR_BENCH_TAR, a test-only input",
    ),
];

/// The format tier: writers and readers that know no pipeline stage
/// (one folder: `src/formats/`).
const FORMATS: &[&str] = &["src/formats/"];

const STAGES: &[&str] = &[
    "cli", "build", "assemble", "capture", "elements", "sandbox", "inspect", "settings",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (path relative to the crate, line number, line) of every code line
/// (comments skipped) of every file under src/.
fn code_lines() -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        for (i, line) in fs::read_to_string(&f).unwrap().lines().enumerate() {
            if !line.trim_start().starts_with("//") {
                out.push((rel.clone(), i + 1, line.to_string()));
            }
        }
    }
    out
}

fn under(path: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| path.starts_with(p))
}

#[test]
fn environment_is_read_only_above_the_stages() {
    let wrong: Vec<String> = code_lines()
        .into_iter()
        .filter(|(f, _, l)| l.contains("std::env") && !under(f, ENV_ALLOWED))
        .filter(|(f, _, _)| !ENV_LEFTOVERS.iter().any(|(p, _)| p == f))
        .map(|(f, n, l)| format!("{f}:{n}: {}", l.trim()))
        .collect();
    assert!(
        wrong.is_empty(),
        "std::env below the command line (read it in src/settings.rs and pass it down):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn formats_import_no_stage() {
    let wrong: Vec<String> = code_lines()
        .into_iter()
        .filter(|(f, _, _)| under(f, FORMATS))
        .filter(|(_, _, l)| {
            STAGES.iter().any(|s| {
                l.contains(&format!("crate::{s}::")) || l.contains(&format!("crate::{s};"))
            })
        })
        .map(|(f, n, l)| format!("{f}:{n}: {}", l.trim()))
        .collect();
    assert!(
        wrong.is_empty(),
        "format modules reaching up into pipeline stages:\n{}",
        wrong.join("\n")
    );
}
