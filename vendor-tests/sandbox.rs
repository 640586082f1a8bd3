//! The sandbox judged by the kernel: namespaces, mounts, id mapping and
//! process lifetime, run rootless as the unprivileged user `dibr-ci`.
//!
//! Each test is a scenario that runs in a child process: when `cargo test`
//! runs as root (as CI does), the test binary and `dibr` are copied to a
//! world-readable directory and the scenario is re-run there through
//! `setpriv --reuid=dibr-ci`; as an ordinary user it is re-run directly.
//! The scenario body runs only in that child (`DIBR_SANDBOX_INNER=1`).
//! Without root and dibr-ci the test is skipped with a message, unless
//! `CI=true`, where a missing prerequisite is a failure.
//!
//! The target tree is built from the host's own binaries (dash, coreutils
//! and the libraries `ldd` names), so no download is needed.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use dibr::sandbox::{self, IdMapping, SandboxConfig};

const USER: &str = "dibr-ci";

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn inner() -> bool {
    std::env::var_os("DIBR_SANDBOX_INNER").is_some()
}

fn skip(why: &str) {
    assert!(!ci(), "CI=true but the sandbox test cannot run: {why}");
    eprintln!("skipped: {why}");
}

fn euid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Re-run test `name` in a child process: as dibr-ci when we are root
/// (`as_root` = false), as root itself (`as_root` = true, root mode), or as
/// the current user. Extra environment for the child in `env`.
/// Returns false in the child itself (the caller then runs the body).
fn outer(name: &str, as_root: bool, env: &[(&str, &str)]) -> bool {
    if inner() {
        // As dibr's main does: the environment (DIBR_SANDBOX_HELPER, TMPDIR,
        // DIBR_USERNS, …) read once and installed for the process.
        sandbox::configure(dibr::settings::sandbox());
        return false;
    }
    let is_root = euid() == 0;
    if as_root && !is_root {
        skip("root mode needs root");
        return true;
    }
    let dibr = PathBuf::from(env!("CARGO_BIN_EXE_dibr"));
    let me = std::env::current_exe().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("dibr-sbx-bin-")
        .tempdir()
        .unwrap();
    let mut cmd;
    if is_root && !as_root {
        let have_user = Command::new("id")
            .arg(USER)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let have_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
        if !have_user || !have_setpriv {
            skip(&format!(
                "running as root but user {USER} or setpriv is missing (.ci/run creates {USER})"
            ));
            return true;
        }
        // dibr-ci cannot read target/ under a private checkout: copy.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = dir.path().join("test-bin");
        let d = dir.path().join("dibr");
        std::fs::copy(&me, &t).unwrap();
        std::fs::copy(&dibr, &d).unwrap();
        cmd = Command::new("setpriv");
        cmd.args([
            format!("--reuid={USER}"),
            format!("--regid={USER}"),
            "--clear-groups".into(),
        ])
        .arg(&t)
        .env("DIBR_SANDBOX_HELPER", &d)
        .env("HOME", "/tmp")
        .current_dir("/tmp");
    } else {
        cmd = Command::new(&me);
        cmd.env("DIBR_SANDBOX_HELPER", &dibr);
    }
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("DIBR_SANDBOX_INNER", "1")
        .env("TMPDIR", "/tmp");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running the scenario");
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- scenario {name} stdout:\n{so}\n--- stderr:\n{se}");
    assert!(
        out.status.success(),
        "scenario {name} failed: {}",
        out.status
    );
    assert!(
        so.contains("1 passed"),
        "scenario {name} did not run exactly one test"
    );
    true
}

/// Copy host binaries (and their libraries, from `ldd`) into `root`.
fn build_target(root: &Path) {
    let bins = [
        "sh", "id", "chown", "chmod", "stat", "sleep", "cat", "touch", "ls", "mkdir", "head", "wc",
        "rm", "readlink",
    ];
    let mut files = BTreeSet::new();
    for b in bins {
        let p = which(b).unwrap_or_else(|| panic!("host binary {b} not found"));
        let out = Command::new("ldd").arg(&p).output().expect("ldd");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split("=>").nth(1) {
                Some(rest) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(l) = path.filter(|l| l.starts_with('/')) {
                files.insert(PathBuf::from(l));
            }
        }
        copy_into(root, &p, &Path::new("/bin").join(b));
    }
    for f in files {
        copy_into(root, &f, &f);
    }
    for d in ["etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
}

fn which(b: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(b))
        .find(|p| p.exists())
}

fn copy_into(root: &Path, src: &Path, dst: &Path) {
    let t = root.join(dst.strip_prefix("/").unwrap());
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    std::fs::copy(src, &t).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
}

fn cfg(root: &Path) -> SandboxConfig {
    SandboxConfig {
        root: root.into(),
        binds: vec![],
        env: vec![("PATH".into(), "/bin".into())],
        cwd: "/".into(),
        chroot: true,
        tree_dev: false,
    }
}

fn sh(c: &SandboxConfig, script: &str) -> i32 {
    let argv: Vec<OsString> = vec!["/bin/sh".into(), "-c".into(), script.into()];
    sandbox::run(c, &argv)
        .unwrap_or_else(|e| panic!("sandbox::run: {e}"))
        .code()
        .expect("helper exits with a code")
}

fn target() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("dibr-sbx-root-")
        .tempdir()
        .unwrap();
    build_target(d.path());
    d
}

fn finish(t: tempfile::TempDir) {
    let p = t.keep();
    sandbox::remove_tree(&p).unwrap();
    assert!(!p.exists());
}

fn mountinfo() -> String {
    // Mount ids are stable, so any mount added or left behind shows.
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

fn procs_with(arg: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if c.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
                v.push(pid);
            }
        }
    }
    v
}

#[test]
fn preflight_passes_here() {
    if outer("preflight_passes_here", false, &[]) {
        return;
    }
    let m = sandbox::mapping().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("mapping: {m:?}");
    if euid() != 0 && ci() {
        assert!(
            matches!(m, IdMapping::Subids { .. }),
            "CI gives {USER} a subuid range"
        );
    }
}

#[test]
fn full_mapping_root_inside_and_chown() {
    if outer("full_mapping_root_inside_and_chown", false, &[]) {
        return;
    }
    let m = sandbox::mapping().unwrap();
    let IdMapping::Subids { subuid, subgid, .. } = m else {
        skip(&format!("no subordinate ids for this user: {m:?}"));
        return;
    };
    let t = target();
    let c = cfg(t.path());
    let code = sh(
        &c,
        "id -u > /out; id -g >> /out; touch /f && chown 42:42 /f && chmod u+s /f && \
         stat -c '%u %g %a' /f >> /out",
    );
    assert_eq!(code, 0);
    let out = std::fs::read_to_string(t.path().join("out")).unwrap();
    assert_eq!(out, "0\n0\n42 42 4644\n", "inside view");
    let md = std::fs::metadata(t.path().join("f")).unwrap();
    assert_eq!(
        md.uid(),
        subuid.start + 42,
        "host owner is subuid base + 42"
    );
    assert_eq!(md.gid(), subgid.start + 42);
    assert_eq!(md.mode() & 0o7777, 0o4644);
    // Files the user made before are root's inside.
    let md = std::fs::metadata(t.path().join("bin/sh")).unwrap();
    assert_eq!(md.uid(), euid());
    finish(t);
}

#[test]
fn single_uid_mapping_flattens_and_says_so() {
    if outer(
        "single_uid_mapping_flattens_and_says_so",
        false,
        &[("DIBR_USERNS", "single")],
    ) {
        return;
    }
    let m = sandbox::mapping().unwrap();
    assert!(m.flattens_ownership(), "{m:?}");
    let w = m.warning().unwrap();
    assert!(w.contains("flattened to root"), "{w}");
    let t = target();
    let c = cfg(t.path());
    assert_eq!(sh(&c, "id -u > /out; touch /f; chown 0:0 /f"), 0);
    assert_eq!(
        std::fs::read_to_string(t.path().join("out")).unwrap(),
        "0\n"
    );
    assert_ne!(
        sh(&c, "chown 42:42 /f 2>/dev/null"),
        0,
        "chown to 42 must fail"
    );
    assert_eq!(std::fs::metadata(t.path().join("f")).unwrap().uid(), euid());
    finish(t);
}

/// /proc, /dev, /dev/pts, /dev/shm, ro /sys, resolv.conf, binds, env, cwd.
fn filesystems_scenario() {
    let t = target();
    let hooks = tempfile::tempdir().unwrap();
    std::fs::write(hooks.path().join("hook"), "echo from-hook\n").unwrap();
    std::fs::create_dir(t.path().join("work")).unwrap();
    let mut c = cfg(t.path());
    c.binds = vec![sandbox::Bind::ro(hooks.path(), "/tmp/in_target.d")];
    c.env.push(("DIB_X".into(), "y z".into()));
    c.cwd = "/work".into();
    let before = mountinfo();
    let script = r#"
        set -e
        exec > /out 2>&1
        echo "pid $$"
        test -r /proc/self/status && echo proc-ok
        echo x > /dev/null && echo null-ok
        test "$(head -c 16 /dev/urandom | wc -c)" = 16 && echo urandom-ok
        test "$(head -c 4 /dev/zero | wc -c)" = 4 && echo zero-ok
        test -c /dev/pts/ptmx && test "$(readlink /dev/ptmx)" = pts/ptmx && echo pts-ok
        touch /dev/shm/x && echo shm-ok
        test -d /sys/kernel && echo sys-present
        if touch /sys/dibr-test 2>/dev/null; then echo sys-WRITABLE; else echo sys-ro; fi
        test -f /etc/resolv.conf && echo resolv-ok
        sh /tmp/in_target.d/hook
        if touch /tmp/in_target.d/new 2>/dev/null; then echo bind-WRITABLE; else echo bind-ro; fi
        echo "env $DIB_X"
        echo "cwd $(pwd)"
        echo "home ${HOME:-unset}"
        cat /proc/self/mountinfo > /mountinfo
    "#;
    let code = sh(&c, script);
    let out = std::fs::read_to_string(t.path().join("out")).unwrap();
    assert_eq!(code, 0, "{out}");
    for want in [
        "pid 2\n",
        "proc-ok",
        "null-ok",
        "urandom-ok",
        "zero-ok",
        "pts-ok",
        "shm-ok",
        "sys-present",
        "sys-ro",
        "from-hook",
        "bind-ro",
        "env y z",
        "cwd /work",
        "home unset",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // The sandbox's own mount table: /sys (and every submount) read-only,
    // the right filesystem types on /proc, /dev, /dev/pts, /dev/shm.
    let mi = std::fs::read_to_string(t.path().join("mountinfo")).unwrap();
    let mut seen = BTreeSet::new();
    for line in mi.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (mnt, opts) = (f[4], f[5]);
        let fstype = line.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
        if mnt == "/sys" || mnt.starts_with("/sys/") {
            eprintln!("sandbox mount: {line}");
            assert!(opts.split(',').any(|o| o == "ro"), "writable: {line}");
        }
        seen.insert((mnt.to_string(), fstype.to_string()));
    }
    for (m, t) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
    ] {
        assert!(
            seen.iter().any(|(sm, st)| sm == m && st == t),
            "no {t} on {m} in:\n{mi}"
        );
    }
    assert!(seen.iter().any(|(m, _)| m == "/sys"), "no /sys in:\n{mi}");
    if Path::new("/etc/resolv.conf").is_file() {
        assert!(out.contains("resolv-ok"), "{out}");
    }
    // Mountpoints the sandbox had to create are gone again.
    assert!(!t.path().join("tmp/in_target.d").exists());
    assert!(!t.path().join("etc/resolv.conf").exists());
    assert_eq!(std::fs::read_dir(t.path().join("dev")).unwrap().count(), 0);
    assert_eq!(mountinfo(), before, "host mount table changed");
    // Outside mode: runs on the host's tree with TARGET_ROOT-style env.
    let mut o = cfg(t.path());
    o.chroot = false;
    o.env = vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("TARGET_ROOT".into(), t.path().to_string_lossy().into()),
    ];
    let code = sh(
        &o,
        "echo $$ > \"$TARGET_ROOT/outside\"; id -u >> \"$TARGET_ROOT/outside\"",
    );
    assert_eq!(code, 0);
    let out = std::fs::read_to_string(t.path().join("outside")).unwrap();
    assert!(out.starts_with("2\n0\n"), "{out}");
    // Exit codes come back.
    assert_eq!(sh(&c, "exit 7"), 7);
    assert_eq!(sh(&c, "kill -TERM $$"), 128 + 15);
    let err = sandbox::run(&c, &["/bin/nonexistent".into()]).unwrap_err();
    assert!(err.to_string().contains("nonexistent"), "{err}");
    assert_eq!(mountinfo(), before, "host mount table changed");
    finish(t);
}

#[test]
fn filesystems_inside() {
    if outer("filesystems_inside", false, &[]) {
        return;
    }
    filesystems_scenario();
}

#[test]
fn filesystems_inside_root_mode() {
    if outer("filesystems_inside_root_mode", true, &[]) {
        return;
    }
    assert_eq!(sandbox::mapping().unwrap(), IdMapping::Root);
    filesystems_scenario();
}

fn wait_for(arg: &str) -> Vec<u32> {
    for _ in 0..200 {
        let p = procs_with(arg);
        if !p.is_empty() {
            return p;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("process with argument {arg} never appeared");
}

#[test]
fn no_process_or_mount_outlives_the_sandbox() {
    if outer("no_process_or_mount_outlives_the_sandbox", false, &[]) {
        return;
    }
    let t = target();
    let c = cfg(t.path());
    let before = mountinfo();

    // 1. A daemon left behind by a hook that exits normally.
    assert_eq!(sh(&c, "sleep 987651 & echo started"), 0);
    assert!(
        procs_with("987651").is_empty(),
        "daemon survived the sandbox"
    );
    assert_eq!(mountinfo(), before);

    // 2. The command is killed from outside while a daemon runs.
    let c2 = c.clone();
    let h = std::thread::spawn(move || sh(&c2, "sleep 987652 & exec sleep 987653"));
    let victim = wait_for("987653");
    wait_for("987652");
    Command::new("kill")
        .args(["-KILL", &victim[0].to_string()])
        .status()
        .unwrap();
    assert_eq!(h.join().unwrap(), 128 + 9);
    assert!(
        procs_with("987652").is_empty(),
        "daemon survived a killed command"
    );
    assert_eq!(mountinfo(), before);

    // 3. The caller's ^C handler: kill_running() takes everything down.
    let c3 = c.clone();
    let h = std::thread::spawn(move || {
        sandbox::run(
            &c3,
            &[
                "/bin/sh".into(),
                "-c".into(),
                "sleep 987654 & sleep 987655".into(),
            ],
        )
    });
    wait_for("987655");
    wait_for("987654");
    sandbox::kill_running();
    let st = h.join().unwrap().unwrap();
    assert_eq!(st.code(), Some(128 + 9), "pid 1 was killed: {st}");
    assert!(procs_with("987654").is_empty() && procs_with("987655").is_empty());
    assert_eq!(mountinfo(), before);
    finish(t);
}

#[test]
fn caller_death_kills_the_sandbox() {
    if outer("caller_death_kills_the_sandbox", false, &[]) {
        return;
    }
    // The caller is a child process (this test binary, role "victim"),
    // killed with SIGKILL: PDEATHSIG must take the sandbox down.
    if std::env::var_os("DIBR_SANDBOX_VICTIM").is_some() {
        let root = PathBuf::from(std::env::var_os("DIBR_SANDBOX_VICTIM").unwrap());
        let _ = sh(&cfg(&root), "sleep 987656 & sleep 987657");
        return;
    }
    let t = target();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["caller_death_kills_the_sandbox", "--exact", "--nocapture"])
        .env("DIBR_SANDBOX_VICTIM", t.path())
        .spawn()
        .unwrap();
    wait_for("987657");
    wait_for("987656");
    child.kill().unwrap();
    child.wait().unwrap();
    for _ in 0..100 {
        if procs_with("987656").is_empty() && procs_with("987657").is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(procs_with("987656").is_empty() && procs_with("987657").is_empty());
    finish(t);
}

#[test]
fn remove_tree_deletes_subuid_owned_files() {
    if outer("remove_tree_deletes_subuid_owned_files", false, &[]) {
        return;
    }
    let m = sandbox::mapping().unwrap();
    if !matches!(m, IdMapping::Subids { .. }) {
        skip(&format!("no subordinate ids for this user: {m:?}"));
        return;
    }
    let t = target();
    let c = cfg(t.path());
    assert_eq!(
        sh(
            &c,
            "mkdir -p /w/a/b && touch /w/a/b/f && chown -R 42:42 /w && chmod 0500 /w/a /w/a/b"
        ),
        0
    );
    let w = t.path().join("w");
    assert_eq!(
        std::fs::metadata(&w).unwrap().uid(),
        m.host_uid(42).unwrap()
    );
    let e = std::fs::remove_dir_all(&w).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    finish(t);
}
