//! diskimage-builder's `test-elements` for every element dibr ships
//! (issue 5, acceptance 5), run as DIB's `tests/run_functests.sh` runs
//! them: each `elements/<E>/test-elements/<T>/` is an element whose
//! `element-deps` pull in `<E>` (and an operating system); its hooks check
//! what `<E>` promises and exit non-zero naming what is wrong. The
//! convention is in `elements/README.md` ("Testing elements").
//!
//! - `test_elements_follow_the_convention` (no root): every element has a
//!   test element; names are unique; hook names never collide (so test
//!   elements can share a build); `run-by`, `test-output-formats`,
//!   `element-type` are valid; hooks parse; each test element resolves.
//! - `fast_test_elements_build` (default suite): every test element on
//!   `dibr-test-os` (host binaries, offline) is built on its own with
//!   `dibr build -n` (`dibr ramdisk -n` for `element-type` ramdisk) as the
//!   unprivileged CI user, its outputs must exist (none for
//!   `no-final-image`), then its `test-check`, if any, runs on the host.
//! - `image_test_elements_build` (`DIBR_IMAGE_TESTS=1`, which `.ci/run`
//!   sets; else "skipped"): the others, on `debian-minimal` (a real
//!   bootstrap over the network, cached in the shared test image cache),
//!   grouped into as few builds as resolve together (two
//!   `operating-system` or `block-device` providers do not;
//!   `no-final-image` and ramdisks build alone).
//!
//! Test elements with a `run-by` file are run by the vendor test it names
//! (special environment); here only that file's existence is checked.
//! A failure names the element, the test element, the hook that failed and
//! the tail of the build log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::build::{mountinfo, serial, stage, Stage, USER};
use common::vm::as_user;
use common::*;

const TEST_OS: &str = "dibr-test-os";
const FORMATS: &[&str] = &["tar", "tgz", "tar.zst", "raw", "qcow2", "vhd"];
/// Log lines shown with a failure.
const TAIL: usize = 40;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Debug)]
struct TestElement {
    /// The element under test (`elements/<element>/test-elements/…`).
    element: String,
    name: String,
    dir: PathBuf,
    deps: Vec<String>,
    formats: Vec<String>,
    ramdisk: bool,
    run_by: Option<String>,
    check: bool,
}

impl TestElement {
    fn fast(&self) -> bool {
        self.deps.iter().any(|d| d == TEST_OS)
    }
    fn no_image(&self) -> bool {
        self.deps.iter().any(|d| d == "no-final-image")
    }
    fn label(&self) -> String {
        format!("element {}, test element {}", self.element, self.name)
    }
}

fn read_words(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn subdirs(d: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every element directory of the library and its test elements.
fn discover() -> (Vec<String>, Vec<TestElement>) {
    let mut elements = Vec::new();
    let mut tests = Vec::new();
    for e in subdirs(&repo().join("elements")) {
        let element = file_name(&e);
        for t in subdirs(&e.join("test-elements")) {
            let kind = fs::read_to_string(t.join("element-type")).unwrap_or_default();
            let run_by = fs::read_to_string(t.join("run-by"))
                .ok()
                .map(|s| s.trim().to_string());
            let mut formats = read_words(&t.join("test-output-formats"));
            if formats.is_empty() {
                formats.push("tar".into());
            }
            tests.push(TestElement {
                element: element.clone(),
                name: file_name(&t),
                deps: read_words(&t.join("element-deps")),
                formats,
                ramdisk: kind.trim() == "ramdisk",
                run_by,
                check: t.join("test-check").is_file(),
                dir: t,
            });
        }
        elements.push(element);
    }
    (elements, tests)
}

/// `(phase dir, hook name)` → who ships it, for naming a failed hook.
fn hook_owners(tests: &[TestElement]) -> BTreeMap<(String, String), String> {
    let mut m = BTreeMap::new();
    let mut add = |dir: &Path, owner: String| {
        for sub in subdirs(dir) {
            let phase = file_name(&sub);
            if !phase.ends_with(".d") {
                continue;
            }
            for f in fs::read_dir(&sub).into_iter().flatten().flatten() {
                m.insert((phase.clone(), file_name(&f.path())), owner.clone());
            }
        }
    };
    for e in subdirs(&repo().join("elements")) {
        add(&e, format!("element {}", file_name(&e)));
    }
    for t in tests {
        add(
            &t.dir,
            format!("test element {} (of {})", t.name, t.element),
        );
    }
    m
}

/// The hook that was running when the build stopped, e.g. `install.d/90-x`.
fn failed_hook(log: &str) -> Option<(String, String)> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("dib-run-parts Running "))?;
    let p = Path::new(line.trim());
    Some((
        file_name(p.parent()?),
        p.file_name()?.to_string_lossy().into_owned(),
    ))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The stage: binary and test elements (`common::build::stage`), plus a
/// world-readable copy of the element library with its test elements.
struct Lib {
    s: Stage,
    lib: PathBuf,
    elements_path: String,
}

fn lib_stage(test: &str) -> Option<Lib> {
    let s = stage(test)?;
    let lib = s.elements.parent().unwrap().join("lib");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(repo().join("elements"))
            .arg(&lib),
    );
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&lib));
    let mut path = vec![s.elements.display().to_string()];
    for e in subdirs(&lib) {
        if e.join("test-elements").is_dir() {
            path.push(e.join("test-elements").display().to_string());
        }
    }
    Some(Lib {
        elements_path: path.join(":"),
        lib,
        s,
    })
}

/// A cache directory the CI user owns.
fn user_dir(p: &Path) -> PathBuf {
    fs::create_dir_all(p).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(p));
    p.to_path_buf()
}

/// One build of one or more test elements.
struct Group<'a> {
    members: Vec<&'a TestElement>,
}

impl Group<'_> {
    fn ramdisk(&self) -> bool {
        self.members[0].ramdisk
    }
    fn no_image(&self) -> bool {
        self.members.iter().any(|t| t.no_image())
    }
    fn formats(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for t in &self.members {
            for f in &t.formats {
                if !v.contains(f) {
                    v.push(f.clone());
                }
            }
        }
        v
    }
    fn names(&self) -> Vec<&str> {
        self.members.iter().map(|t| t.name.as_str()).collect()
    }
    fn labels(&self) -> String {
        self.members
            .iter()
            .map(|t| format!("{} ({})", t.name, t.element))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Do these test elements resolve together (`dibr elements -n`)?
fn resolves(l: &Lib, names: &[&str]) -> bool {
    run(Command::new(dibr_bin())
        .args(["elements", "-n"])
        .args(names)
        .env("ELEMENTS_PATH", &l.elements_path)
        .env("DIBR_ELEMENTS_DIR", &l.lib))
    .status
    .success()
}

/// Greedy grouping: a test element joins the first build it resolves with
/// (same element type); `no-final-image` ones build alone.
fn group<'a>(l: &Lib, tests: &[&'a TestElement]) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for t in tests {
        let home = groups.iter_mut().find(|g| {
            if t.no_image() || g.no_image() || g.ramdisk() != t.ramdisk {
                return false;
            }
            let mut names = g.names();
            names.push(&t.name);
            resolves(l, &names)
        });
        match home {
            Some(g) => g.members.push(t),
            None => groups.push(Group { members: vec![t] }),
        }
    }
    groups
}

/// Build one group as the CI user and judge it; failures are appended.
fn run_group(
    test: &str,
    l: &Lib,
    g: &Group,
    name: &str,
    cache: &Path,
    owners: &BTreeMap<(String, String), String>,
    failures: &mut Vec<String>,
) {
    let formats = g.formats();
    let mut args: Vec<String> = vec![if g.ramdisk() { "ramdisk" } else { "build" }.into()];
    args.push("-n".into());
    if !g.ramdisk() {
        args.push("-t".into());
        args.push(formats.join(","));
    }
    args.extend(["-o".into(), name.into()]);
    args.extend(g.names().iter().map(|n| n.to_string()));
    let lib = l.lib.display().to_string();
    let cache_s = cache.display().to_string();
    // The work directory goes into the stage, so that what a build leaves
    // behind is told apart from other builds on a shared machine.
    let tmp = user_dir(&l.lib.parent().unwrap().join("tmp"));
    let tmp_s = tmp.display().to_string();
    let mounts = mountinfo();
    // stdout and stderr into one file, so that the log keeps its order.
    let log_path = l.lib.parent().unwrap().join(format!("{name}.log"));
    let log_file = fs::File::create(&log_path).unwrap();
    let t0 = Instant::now();
    let status = as_user(
        &l.s.bin,
        &[
            ("ELEMENTS_PATH", l.elements_path.as_str()),
            ("DIBR_ELEMENTS_DIR", lib.as_str()),
            ("DIB_IMAGE_CACHE", cache_s.as_str()),
            ("DIB_TMP_DIR", tmp_s.as_str()),
            // Every element test runs its hooks (no phase-cache hits).
            ("DIBR_PHASE_CACHE", "off"),
        ],
    )
    .args(&args)
    .current_dir(&l.s.out)
    .stdout(log_file.try_clone().unwrap())
    .stderr(log_file)
    .status()
    .unwrap_or_else(|e| panic!("{test}: cannot run dibr: {e}"));
    let secs = t0.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&fs::read(&log_path).unwrap()).into_owned();
    let cmd = format!("dibr {}", args.join(" "));
    println!("{test}: {cmd}: {secs:.1}s");
    let stage_dir = l.lib.parent().unwrap().display().to_string();
    let new_mounts: Vec<String> = mountinfo()
        .into_iter()
        .filter(|m| !mounts.contains(m) && m.contains(&stage_dir))
        .collect();
    assert!(
        new_mounts.is_empty(),
        "{test}: {cmd} left mounts behind: {new_mounts:?}"
    );
    let left = dir_entries(&tmp);
    assert!(
        left.is_empty(),
        "{test}: {cmd} left its work directory behind in {}: {left:?}",
        tmp.display()
    );

    if !status.success() {
        let hook = failed_hook(&log);
        let owner = hook.as_ref().and_then(|h| owners.get(h));
        let culprit = g
            .members
            .iter()
            .find(|t| owner.is_some_and(|o| o.starts_with(&format!("test element {} ", t.name))));
        let head = match culprit {
            Some(t) => format!("{}: its check failed", t.label()),
            None if g.members.len() == 1 => format!("{}: the build failed", g.members[0].label()),
            None => format!("build of [{}] failed", g.labels()),
        };
        let at = match (&hook, owner) {
            (Some((p, n)), Some(o)) => format!("in hook {p}/{n} of {o}"),
            (Some((p, n)), None) => format!("in hook {p}/{n}"),
            _ => "before any hook ran".into(),
        };
        let others = if g.members.len() > 1 {
            format!(
                "\n  same build, not judged: {}",
                g.members
                    .iter()
                    .filter(|t| Some(t.name.as_str()) != culprit.map(|c| c.name.as_str()))
                    .map(|t| format!("{} ({})", t.name, t.element))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        failures.push(format!(
            "{head} {at} ({status})\n  command: {cmd}{others}\n  --- last {TAIL} lines of the build log ---\n{}",
            tail(&log, TAIL)
        ));
        return;
    }

    // Outputs.
    let out = |ext: &str| l.s.out.join(format!("{name}.{ext}"));
    let expected: Vec<String> = if g.ramdisk() {
        vec!["kernel".into(), "initramfs".into()]
    } else {
        formats.clone()
    };
    for ext in &expected {
        let p = out(ext);
        if g.no_image() && p.exists() {
            failures.push(format!(
                "{}: no-final-image, but the build wrote {}",
                g.members[0].label(),
                p.display()
            ));
        } else if !g.no_image() && !p.is_file() {
            failures.push(format!(
                "build of [{}]: {} is missing after a successful build\n  command: {cmd}\n{}",
                g.labels(),
                p.display(),
                tail(&log, TAIL)
            ));
        }
    }

    // test-check on the host, as the CI user.
    for t in &g.members {
        if !t.check {
            continue;
        }
        let arg = if t.ramdisk {
            out("initramfs")
        } else {
            out(&t.formats[0])
        };
        let check = l
            .lib
            .join(&t.element)
            .join("test-elements")
            .join(&t.name)
            .join("test-check");
        let bin = l.s.bin.display().to_string();
        let c = run(as_user(&check, &[("DIBR", bin.as_str())])
            .arg(&arg)
            .current_dir(&l.s.out));
        let text = out_text(&c);
        if c.status.success() {
            println!("{test}: {}: test-check ok", t.name);
        } else {
            failures.push(format!(
                "{}: test-check {} failed\n  command: {cmd}\n{}",
                t.label(),
                arg.display(),
                text
            ));
        }
    }

    // The outputs can be large (a raw Debian disk): free the space now.
    for e in fs::read_dir(&l.s.out).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            let _ = fs::remove_dir_all(&p);
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

fn judge(test: &str, failures: Vec<String>, builds: usize, t0: Instant) {
    let secs = t0.elapsed().as_secs_f64();
    println!("{test}: {builds} builds in {secs:.1}s");
    assert!(
        failures.is_empty(),
        "{test}: {} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn test_elements_follow_the_convention() {
    let (elements, tests) = discover();
    assert!(
        elements.len() >= 25,
        "only {} elements found",
        elements.len()
    );
    let mut problems = Vec::new();
    let with_tests: BTreeSet<&str> = tests.iter().map(|t| t.element.as_str()).collect();
    for e in &elements {
        if !with_tests.contains(e.as_str()) {
            problems.push(format!(
                "element {e} has no test element (add elements/{e}/test-elements/<name>/, see elements/README.md)"
            ));
        }
    }
    let vendor: BTreeSet<String> = subdirs(&repo().join("vendor-tests/elements"))
        .iter()
        .map(|p| file_name(p))
        .collect();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut hooks: BTreeMap<(String, String), String> = BTreeMap::new();
    for e in &elements {
        for sub in subdirs(&repo().join("elements").join(e)) {
            if file_name(&sub).ends_with(".d") || file_name(&sub) == "bin" {
                for f in fs::read_dir(&sub).unwrap().flatten() {
                    hooks.insert((file_name(&sub), file_name(&f.path())), e.clone());
                }
            }
        }
    }
    for t in &tests {
        let l = t.label();
        if let Some(prev) = names.insert(&t.name, &t.element) {
            problems.push(format!(
                "{l}: the name is also a test element of {prev}: names must be unique"
            ));
        }
        if elements.contains(&t.name) || vendor.contains(&t.name) {
            problems.push(format!("{l}: the name is also an element's"));
        }
        if !t.dir.join("README.md").is_file() {
            problems.push(format!("{l}: no README.md saying what it checks"));
        }
        if !t.deps.contains(&t.element) {
            problems.push(format!(
                "{l}: element-deps must list {} (the element under test)",
                t.element
            ));
        }
        if let Some(r) = &t.run_by {
            if !repo().join(format!("vendor-tests/{r}.rs")).is_file() {
                problems.push(format!(
                    "{l}: run-by names vendor-tests/{r}.rs, which does not exist"
                ));
            }
        }
        for f in &t.formats {
            if !FORMATS.contains(&f.as_str()) {
                problems.push(format!(
                    "{l}: test-output-formats: unknown format {f} (one of {FORMATS:?})"
                ));
            }
        }
        let kind = fs::read_to_string(t.dir.join("element-type")).unwrap_or_default();
        if !["", "disk", "ramdisk"].contains(&kind.trim()) {
            problems.push(format!(
                "{l}: element-type is {:?}, not disk or ramdisk",
                kind.trim()
            ));
        }
        if t.check {
            let m = fs::metadata(t.dir.join("test-check")).unwrap();
            if std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 == 0 {
                problems.push(format!("{l}: test-check is not executable"));
            }
        }
        // Hook names are unique across the library and the test elements,
        // so that test elements can share a build.
        for sub in subdirs(&t.dir) {
            let dir = file_name(&sub);
            if !(dir.ends_with(".d") || dir == "bin") {
                continue;
            }
            for f in fs::read_dir(&sub).unwrap().flatten() {
                let p = f.path();
                let key = (dir.clone(), file_name(&p));
                if let Some(prev) = hooks.insert(key.clone(), t.name.clone()) {
                    problems.push(format!(
                        "{l}: {}/{} is also shipped by {prev}: give it a name of its own",
                        key.0, key.1
                    ));
                }
                let head = fs::read(&p).unwrap_or_default();
                let shell = head.starts_with(b"#!/bin/bash")
                    || head.starts_with(b"#!/bin/sh")
                    || dir == "environment.d";
                if p.is_file() && shell {
                    let o = run(Command::new("bash").arg("-n").arg(&p));
                    if !o.status.success() {
                        problems.push(format!("{l}: {}: {}", p.display(), out_text(&o)));
                    }
                }
            }
        }
    }
    // Each test element resolves (with the library and the test OS).
    let mut path = vec![repo().join("vendor-tests/elements").display().to_string()];
    for t in &tests {
        let d = t.dir.parent().unwrap().display().to_string();
        if !path.contains(&d) {
            path.push(d);
        }
    }
    for t in tests.iter().filter(|t| t.run_by.is_none()) {
        let o = run(Command::new(dibr_bin())
            .args(["elements", "-n", &t.name])
            .env("ELEMENTS_PATH", path.join(":"))
            .env("DIBR_ELEMENTS_DIR", repo().join("elements")));
        if !o.status.success() {
            problems.push(format!(
                "{}: does not resolve: {}",
                t.label(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn fast_test_elements_build() {
    let test = "fast_test_elements_build";
    let _serial = serial();
    if !require(test, true, &["sfdisk", "blkid", "cpio", "gzip", "curl"]) {
        return;
    }
    let Some(l) = lib_stage(test) else { return };
    let (_, tests) = discover();
    let owners = hook_owners(&tests);
    let cache = user_dir(&l.s.elements.parent().unwrap().join("cache"));
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let fast: Vec<&TestElement> = tests
        .iter()
        .filter(|t| t.fast() && t.run_by.is_none())
        .collect();
    for t in &fast {
        let g = Group { members: vec![*t] };
        run_group(test, &l, &g, &t.name, &cache, &owners, &mut failures);
    }
    for t in tests.iter().filter(|t| t.run_by.is_some()) {
        println!(
            "{test}: {}: run by vendor-tests/{}.rs",
            t.label(),
            t.run_by.as_deref().unwrap()
        );
    }
    judge(test, failures, fast.len(), t0);
}

#[test]
fn image_test_elements_build() {
    let test = "image_test_elements_build";
    if !image_tests() {
        println!(
            "skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: real bootstraps and package installs)"
        );
        return;
    }
    let _serial = serial();
    if !require(
        test,
        true,
        &["mmdebstrap", "sfdisk", "blkid", "mdir", "cpio", "gzip"],
    ) {
        return;
    }
    let Some(l) = lib_stage(test) else { return };
    let (_, tests) = discover();
    let owners = hook_owners(&tests);
    // The image cache shared with debian_image and readme_newcomer.
    let cache = common::build::user_cache("image-cache");
    let slow: Vec<&TestElement> = tests
        .iter()
        .filter(|t| !t.fast() && t.run_by.is_none())
        .collect();
    let groups = group(&l, &slow);
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        println!("{test}: build {}: {}", i + 1, g.labels());
        let name = format!("image-tests-{}", i + 1);
        run_group(test, &l, g, &name, &cache, &owners, &mut failures);
    }
    judge(test, failures, groups.len(), t0);
}
