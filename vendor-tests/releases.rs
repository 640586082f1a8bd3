//! The releases dibr builds by default and on request (issue 16, item 1).
//!
//! - `debian-minimal`'s default is DIB's, `DIB_RELEASE=stable`, resolved
//!   once per build to the codename the mirror's `dists/stable/InRelease`
//!   names: the shipped `environment.d` function is run by bash against a
//!   `file://` mirror holding a real, signed Debian `InRelease` (the build
//!   machine's own apt list), then with the mirror gone (the cached answer;
//!   a stale one with a warning), with `DIB_OFFLINE`, without any answer
//!   (refused, naming the fix) and with a tampered file (refused by gpgv).
//!   The default build itself (trixie today) is built and booted under
//!   SeaBIOS and OVMF by `debian_image`.
//! - `ubuntu` defaults `DIB_UBUNTU_KERNEL` to `linux-image-virtual`, and a
//!   caller's value wins, with the shipped files sourced in dibr's order.
//! - With `DIBR_RELEASE_TESTS=1` (and `DIBR_IMAGE_TESTS=1`): `DIB_RELEASE=
//!   bookworm dibr build debian vm` and `DIB_RELEASE=noble dibr build ubuntu
//!   vm` as the CI user, each booted under SeaBIOS and OVMF with a NoCloud
//!   seed whose user-data prints the running release and whether any
//!   `linux-firmware` package is installed; the noble image's dpkg status
//!   has the virtual kernel and no linux-firmware, linux-modules-extra or
//!   microcode, and its sizes are printed. Each qcow2's Glance side file
//!   (issue 19) says what the image is: `ubuntu` `24.04` and `debian`
//!   `12`, found in the osinfo-db package, and `check --glance` agrees.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::build::{build_cmd, stage, USER};
use common::vm::{self, Vm, OVMF_VARS};
use common::*;

const BOOT_TIMEOUT: Duration = Duration::from_secs(540);

/// The builds and their VMs take turns on the 2 cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn element_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("elements")
        .join(rel)
}

/// `dibr_debian_codename stable` from the shipped environment.d file, in
/// bash, with `env` on top of a clean environment.
fn resolve(env: &[(&str, &str)]) -> Output {
    let f = element_file("debian-minimal/environment.d/09-debian-release-codename.bash");
    let mut c = Command::new("bash");
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/nonexistent")
        .envs(env.iter().copied())
        .arg("-c")
        .arg("set -eu -o pipefail; source \"$0\"; dibr_debian_codename stable")
        .arg(f);
    run(&mut c)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn stable_is_resolved_once_cached_and_falls_back() {
    let test = "stable_is_resolved_once_cached_and_falls_back";
    let lists = Path::new("/var/lib/apt/lists");
    let Some(inrelease) = fs::read_dir(lists).ok().and_then(|d| {
        d.flatten().map(|e| e.path()).find(|p| {
            p.to_string_lossy()
                .ends_with("_debian_dists_bookworm_InRelease")
        })
    }) else {
        assert!(!is_ci(), "{test}: no Debian InRelease in {lists:?} in CI");
        skip(test, "no Debian bookworm InRelease in /var/lib/apt/lists");
        return;
    };
    if !require(test, false, &["gpgv", "sha256sum"]) {
        return;
    }
    let dir = scratch(test);
    let mirror = dir.path().join("mirror");
    fs::create_dir_all(mirror.join("dists/stable")).unwrap();
    fs::copy(&inrelease, mirror.join("dists/stable/InRelease")).unwrap();
    let url = format!("file://{}", mirror.display());
    let cache = dir.path().join("cache");
    let hooks = dir.path().join("hooks");
    fs::create_dir_all(&hooks).unwrap();
    let cache_s = cache.display().to_string();
    let hooks_s = hooks.display().to_string();
    let base = [
        ("DIB_DISTRIBUTION_MIRROR", url.as_str()),
        ("DIB_IMAGE_CACHE", cache_s.as_str()),
    ];

    // From the mirror: the signed file's Codename, said once, cached.
    let o = resolve(&base);
    assert!(o.status.success(), "{test}: {}", out_text(&o));
    assert_eq!(stdout(&o), "bookworm", "{test}: {}", out_text(&o));
    assert!(
        stderr(&o).contains("dibr: debian-minimal: DIB_RELEASE=stable is bookworm (from file://"),
        "{test}: the build output does not say what stable became\n{}",
        out_text(&o)
    );
    let cached: Vec<_> = fs::read_dir(cache.join("debian-minimal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        cached.len() == 1 && fs::read_to_string(&cached[0]).unwrap() == "bookworm\n",
        "{test}: the answer is not cached: {cached:?}"
    );

    // Once per build: the first phase writes it beside the hooks, the later
    // ones read it silently even when the mirror says otherwise.
    let mut with_hooks = base.to_vec();
    with_hooks.push(("TMP_HOOKS_PATH", hooks_s.as_str()));
    let o = resolve(&with_hooks);
    assert_eq!(stdout(&o), "bookworm", "{test}: {}", out_text(&o));
    let forged = dir.path().join("forged");
    fs::create_dir_all(forged.join("dists/stable")).unwrap();
    let o = resolve(&[
        ("DIB_DISTRIBUTION_MIRROR", "file:///nonexistent"),
        ("DIB_IMAGE_CACHE", "/nonexistent"),
        ("TMP_HOOKS_PATH", hooks_s.as_str()),
    ]);
    assert!(
        o.status.success() && stdout(&o) == "bookworm" && stderr(&o).is_empty(),
        "{test}: a later phase did not reuse the build's answer\n{}",
        out_text(&o)
    );

    // The mirror gone: the fresh cache answers; stale, it answers with a
    // warning; DIB_OFFLINE uses it as it is.
    fs::rename(&mirror, dir.path().join("gone")).unwrap();
    let o = resolve(&base);
    assert!(
        o.status.success() && stdout(&o) == "bookworm" && stderr(&o).contains("(cached in "),
        "{test}: the cached answer was not used\n{}",
        out_text(&o)
    );
    run_ok(
        Command::new("touch")
            .args(["-d", "3 days ago"])
            .arg(&cached[0]),
    );
    let o = resolve(&base);
    assert!(
        o.status.success()
            && stdout(&o) == "bookworm"
            && stderr(&o).contains("warning: the mirror could not say which release 'stable' is: using the last known answer"),
        "{test}: no fallback with a warning to a stale answer\n{}",
        out_text(&o)
    );
    let mut offline = base.to_vec();
    offline.push(("DIB_OFFLINE", "1"));
    let o = resolve(&offline);
    assert_eq!(
        stdout(&o),
        "bookworm",
        "{test}: DIB_OFFLINE: {}",
        out_text(&o)
    );

    // No answer at all: refused, naming the fix.
    fs::remove_file(&cached[0]).unwrap();
    for (env, want) in [
        (&base[..], "set DIB_RELEASE to a codename"),
        (
            &offline[..],
            "DIB_OFFLINE is set and which release 'stable' is has never been read",
        ),
    ] {
        let o = resolve(env);
        assert!(
            !o.status.success() && stdout(&o).is_empty() && stderr(&o).contains(want),
            "{test}: not refused with {want:?}\n{}",
            out_text(&o)
        );
    }

    // A tampered InRelease (another codename) is refused by gpgv.
    let text = fs::read_to_string(&inrelease).unwrap();
    fs::write(
        forged.join("dists/stable/InRelease"),
        text.replacen("Codename: bookworm", "Codename: bullseye", 1),
    )
    .unwrap();
    let forged_url = format!("file://{}", forged.display());
    let o = resolve(&[
        ("DIB_DISTRIBUTION_MIRROR", forged_url.as_str()),
        ("DIB_IMAGE_CACHE", cache_s.as_str()),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("is not signed by a key in"),
        "{test}: a tampered InRelease was believed\n{}",
        out_text(&o)
    );
}

/// `DIB_UBUNTU_KERNEL` after the shipped files of `ubuntu` and
/// `ubuntu-minimal` are sourced in dibr's environment.d order.
fn ubuntu_kernel(preset: Option<&str>) -> String {
    let mut c = Command::new("bash");
    c.env_clear().env("PATH", "/usr/bin:/bin");
    if let Some(k) = preset {
        c.env("DIB_UBUNTU_KERNEL", k);
    }
    c.arg("-c")
        .arg("set -eu; source \"$0\"; source \"$1\"; echo \"$DIB_UBUNTU_KERNEL\"")
        .arg(element_file("ubuntu/environment.d/05-ubuntu-kernel.bash"))
        .arg(element_file(
            "ubuntu-minimal/environment.d/10-ubuntu-minimal.bash",
        ));
    stdout(&run_ok(&mut c))
}

#[test]
fn ubuntu_kernel_is_virtual_unless_asked() {
    assert_eq!(ubuntu_kernel(None), "linux-image-virtual");
    assert_eq!(
        ubuntu_kernel(Some("linux-image-generic")),
        "linux-image-generic"
    );
}

/// A NoCloud seed whose user-data prints the running release and the
/// number of installed `linux-firmware*` packages on ttyS0.
fn seed(dir: &Path) -> PathBuf {
    vm::Seed {
        name: "dibr-release",
        ssh_key: None,
        console: "ttyS0",
        before: ". /etc/os-release",
        lines: &[
            "echo \"DIBR-CODENAME $VERSION_CODENAME\"",
            "echo \"DIBR-FIRMWARE $(dpkg-query -W -f='${Status}\\n' 'linux-firmware*' 2>/dev/null | grep -c 'ok installed')\"",
            "echo DIBR-DONE",
        ],
    }
    .write(dir)
}

fn start_vm(disk: &Path, seed: &Path, log: &Path, vars: Option<&Path>) -> Vm {
    let mut c = vm::qemu(log, 1024, vars);
    c.arg("-drive").arg(format!(
        "file={},format=qcow2,if=virtio,snapshot=on",
        disk.display()
    ));
    c.arg("-drive").arg(format!(
        "file={},format=raw,if=virtio,readonly=on",
        seed.display()
    ));
    vm::start(c)
}

/// A member of the image tar, as text.
fn member(tar: &Path, name: &str) -> String {
    let o = run_ok(Command::new("tar").arg("-xOf").arg(tar).arg(name));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Installed packages from dpkg's status file.
fn installed(status: &str) -> Vec<String> {
    status
        .split("\n\n")
        .filter(|p| p.lines().any(|l| l == "Status: install ok installed"))
        .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("Package: ")))
        .map(str::to_string)
        .collect()
}

/// `DIB_RELEASE=RELEASE dibr build -o NAME.qcow2 -t qcow2,tar ELEMENT vm`
/// as the CI user; the image says it is RELEASE and boots under SeaBIOS and
/// OVMF to its user-data. Returns the stage, the qcow2 and the installed
/// packages.
fn build_and_boot(
    test: &str,
    release: &str,
    element: &str,
) -> Option<(common::build::Stage, PathBuf, Vec<String>)> {
    if !image_tests() || !release_tests() {
        println!("skipped: {test}: set DIBR_IMAGE_TESTS=1 DIBR_RELEASE_TESTS=1 (a real {release} build and two TCG boots, ~10 min)");
        return None;
    }
    let tools = [
        "mmdebstrap",
        "qemu-system-x86_64",
        "qemu-img",
        "mkfs.fat",
        "mcopy",
    ];
    if !require(test, true, &tools) {
        return None;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let s = stage(test)?;
    let elements = element_file("").display().to_string();
    let cache = common::build::user_cache("image-cache")
        .display()
        .to_string();
    let name = format!("{release}.qcow2");
    let t0 = Instant::now();
    let o = build_cmd(
        &s,
        &["-o", &name, "-t", "qcow2,tar", element, "vm"],
        &[
            ("DIBR_ELEMENTS_DIR", elements.as_str()),
            ("DIB_IMAGE_CACHE", cache.as_str()),
            ("DIB_GRUB_TIMEOUT", "1"),
            ("DIB_RELEASE", release),
        ],
    )
    .output()
    .unwrap();
    assert!(
        o.status.success(),
        "{test}: dibr build failed\n{}",
        out_text(&o)
    );
    eprintln!(
        "{test}: DIB_RELEASE={release} dibr build {element} vm: {:?}",
        t0.elapsed()
    );
    let disk = s.out.join(&name);
    let tar = s.out.join(format!("{release}.tar"));
    let os = member(&tar, "usr/lib/os-release");
    assert!(
        os.lines()
            .any(|l| l == format!("VERSION_CODENAME={release}")),
        "{test}: the image is not {release}:\n{os}"
    );
    let packages = installed(&member(&tar, "var/lib/dpkg/status"));

    let seed = seed(&s.out);
    let t0 = Instant::now();
    let mut vms = Vec::new();
    for (fw, uefi) in [("seabios", false), ("ovmf", true)] {
        let vars = uefi.then(|| {
            let v = s.out.join(format!("{fw}.vars.fd"));
            fs::copy(OVMF_VARS, &v).unwrap();
            run_ok(Command::new("chown").arg(USER).arg(&v));
            v
        });
        let log = s.out.join(format!("{fw}.log"));
        vms.push((fw, start_vm(&disk, &seed, &log, vars.as_deref()), log));
    }
    for (fw, vm, log) in vms.iter_mut() {
        let what = format!("{test}: {release} under {fw}");
        let text = vm::wait_for(vm, log, "DIBR-DONE", &what, t0, BOOT_TIMEOUT);
        eprintln!("{what}: user-data ran after {:?}", t0.elapsed());
        assert!(
            text.contains(&format!("DIBR-CODENAME {release}")),
            "{what}: the running system is not {release}"
        );
        assert!(
            text.contains("DIBR-FIRMWARE 0"),
            "{what}: a linux-firmware package is installed"
        );
    }
    Some((s, disk, packages))
}

#[test]
fn bookworm_debian_vm_boots() {
    let test = "bookworm_debian_vm_boots";
    let Some((s, disk, packages)) = build_and_boot(test, "bookworm", "debian") else {
        return;
    };
    let os = member(&s.out.join("bookworm.tar"), "usr/lib/os-release");
    common::glance::assert_real_qcow2(test, &disk, &os, &["debian", "vm"]);
    assert!(
        packages.iter().any(|p| p == "linux-image-amd64"),
        "{test}: no linux-image-amd64"
    );
}

#[test]
fn noble_ubuntu_vm_boots_without_linux_firmware() {
    let test = "noble_ubuntu_vm_boots_without_linux_firmware";
    let Some((s, disk, packages)) = build_and_boot(test, "noble", "ubuntu") else {
        return;
    };
    // Issue 19: ubuntu + 24.04, osinfo-db's ubuntu24.04.
    let os = member(&s.out.join("noble.tar"), "usr/lib/os-release");
    common::glance::assert_real_qcow2(test, &disk, &os, &["ubuntu", "vm"]);
    assert!(
        packages.iter().any(|p| p == "linux-image-virtual"),
        "{test}: the default kernel is not linux-image-virtual"
    );
    let heavy: Vec<_> = packages
        .iter()
        .filter(|p| {
            p.starts_with("linux-firmware")
                || p.starts_with("linux-modules-extra-")
                || p.ends_with("-microcode")
                || *p == "linux-image-generic"
        })
        .collect();
    assert!(heavy.is_empty(), "{test}: installed: {heavy:?}");
    let o = run_ok(
        Command::new(tool("qemu-img"))
            .args(["info", "--output=json"])
            .arg(&disk),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!(
        "{test}: noble.qcow2: {} bytes on disk, virtual size {} bytes",
        fs::metadata(&disk).unwrap().len(),
        v["virtual-size"]
    );
}
