//! `dibr build` inside the containers CI users have (issue 11).
//!
//! The image is contrib/container/Containerfile, built from a Debian
//! bookworm base made here with `mmdebstrap --variant=minbase` and imported
//! into Docker and Podman (no registry is ever contacted). In each row the
//! container runs
//!
//! ```text
//! dibr build -n -t tar -o /out/img dibr-test-os dibr-test-hooks
//! ```
//!
//! (the test elements, mounted read-only; they chown 0:42, setcap, make a
//! hard link and a setuid file, and start a `sleep 1000` daemon), and the
//! tar is compared entry by entry with the same build on the host as the
//! CI user `dibr-ci`: kind, link and symlink targets, device numbers, mode
//! (setuid included), owner, xattrs (security.capability included), size
//! and contents. A file the test OS copies from the machine it is built on
//! (bash, libc, …) may differ between the host and the image; it counts
//! as the same only when each tar holds exactly its own machine's copy.
//!
//! Each row must build (a refusal is a failure), leave no `sleep 1000`
//! running and no new entry in the container's /tmp or /dev/shm, print one
//! `dibr: sandbox: ` line naming the expected mode, and that line must
//! appear verbatim in docs/containers.md. The rows:
//!
//! 1. `podman run` rootful, as root → `root-userns`
//! 2. `podman run` rootless (run by dibr-ci), as root → `root-userns`
//! 3. `docker run --security-opt seccomp=unconfined -u 1000` → `userns`
//! 4. `docker run`, as root → `chroot`
//! 5. `docker run -u 1000` → `fakeroot`
//!
//! and the host build as dibr-ci → `userns`. Every row runs even when an
//! earlier one failed; the table (mode, build time against the host's) is
//! printed and written to `$CARGO_TARGET_TMPDIR/containers-report.txt`.
//! `DIBR_CONTAINER_ROWS=2,4` runs only some rows (refused under CI).
//!
//! Row 7 (`DIBR_IMAGE_TESTS=1`): the real `dibr build -o debian.qcow2
//! debian vm` in a default rootful `podman run --network host`, booted on
//! the host under qemu to the login prompt.
//!
//! Quirk of the CI machine, not a dibr requirement: its root lacks
//! CAP_SYS_RESOURCE, so rootful Podman cannot raise nofile/nproc to its
//! defaults; when a plain `podman run` fails that way the test writes
//! /etc/containers/containers.conf.d/90-dibr-ci-ulimits.conf (as .ci/run
//! does).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::build::{build_cmd, serial, stage, Stage, USER};
use common::vm;
use common::*;
use dibr::tarstream::TarReader;
use dibr::tree::{EntryKind, FileData};
use sha2::{Digest, Sha256};

/// Both images, in Docker and in each Podman store. `localhost/` keeps
/// every runtime from looking for them on a registry.
const BASE_IMAGE: &str = "localhost/dibr-vt-base:bookworm";
const IMAGE: &str = "localhost/dibr-vt:test";
const ELEMENTS: [&str; 2] = ["dibr-test-os", "dibr-test-hooks"];
const QUIRK_CONF: &str = "/etc/containers/containers.conf.d/90-dibr-ci-ulimits.conf";
const QUIRK_TEXT: &str =
    "# Written by dibr's test suite: this machine's root lacks CAP_SYS_RESOURCE,\n\
# so Podman cannot raise nofile/nproc to its defaults (a CI machine quirk).\n\
[containers]\ndefault_ulimits = [\"nofile=10000:10000\", \"nproc=10000:10000\"]\n";
const MODE_PREFIX: &str = "dibr: sandbox: ";
const BOOT_TIMEOUT: Duration = Duration::from_secs(360);

/// One test at a time: both build the same image tags.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

// ---------------------------------------------------------------------------
// The container runtimes.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Docker,
    Podman,
    /// Podman run by the CI user, with its own image store.
    PodmanRootless,
}

/// Debian's client: on some machines a newer `docker` in /usr/local/bin
/// shadows it and may not speak to Debian's daemon.
fn docker_bin() -> Option<PathBuf> {
    let debian = Path::new("/usr/bin/docker");
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    which("docker")
}

fn user_uid() -> u32 {
    let o = run_ok(Command::new("id").args(["-u", USER]));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// The CI user's XDG_RUNTIME_DIR (rootless Podman keeps its state there);
/// made as logind would when there is no login session.
fn runtime_dir() -> String {
    let uid = user_uid();
    let d = PathBuf::from(format!("/run/user/{uid}"));
    // Made, or put right where a run that failed half-way left it root's.
    fs::create_dir_all(&d).unwrap();
    // The user's name, not `UID:`: GNU chown derives the login group only
    // from a user name ("invalid spec: '1001:'").
    run_ok(Command::new("chown").arg(format!("{USER}:")).arg(&d));
    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
    d.display().to_string()
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::PodmanRootless => "podman (as dibr-ci)",
        }
    }

    /// The runtime's command line, before its subcommand.
    fn cmd(self) -> Command {
        let mut c = match self {
            Engine::Docker => Command::new(docker_bin().expect("docker")),
            Engine::Podman => Command::new(tool("podman")),
            Engine::PodmanRootless => {
                let xdg = runtime_dir();
                let mut c = vm::as_user(tool("podman"), &[("XDG_RUNTIME_DIR", &xdg)]);
                c.current_dir("/");
                c
            }
        };
        c.stdin(Stdio::null());
        c
    }

    fn image_id(self, name: &str) -> Option<String> {
        let o = run(self
            .cmd()
            .args(["image", "inspect", "--format", "{{.Id}}", name]));
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    fn image_label(self, name: &str, label: &str) -> Option<String> {
        let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
        let o = run(self
            .cmd()
            .args(["image", "inspect", "--format", &format, name]));
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

/// dockerd is not started by every machine: start it (as root, when its
/// socket is absent) and wait up to 60 s for `docker info`.
fn ensure_dockerd() -> Result<(), String> {
    let docker = docker_bin().ok_or("no docker client")?;
    let info = || run(Command::new(&docker).arg("info")).status.success();
    if info() {
        return Ok(());
    }
    if Path::new("/var/run/docker.sock").exists() {
        return Err("/var/run/docker.sock exists but `docker info` fails".into());
    }
    let dockerd = which("dockerd").ok_or("no dockerd (apt install docker.io)")?;
    let dir = test_cache().join("containers");
    fs::create_dir_all(&dir).unwrap();
    let log = fs::File::create(dir.join("dockerd.log")).unwrap();
    eprintln!(
        "starting {} (log: {:?})",
        dockerd.display(),
        dir.join("dockerd.log")
    );
    Command::new(&dockerd)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start dockerd: {e}"))?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if info() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "dockerd did not answer `docker info` within 60 s (see {:?})",
        dir.join("dockerd.log")
    ))
}

/// Root, Docker, Podman, mmdebstrap and the CI user (via `stage`); else a
/// skip (a failure under CI).
fn prerequisites(test: &str) -> bool {
    if !require(test, true, &["podman", "mmdebstrap", "setpriv", "tar"]) {
        return false;
    }
    if docker_bin().is_none() {
        skip(test, "no docker client (apt install docker.io)");
        return false;
    }
    if let Err(why) = ensure_dockerd() {
        skip(test, &why);
        return false;
    }
    true
}

// ---------------------------------------------------------------------------
// The images.
// ---------------------------------------------------------------------------

/// The bookworm minbase tarball, made once and kept in the test cache
/// (by the CI user, with mmdebstrap's unshare mode, as the other tests'
/// base trees).
fn base_tar(test: &str) -> Option<PathBuf> {
    let tar = common::build::user_cache("containers-base").join("bookworm-minbase.tar");
    common::build::mmdebstrap_tar(test, &tar, &[], &["--variant=minbase".to_string()])
}

/// Identifies the tarball an imported base came from.
fn tar_stamp(tar: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(tar).unwrap();
    format!("{}-{}", m.size(), m.mtime())
}

/// Imports the base tarball into `e`'s store unless the same one is there.
fn import_base(e: Engine, tar: &Path) {
    let stamp = tar_stamp(tar);
    if e.image_label(BASE_IMAGE, "dibr-vt-base").as_deref() == Some(stamp.as_str()) {
        return;
    }
    let o = run(e
        .cmd()
        .arg("import")
        .arg("--change")
        .arg(format!("LABEL dibr-vt-base={stamp}"))
        .arg(tar)
        .arg(BASE_IMAGE));
    assert!(
        o.status.success(),
        "{}: import of the base tarball failed\n{}",
        e.name(),
        out_text(&o)
    );
}

/// Rootful Podman on the CI machine: see the module documentation.
fn podman_ulimit_quirk() {
    let probe = || {
        run(Engine::Podman
            .cmd()
            .args(["run", "--rm", "--network", "none", BASE_IMAGE, "true"]))
    };
    let o = probe();
    if o.status.success() {
        return;
    }
    let text = out_text(&o);
    assert!(
        text.contains("error setting rlimit"),
        "podman: a plain `podman run` fails\n{text}"
    );
    eprintln!(
        "podman: cannot set its default rlimits here (CI machine quirk): writing {QUIRK_CONF}"
    );
    fs::create_dir_all(Path::new(QUIRK_CONF).parent().unwrap()).unwrap();
    fs::write(QUIRK_CONF, QUIRK_TEXT).unwrap();
    let o = probe();
    assert!(
        o.status.success(),
        "podman: still fails with {QUIRK_CONF}\n{}",
        out_text(&o)
    );
}

/// The build context made by contrib/container/make-context from this
/// build's dibr, readable by the CI user.
fn context() -> tempfile::TempDir {
    let dir = scratch("container-context");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/container/make-context");
    run_ok(
        Command::new("sh")
            .arg(script)
            .arg(dir.path())
            .env("DIBR", dibr_bin()),
    );
    dir
}

/// `build --network host` of the Containerfile on the local base; the
/// image it replaces is removed (ours only: nothing else is pruned).
fn build_image(e: Engine, ctx: &Path) -> Duration {
    let old = e.image_id(IMAGE);
    let t0 = Instant::now();
    let o = run(e
        .cmd()
        .args(["build", "--network", "host", "--build-arg"])
        .arg(format!("BASE={BASE_IMAGE}"))
        .args(["-t", IMAGE, "-f"])
        .arg(ctx.join("Containerfile"))
        .arg(ctx));
    assert!(
        o.status.success(),
        "{}: build of contrib/container/Containerfile failed\n{}",
        e.name(),
        out_text(&o)
    );
    let took = t0.elapsed();
    if let Some(old) = old.filter(|old| e.image_id(IMAGE).as_ref() != Some(old)) {
        let _ = run(e.cmd().args(["rmi", &old]));
    }
    took
}

/// Base and image in every store the rows use.
fn images(test: &str, engines: &[Engine]) -> Option<()> {
    let tar = base_tar(test)?;
    let ctx = context();
    for &e in engines {
        import_base(e, &tar);
        if e == Engine::Podman {
            podman_ulimit_quirk();
        }
        let took = build_image(e, ctx.path());
        eprintln!("{test}: {}: image built in {took:.1?}", e.name());
    }
    Some(())
}

// ---------------------------------------------------------------------------
// Tar contents.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Ent {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    xattrs: BTreeMap<String, Vec<u8>>,
    size: u64,
    sha256: String,
}

fn kind_text(k: &EntryKind) -> String {
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match k {
        EntryKind::File => "file".into(),
        EntryKind::Dir => "directory".into(),
        EntryKind::Symlink(t) => format!("symlink to {}", s(t)),
        EntryKind::HardLink(t) => format!("hard link to {}", s(t)),
        EntryKind::CharDev { major, minor } => format!("char device {major}:{minor}"),
        EntryKind::BlockDev { major, minor } => format!("block device {major}:{minor}"),
        EntryKind::Fifo => "fifo".into(),
        EntryKind::Socket => "socket".into(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every entry of a tar by path, with a digest of its data.
fn read_entries(p: &Path) -> BTreeMap<String, Ent> {
    let mut r = TarReader::new(fs::File::open(p).unwrap_or_else(|e| panic!("open {p:?}: {e}")));
    let mut m = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Some(e) = r
        .next_entry()
        .unwrap_or_else(|err| panic!("{p:?}: not a readable tar: {err}"))
    {
        let mut h = Sha256::new();
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let xattrs = e
            .xattrs
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
            .collect();
        m.insert(
            String::from_utf8_lossy(&e.path).into_owned(),
            Ent {
                kind: kind_text(&e.kind),
                mode: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                xattrs,
                size: e.size,
                sha256: hex(&h.finalize()),
            },
        );
    }
    m
}

/// The machine's own copy of `path` (following symlinks), if it has one.
fn host_source_sha(path: &str) -> Option<String> {
    let p = Path::new("/").join(path);
    fs::metadata(&p)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| sha256_file(&p))
}

/// Differences of `got` from the host's tar, one line each; and the
/// files both took from their own machine (not differences).
fn compare(
    row: &str,
    host: &BTreeMap<String, Ent>,
    got: &BTreeMap<String, Ent>,
    row_sources: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let mut diffs = Vec::new();
    let mut own_copies = Vec::new();
    let paths: BTreeSet<&String> = host.keys().chain(got.keys()).collect();
    for p in paths {
        let (h, g) = match (host.get(p), got.get(p)) {
            (Some(h), Some(g)) => (h, g),
            (Some(h), None) => {
                diffs.push(format!("{row}: {p} missing (host has a {})", h.kind));
                continue;
            }
            (None, Some(g)) => {
                diffs.push(format!("{row}: {p} ({}) is not in the host's tar", g.kind));
                continue;
            }
            (None, None) => unreachable!(),
        };
        let mut d = |what: String| diffs.push(format!("{row}: {p} {what}"));
        if g.kind != h.kind {
            d(format!("is a {}, host a {}", g.kind, h.kind));
            continue;
        }
        if g.mode != h.mode {
            d(format!("mode {:04o}, host {:04o}", g.mode, h.mode));
        }
        if (g.uid, g.gid) != (h.uid, h.gid) {
            d(format!(
                "uid/gid {}:{}, host {}:{}",
                g.uid, g.gid, h.uid, h.gid
            ));
        }
        if g.xattrs != h.xattrs {
            d(format!(
                "xattrs {}, host {}",
                xattr_text(&g.xattrs),
                xattr_text(&h.xattrs)
            ));
        }
        if (g.size, &g.sha256) != (h.size, &h.sha256) {
            let own = g.kind == "file"
                && host_source_sha(p).as_ref() == Some(&h.sha256)
                && row_sources.get(p) == Some(&g.sha256);
            if own {
                own_copies.push(p.clone());
            } else {
                d(format!(
                    "contents differ: {} bytes sha256 {:.12}, host {} bytes {:.12}",
                    g.size, g.sha256, h.size, h.sha256
                ));
            }
        }
    }
    (diffs, own_copies)
}

fn xattr_text(x: &BTreeMap<String, Vec<u8>>) -> String {
    if x.is_empty() {
        return "none".into();
    }
    let v: Vec<String> = x.iter().map(|(k, v)| format!("{k}=0x{}", hex(v))).collect();
    v.join(",")
}

/// A small tree the comparison is checked on: `changed` alters one field
/// of each entry.
fn tiny_tree(root: &Path, changed: bool) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    let true_copy = if changed {
        b"not the host's true\n".to_vec()
    } else {
        fs::read("/usr/bin/true").unwrap()
    };
    fs::write(root.join("usr/bin/true"), true_copy).unwrap();
    fs::write(root.join("f42"), "owned\n").unwrap();
    fs::write(root.join("data"), if changed { "b\n" } else { "a\n" }).unwrap();
    fs::write(root.join("suid"), "suid\n").unwrap();
    fs::copy("/usr/bin/true", root.join("capbin")).unwrap();
    let mode = if changed { 0o755 } else { 0o4755 };
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(mode)).unwrap();
    run_ok(
        Command::new("chown")
            .arg(if changed { "0:0" } else { "0:42" })
            .arg(root.join("f42")),
    );
    if changed {
        fs::write(root.join("f42-link"), "owned\n").unwrap();
        fs::write(root.join("only-here"), "").unwrap();
    } else {
        fs::hard_link(root.join("f42"), root.join("f42-link")).unwrap();
        run_ok(
            Command::new(tool("setcap"))
                .arg("cap_net_raw+ep")
                .arg(root.join("capbin")),
        );
    }
    let target = if changed { "suid" } else { "f42" };
    std::os::unix::fs::symlink(target, root.join("sl")).unwrap();
}

/// The comparison itself, on real tars made by GNU tar from two trees that
/// differ in one field per entry: each difference is named; a file each
/// tar holds its own machine's copy of is not one; a tar equals itself.
#[test]
fn compare_names_every_difference() {
    let test = "compare_names_every_difference";
    if !require(test, true, &["tar", "setcap"]) {
        return;
    }
    let d = scratch(test);
    let mut tars = Vec::new();
    for (name, changed) in [("host", false), ("row", true)] {
        let tree = d.path().join(name);
        tiny_tree(&tree, changed);
        let tar = d.path().join(format!("{name}.tar"));
        gnu_tar(
            &tree,
            &tar,
            &[
                "--sort=name",
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
            ],
        );
        tars.push(read_entries(&tar));
    }
    let (host, row) = (&tars[0], &tars[1]);
    let (same, own) = compare("row 0 self", host, host, &BTreeMap::new());
    assert!(
        same.is_empty() && own.is_empty(),
        "{test}: {same:?} {own:?}"
    );
    let row_true = row["usr/bin/true"].sha256.clone();
    let own_copy = BTreeMap::from([("usr/bin/true".to_string(), row_true)]);
    let (diffs, own) = compare("row 0 test", host, row, &own_copy);
    let text = diffs.join("\n");
    for want in [
        "row 0 test: f42 uid/gid 0:0, host 0:42",
        "row 0 test: suid mode 0755, host 4755",
        "row 0 test: capbin xattrs none, host security.capability=0x",
        "row 0 test: sl is a symlink to suid, host a symlink to f42",
        "row 0 test: f42-link is a file, host a hard link to f42",
        "row 0 test: data contents differ: 2 bytes",
        "row 0 test: only-here (file) is not in the host's tar",
    ] {
        assert!(text.contains(want), "{test}: no {want:?} in:\n{text}");
    }
    assert_eq!(diffs.len(), 7, "{test}: unexpected differences:\n{text}");
    assert_eq!(own, ["usr/bin/true"], "{test}: own copies");
    let (diffs, _) = compare("row 0 test", host, row, &BTreeMap::new());
    assert!(
        diffs
            .iter()
            .any(|l| l.contains("usr/bin/true contents differ")),
        "{test}: a file that is not the image's own copy passed: {diffs:?}"
    );
}

// ---------------------------------------------------------------------------
// The mode line and the docs.
// ---------------------------------------------------------------------------

fn mode_lines(o: &Output) -> Vec<String> {
    [&o.stdout, &o.stderr]
        .iter()
        .flat_map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .filter(|l| l.starts_with(MODE_PREFIX))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn docs_page() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/containers.md");
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

/// Exactly one mode line, naming `want` as its third word, and printed
/// verbatim in docs/containers.md. Returns the mode found (or a dash).
fn check_mode(row: &str, o: &Output, want: &str, problems: &mut Vec<String>) -> String {
    let lines = mode_lines(o);
    let [line] = lines.as_slice() else {
        problems.push(format!(
            "{row}: {} lines start with {MODE_PREFIX:?} (want exactly one): {lines:?}",
            lines.len()
        ));
        return "-".into();
    };
    let mode = line.split_whitespace().nth(2).unwrap_or("").to_string();
    if mode != want {
        problems.push(format!(
            "{row}: sandbox mode {mode:?}, want {want:?}: {line}"
        ));
    }
    if !docs_page().lines().any(|l| l.trim_end() == line.trim_end()) {
        problems.push(format!(
            "{row}: docs/containers.md does not show the line dibr printed: {line}"
        ));
    }
    mode
}

// ---------------------------------------------------------------------------
// The rows.
// ---------------------------------------------------------------------------

struct Row {
    n: u32,
    name: &'static str,
    engine: Engine,
    /// `run` options besides the mounts (no other security option).
    args: &'static [&'static str],
    /// Who owns /out on the host: the container user's host uid.
    out_owner: fn() -> u32,
    mode: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        n: 1,
        name: "podman root",
        engine: Engine::Podman,
        args: &[],
        out_owner: || 0,
        mode: "root-userns",
    },
    Row {
        n: 2,
        name: "podman rootless",
        engine: Engine::PodmanRootless,
        args: &[],
        out_owner: user_uid,
        mode: "root-userns",
    },
    Row {
        n: 3,
        name: "docker seccomp=unconfined -u 1000",
        engine: Engine::Docker,
        args: &["--security-opt", "seccomp=unconfined", "-u", "1000"],
        out_owner: || 1000,
        mode: "userns",
    },
    Row {
        n: 4,
        name: "docker root",
        engine: Engine::Docker,
        args: &[],
        out_owner: || 0,
        mode: "chroot",
    },
    Row {
        n: 5,
        name: "docker -u 1000",
        engine: Engine::Docker,
        args: &["-u", "1000"],
        out_owner: || 1000,
        mode: "fakeroot",
    },
    // Row 6's other environments: a default Docker container carrying the
    // marker each one sets (a pod's KUBERNETES_SERVICE_HOST, the runners'
    // GITLAB_CI / GITHUB_ACTIONS), so dibr names that environment's fix;
    // their lines must be in docs/containers.md too.
    Row {
        n: 6,
        name: "kubernetes-like root",
        engine: Engine::Docker,
        args: &["-e", "KUBERNETES_SERVICE_HOST=10.96.0.1"],
        out_owner: || 0,
        mode: "chroot",
    },
    Row {
        n: 6,
        name: "kubernetes-like -u 1000",
        engine: Engine::Docker,
        args: &["-e", "KUBERNETES_SERVICE_HOST=10.96.0.1", "-u", "1000"],
        out_owner: || 1000,
        mode: "fakeroot",
    },
    Row {
        n: 6,
        name: "gitlab-like root",
        engine: Engine::Docker,
        args: &["-e", "GITLAB_CI=true"],
        out_owner: || 0,
        mode: "chroot",
    },
    Row {
        n: 6,
        name: "github container: root",
        engine: Engine::Docker,
        args: &["-e", "GITHUB_ACTIONS=true"],
        out_owner: || 0,
        mode: "chroot",
    },
];

/// In the container: the build, then what it left (markers on stdout).
/// Only `sleep` processes (by comm) count: the shell's own forks carry
/// this script in their command line.
const SCRIPT: &str = r#"
echo "@@dibr-vt before"; ls -A /tmp /dev/shm
echo "@@dibr-vt build"
s=$(date +%s%N)
dibr build -n -t tar -o /out/img dibr-test-os dibr-test-hooks
rc=$?
e=$(date +%s%N)
echo "@@dibr-vt rc $rc"
echo "@@dibr-vt ns $((e - s))"
echo "@@dibr-vt procs"
for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = sleep ] || continue
    echo "${p#/proc/} $(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)"
done
echo "@@dibr-vt after"; ls -A /tmp /dev/shm
echo "@@dibr-vt sources"
if [ -f /out/img.tar ]; then
    tar -tf /out/img.tar | while IFS= read -r p; do
        f="/${p#./}"
        [ -f "$f" ] && sha256sum "$f"
    done
fi
echo "@@dibr-vt end"
"#;

/// The lines of stdout between `@@dibr-vt NAME` and the next marker.
fn section(stdout: &str, name: &str) -> Vec<String> {
    let start = format!("@@dibr-vt {name}");
    stdout
        .lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| !l.starts_with("@@dibr-vt "))
        .map(str::to_string)
        .collect()
}

fn marker_value(stdout: &str, name: &str) -> Option<String> {
    let prefix = format!("@@dibr-vt {name} ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

/// `sha256sum` lines as path (relative, as in the tar) → digest.
fn sources(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once("  "))
        .map(|(sha, f)| (f.trim_start_matches('/').to_string(), sha.to_string()))
        .collect()
}

/// What became of a row's tar.
enum TarResult {
    /// The build failed (or was refused): no tar to compare.
    NotBuilt,
    /// Entry by entry the host's; `own_copies` files hold the image's own
    /// copy of a file the host's tar holds the host's copy of.
    Same {
        own_copies: usize,
    },
    Differs {
        entries: usize,
    },
}

struct Outcome {
    label: String,
    mode: String,
    build: Option<Duration>,
    tar: TarResult,
    problems: Vec<String>,
}

struct Host {
    entries: BTreeMap<String, Ent>,
    build: Duration,
    mode: String,
}

/// The reference: the same build on the host as the CI user.
fn host_build(test: &str, s: &Stage, problems: &mut Vec<String>) -> Host {
    let b = common::build::before();
    let mut args = vec!["-n", "-t", "tar", "-o", "host"];
    args.extend(ELEMENTS);
    let t0 = Instant::now();
    let o = build_cmd(s, &args, &[]).output().unwrap();
    let build = t0.elapsed();
    assert!(
        o.status.success(),
        "{test}: the host build as {USER} failed: nothing to compare with\n{}",
        out_text(&o)
    );
    common::build::assert_no_leftovers(test, &b);
    let mode = check_mode("host build as dibr-ci", &o, "userns", problems);
    Host {
        entries: read_entries(&s.out.join("host.tar")),
        build,
        mode,
    }
}

/// The row's output directory, owned on the host by the container user.
fn row_out(row: &Row, s: &Stage) -> PathBuf {
    let slug: String = row
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let out = s.out.parent().unwrap().join(format!("row{}-{slug}", row.n));
    fs::create_dir(&out).unwrap();
    run_ok(
        Command::new("chown")
            .arg((row.out_owner)().to_string())
            .arg(&out),
    );
    out
}

/// `run --rm` of SCRIPT with the test elements read-only at /elements
/// and `out` at /out.
fn run_container(row: &Row, s: &Stage, out: &Path) -> Output {
    run(row
        .engine
        .cmd()
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/elements:ro", s.elements.display()))
        .arg("-v")
        .arg(format!("{}:/out", out.display()))
        .args(["-e", "ELEMENTS_PATH=/elements"])
        .args(row.args)
        .args([IMAGE, "sh", "-c", SCRIPT]))
}

/// No `sleep 1000` left running, nothing new in /tmp or /dev/shm.
fn leftovers(label: &str, stdout: &str) -> Vec<String> {
    let mut v = Vec::new();
    let procs = section(stdout, "procs");
    if !procs.is_empty() {
        v.push(format!("{label}: still running after the build: {procs:?}"));
    }
    let (was, now) = (section(stdout, "before"), section(stdout, "after"));
    if was != now {
        v.push(format!(
            "{label}: left in /tmp or /dev/shm: before {was:?}, after {now:?}"
        ));
    }
    v
}

fn run_row(row: &Row, s: &Stage, host: &Host) -> Outcome {
    let label = format!("row {} {}", row.n, row.name);
    let out = row_out(row, s);
    let o = run_container(row, s, &out);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut problems = Vec::new();
    let mode = check_mode(&label, &o, row.mode, &mut problems);
    let build = marker_value(&stdout, "ns")
        .and_then(|n| n.parse::<u64>().ok())
        .map(Duration::from_nanos);
    let rc = marker_value(&stdout, "rc");
    let tar = if rc.as_deref() != Some("0") {
        problems.push(format!(
            "{label}: dibr build failed (exit {})\n{}",
            rc.as_deref()
                .unwrap_or("unknown: the container did not run the script"),
            indent(&out_text(&o))
        ));
        TarResult::NotBuilt
    } else {
        let (d, own) = compare(
            &label,
            &host.entries,
            &read_entries(&out.join("img.tar")),
            &sources(&section(&stdout, "sources")),
        );
        if !own.is_empty() {
            eprintln!("{label}: each tar holds its own machine's copy of {own:?}");
        }
        let tar = if d.is_empty() {
            TarResult::Same {
                own_copies: own.len(),
            }
        } else {
            TarResult::Differs { entries: d.len() }
        };
        problems.extend(d);
        tar
    };
    problems.extend(leftovers(&label, &stdout));
    Outcome {
        label,
        mode,
        build,
        tar,
        problems,
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// `DIBR_CONTAINER_ROWS=1,3`: only those rows (harness development).
fn selected_rows() -> Vec<&'static Row> {
    let Ok(sel) = std::env::var("DIBR_CONTAINER_ROWS") else {
        return ROWS.iter().collect();
    };
    assert!(
        !is_ci(),
        "DIBR_CONTAINER_ROWS is for harness development and is refused under CI"
    );
    let want: Vec<u32> = sel
        .split(',')
        .map(|x| x.trim().parse().expect("DIBR_CONTAINER_ROWS: row numbers"))
        .collect();
    eprintln!("WARNING: DIBR_CONTAINER_ROWS={sel}: the other rows are NOT run");
    ROWS.iter().filter(|r| want.contains(&r.n)).collect()
}

fn result_text(o: &Outcome) -> String {
    let tar = match o.tar {
        TarResult::NotBuilt => "no tar (build failed)".to_string(),
        TarResult::Same { own_copies: 0 } => "same tar".to_string(),
        TarResult::Same { own_copies } => {
            format!("same tar ({own_copies} files are each machine's own copy)")
        }
        TarResult::Differs { entries } => format!("tar differs ({entries} differences)"),
    };
    match o.problems.len() {
        0 => format!("ok: {tar}"),
        n => format!("FAILED ({n} problems): {tar}"),
    }
}

fn report(host: &Host, outcomes: &[Outcome]) -> String {
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let line = |env: &str, mode: &str, build: &str, ratio: &str, result: &str| {
        format!("{env:<40} {mode:<12} {build:>8} {ratio:>8}  {result}\n")
    };
    let mut t = line("environment", "mode", "build", "vs host", "result");
    t += &line(
        "host build as dibr-ci",
        &host.mode,
        &secs(host.build),
        "1.00x",
        "reference",
    );
    for o in outcomes {
        let built = !matches!(o.tar, TarResult::NotBuilt);
        let (b, ratio) = match o.build {
            Some(b) if built => (
                secs(b),
                format!("{:.2}x", b.as_secs_f64() / host.build.as_secs_f64()),
            ),
            _ => ("-".into(), "-".into()),
        };
        t += &line(&o.label, &o.mode, &b, &ratio, &result_text(o));
    }
    t
}

fn write_report(table: &str) {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containers-report.txt");
    let _ = fs::write(&p, table);
    eprintln!("{table}(also in {})", p.display());
}

#[test]
fn dibr_build_in_containers_matches_the_host_build() {
    let test = "dibr_build_in_containers_matches_the_host_build";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let _serial = serial();
    if !prerequisites(test) {
        return;
    }
    let Some(s) = stage(test) else { return };
    let rows = selected_rows();
    let mut engines: Vec<Engine> = Vec::new();
    for r in &rows {
        if !engines.contains(&r.engine) {
            engines.push(r.engine);
        }
    }
    if images(test, &engines).is_none() {
        return;
    }
    let mut problems = Vec::new();
    let host = host_build(test, &s, &mut problems);
    let outcomes: Vec<Outcome> = rows.iter().map(|r| run_row(r, &s, &host)).collect();
    write_report(&report(&host, &outcomes));
    problems.extend(outcomes.iter().flat_map(|o| o.problems.iter().cloned()));
    assert!(
        problems.is_empty(),
        "{test}: {} problems:\n{}",
        problems.len(),
        cap(&problems, 60).join("\n")
    );
}

/// The first `n` lines and a count of the rest.
fn cap(v: &[String], n: usize) -> Vec<String> {
    let mut out: Vec<String> = v.iter().take(n).cloned().collect();
    if v.len() > n {
        out.push(format!("… and {} more", v.len() - n));
    }
    out
}

// ---------------------------------------------------------------------------
// Row 7: the real Debian image, built in Podman, booted on the host.
// ---------------------------------------------------------------------------

const DEBIAN_SCRIPT: &str = r#"
cd /out || exit 1
dibr build -o /out/debian.qcow2 debian vm
rc=$?
echo "@@dibr-vt rc $rc"
"#;

#[test]
fn debian_vm_built_in_default_podman_boots() {
    let test = "debian_vm_built_in_default_podman_boots";
    if !image_tests() {
        println!(
            "skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: a real Debian build in Podman and a TCG boot)"
        );
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !prerequisites(test) || !require(test, true, &["qemu-system-x86_64", "qemu-img"]) {
        return;
    }
    let Some(s) = stage(test) else { return };
    images(test, &[Engine::Podman]);
    let label = "row 7 podman root, debian vm";
    let t0 = Instant::now();
    let o = run(Engine::Podman
        .cmd()
        .args(["run", "--rm", "--network", "host", "-v"])
        .arg(format!("{}:/out", s.out.display()))
        .args(["-e", "DIB_GRUB_TIMEOUT=1"])
        .args([IMAGE, "sh", "-c", DEBIAN_SCRIPT]));
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut problems = Vec::new();
    let mode = check_mode(label, &o, "root-userns", &mut problems);
    assert!(
        marker_value(&stdout, "rc").as_deref() == Some("0"),
        "{label}: dibr build failed\n{}",
        out_text(&o)
    );
    eprintln!("{label}: mode {mode}, built in {took:.1?}");
    let disk = s.out.join("debian.qcow2");
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["check", "-q"])
            .arg(&disk),
    );
    fs::set_permissions(&disk, fs::Permissions::from_mode(0o644)).unwrap();
    let log = s.out.join("boot.log");
    let mut c = vm::qemu(&log, 1024, None);
    c.arg("-snapshot")
        .arg("-drive")
        .arg(format!("file={},format=qcow2,if=virtio", disk.display()));
    let mut machine = vm::start(c);
    let t0 = Instant::now();
    vm::wait_for(&mut machine, &log, " login:", label, t0, BOOT_TIMEOUT);
    eprintln!("{label}: login prompt after {:?}", t0.elapsed());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
