//! The hook environment against diskimage-builder's (issue 13, item 2 and
//! acceptance 6).
//!
//! vendor-tests/fixtures/dib-env/ holds what DIB 3.43 gave the
//! `dibr-test-env` element's hooks, run once as root with the caller
//! environment in `caller.env` (`regenerate.sh` there makes it again; CI
//! does not run DIB). This test runs the same element, command line and
//! caller environment through `dibr build` as the unprivileged CI user and
//! compares, for the outside hook (extra-data.d) and the in-target hook
//! (install.d):
//! - the variable names: every difference must be in [`ALLOWED`], with its
//!   reason; an entry that no longer differs fails too, so the list stays
//!   true;
//! - the values of the variables in [`SAME_VALUE`] (no paths, pids or
//!   temporary names in them);
//! - the names `DIB_ENV` declares;
//! - what a cleanup.d hook gets from `$_LIB`'s `select_boot_kernel_initrd`
//!   and `die` (`lib.txt`, made with DIB's own library).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::build::*;
use common::*;

/// Which hook a difference is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Outside,
    InTarget,
}

/// Where the name is: only under DIB, or only under dibr.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Only {
    Dib,
    Dibr,
}

use Only::*;
use Side::*;

/// The differences in names, each with its reason.
const ALLOWED: &[(Side, Only, &str, &str)] = &[
    (
        Outside,
        Dib,
        "DIB_BLOCK_DEVICE_PARAMS_YAML",
        "the parameter file of DIB's Python block-device layer; dibr assembles disks itself and has no such file",
    ),
    (
        InTarget,
        Dib,
        "DIB_BLOCK_DEVICE_PARAMS_YAML",
        "the parameter file of DIB's Python block-device layer; dibr assembles disks itself and has no such file",
    ),
    (
        Outside,
        Dib,
        "DIB_MOUNTPOINTS",
        "DIB's block-device layer exports it after `init`; dibr reads the block-device config only when it assembles the disk",
    ),
    (
        InTarget,
        Dib,
        "DIB_MOUNTPOINTS",
        "DIB's block-device layer exports it after `init`; dibr reads the block-device config only when it assembles the disk",
    ),
    (
        Outside,
        Dib,
        "DIB_BOOT_LABEL",
        "DIB's block-device layer exports it after `init` (empty here); dibr reads the block-device config only when it assembles the disk",
    ),
    (
        InTarget,
        Dib,
        "DIB_BOOT_LABEL",
        "DIB's block-device layer exports it after `init` (empty here); dibr reads the block-device config only when it assembles the disk",
    ),
    (
        InTarget,
        Dib,
        "SUDO_COMMAND",
        "set by the sudo DIB runs chroot with; dibr runs in-target hooks in its sandbox without sudo",
    ),
    (
        InTarget,
        Dib,
        "SUDO_GID",
        "set by the sudo DIB runs chroot with; the caller's ids mean nothing inside dibr's user namespace",
    ),
    (
        InTarget,
        Dib,
        "SUDO_UID",
        "set by the sudo DIB runs chroot with; the caller's ids mean nothing inside dibr's user namespace",
    ),
    (
        InTarget,
        Dib,
        "SUDO_USER",
        "set by the sudo DIB runs chroot with; the caller's name means nothing inside dibr's user namespace",
    ),
    (
        Outside,
        Dibr,
        "DIB_DIBR",
        "dibr's own: lets an element tell it runs under dibr",
    ),
    (
        InTarget,
        Dibr,
        "DIB_DIBR",
        "dibr's own: lets an element tell it runs under dibr",
    ),
    (
        Outside,
        Dibr,
        "DIBR_SANDBOX_MODE",
        "dibr's own: which sandbox mode runs the hooks (namespaces, chroot, fakeroot)",
    ),
    (
        InTarget,
        Dibr,
        "DIBR_SANDBOX_MODE",
        "dibr's own: which sandbox mode runs the hooks (namespaces, chroot, fakeroot)",
    ),
    (
        Outside,
        Dibr,
        "DIBR_PHASE_CACHE",
        "the test's caller environment (vendor-tests/common/build.rs turns the phase cache off): hooks see the caller's environment in DIB and dibr alike",
    ),
    (
        InTarget,
        Dibr,
        "DIBR_PHASE_CACHE",
        "the test's caller environment (vendor-tests/common/build.rs turns the phase cache off): hooks see the caller's environment in DIB and dibr alike",
    ),
    (
        InTarget,
        Dibr,
        "BASH_FUNC_get_image_element_array%%",
        "dibr's dib-run-parts sources element-info --env's text (dibr-env.bash) on both sides; DIB's sudo strips exported functions before the chroot",
    ),
    (
        Outside,
        Dibr,
        "TARGET_ROOT",
        "dibr sets it in every outside phase (DIB: root.d and cleanup.d only); dibr's dpkg element uses it in extra-data.d",
    ),
];

/// Compared by value on both sides (where both have the name).
const SAME_VALUE: &[&str] = &[
    "ARCH",
    "BASE_IMAGE_FILE",
    "DIBR_TEST_CALLER_VAR",
    "DIB_ARGS",
    "DIB_CALLER_KNOB",
    "DIB_CHECKSUM",
    "DIB_DEBUG_TRACE",
    "DIB_DEFAULT_INSTALLTYPE",
    "DIB_IMAGE_EXTRA_SIZE",
    "DIB_MIN_TMPFS",
    "DIB_NO_TMPFS",
    "DIB_OFFLINE",
    "DIB_ROOT_FSTYPE",
    "DIB_ROOT_LABEL",
    "FS_TYPE",
    "HTTP_PROXY",
    "IMAGE_NAME",
    "IMAGE_TYPE",
    "LANG",
    "LC_ALL",
    "LOGNAME",
    "OUT_IMAGE_PATH",
    "SHELL",
    "SKIP_BASE",
    "TERM",
    "TMPDIR",
    "USER",
    "VIRTUAL_ENV",
    "http_proxy",
    "no_proxy",
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-tests/fixtures/dib-env")
}

/// `NAME=VALUE` lines (values with `\n` for newlines, as the element
/// writes them).
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The names `DIB_ENV` declares (`declare -x NAME="…"` lines).
fn declared(dib_env: &str) -> BTreeSet<String> {
    dib_env
        .split("\\n")
        .filter_map(|l| l.strip_prefix("declare -x "))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

fn compare(
    side: Side,
    dib: &BTreeMap<String, String>,
    dibr: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let allowed = |only: Only, name: &str| {
        ALLOWED
            .iter()
            .any(|(s, o, n, _)| *s == side && *o == only && *n == name)
    };
    for k in dib.keys().filter(|k| !dibr.contains_key(*k)) {
        if !allowed(Dib, k) {
            problems.push(format!("{side:?}: {k} is set by DIB, not by dibr"));
        }
    }
    for k in dibr.keys().filter(|k| !dib.contains_key(*k)) {
        if !allowed(Dibr, k) {
            problems.push(format!(
                "{side:?}: {k} is set by dibr ({:?}), not by DIB",
                dibr[k]
            ));
        }
    }
    for (s, o, n, _) in ALLOWED.iter().filter(|(s, ..)| *s == side) {
        let stale = match o {
            Dib => !dib.contains_key(*n) || dibr.contains_key(*n),
            Dibr => !dibr.contains_key(*n) || dib.contains_key(*n),
        };
        if stale {
            problems.push(format!(
                "{s:?}: allow-list entry {n} (only under {o:?}) no longer applies: remove it"
            ));
        }
    }
    for k in SAME_VALUE {
        if let (Some(a), Some(b)) = (dib.get(*k), dibr.get(*k)) {
            if a != b {
                problems.push(format!("{side:?}: {k}: DIB {a:?}, dibr {b:?}"));
            }
        }
    }
    // DIB's order is that of a Python set (string hashing is randomised
    // per process): the same elements, in any order.
    if let (Some(a), Some(b)) = (dib.get("IMAGE_ELEMENT"), dibr.get("IMAGE_ELEMENT")) {
        let a: BTreeSet<&str> = a.split_whitespace().collect();
        let b: BTreeSet<&str> = b.split_whitespace().collect();
        if a != b {
            problems.push(format!("{side:?}: IMAGE_ELEMENT: DIB {a:?}, dibr {b:?}"));
        }
    }
    // IMAGE_ELEMENT_YAML: the same element names (the paths differ).
    if let (Some(a), Some(b)) = (
        dib.get("IMAGE_ELEMENT_YAML"),
        dibr.get("IMAGE_ELEMENT_YAML"),
    ) {
        let names = |v: &str| -> BTreeSet<String> {
            v.split("\\n")
                .filter_map(|l| l.split_once(": ").map(|(n, _)| n.to_string()))
                .collect()
        };
        if names(a) != names(b) {
            problems.push(format!(
                "{side:?}: IMAGE_ELEMENT_YAML names {:?} under DIB, {:?} under dibr",
                names(a),
                names(b)
            ));
        }
    }
    // ELEMENTS_PATH: the caller's entry, then the builder's own elements.
    if let (Some(a), Some(b)) = (dib.get("ELEMENTS_PATH"), dibr.get("ELEMENTS_PATH")) {
        let shape = |v: &str| {
            let e: Vec<&str> = v.split(':').collect();
            (e.len(), e.first().is_some_and(|f| f.ends_with("/elements")))
        };
        if shape(a) != shape(b) {
            problems.push(format!("{side:?}: ELEMENTS_PATH: DIB {a:?}, dibr {b:?}"));
        }
    }
    if let (Some(a), Some(b)) = (dib.get("DIB_ENV"), dibr.get("DIB_ENV")) {
        let (a, b) = (declared(a), declared(b));
        if a != b {
            problems.push(format!(
                "{side:?}: DIB_ENV declares {a:?} under DIB, {b:?} under dibr"
            ));
        }
    }
    problems
}

#[test]
fn hook_environment_matches_dib() {
    let test = "hook_environment_matches_dib";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let caller_text = fs::read_to_string(fixture_dir().join("caller.env")).unwrap();
    let caller: Vec<(String, String)> = caller_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env: Vec<(&str, &str)> = caller
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = s.out.join("out");
    fs::create_dir(&out).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&out));
    // The command line regenerate.sh gives DIB (DIB_ARGS is compared).
    let o = build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "tar",
            "--no-tmpfs",
            "-o",
            "out/envtest",
            "dibr-test-os",
            "dibr-test-env",
        ],
        &env,
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{test}: build failed\n{}", out_text(&o));
    let mut problems = Vec::new();
    for (side, file) in [(Outside, "outside"), (InTarget, "in-target")] {
        let dib = parse(&fs::read_to_string(fixture_dir().join(format!("{file}.env"))).unwrap());
        let got = fs::read_to_string(out.join("envtest.env").join(file))
            .unwrap_or_else(|e| panic!("{test}: the hook's record {file}: {e}\n{}", out_text(&o)));
        let dibr = parse(&got);
        problems.extend(compare(side, &dib, &dibr));
        if side == InTarget {
            // What crosses into DIB's chroot is what `env -u` and sudo leave.
            for k in ["TMPDIR", "VIRTUAL_ENV", "PS4"] {
                if dibr.contains_key(k) {
                    problems.push(format!("InTarget: {k} must not cross into the target"));
                }
            }
        }
    }
    // $_LIB's img-functions and die, used as DIB's elements use them,
    // give what DIB's gave.
    let want = fs::read_to_string(fixture_dir().join("lib.txt")).unwrap();
    let got = fs::read_to_string(out.join("envtest.env/lib")).unwrap_or_default();
    if got != want {
        problems.push(format!(
            "the cleanup.d hook using $_LIB wrote:\n{got}\nDIB's library gave:\n{want}"
        ));
    }
    // _LIB points at a directory with the files DIB's elements source.
    let lib = parse(&fs::read_to_string(out.join("envtest.env/outside")).unwrap())
        .get("_LIB")
        .cloned()
        .unwrap_or_default();
    for f in [
        "die",
        "common-defaults",
        "img-defaults",
        "ramdisk-defaults",
        "common-functions",
        "img-functions",
        "ramdisk-functions",
        "outfilter.py",
    ] {
        if !Path::new(&lib).join(f).is_file() {
            problems.push(format!("_LIB={lib:?} has no {f}"));
        }
    }
    assert!(problems.is_empty(), "{test}:\n{}", problems.join("\n"));
}

/// The shipped libraries can be sourced together under `set -eu -o
/// pipefail` (as DIB's ramdisk element does in-target), and their helpers
/// behave as DIB's: `die` keeps the failing status, and
/// `select_boot_kernel_initrd` picks the newest kernel/initrd of a
/// Debian tree, `copy_required_libs` and `finalise_image` make a ramdisk
/// tree and its cpio.
#[test]
fn shipped_lib_sources_and_works() {
    let test = "shipped_lib_sources_and_works";
    if !require(test, false, &["bash", "cpio", "gzip", "ldd"]) {
        return;
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("lib");
    let t = scratch(test);
    let root = t.path().join("root");
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/debian_version"), "12\n").unwrap();
    for f in [
        "vmlinuz-6.1.0-9-amd64",
        "vmlinuz-6.1.0-10-amd64",
        "initrd.img-6.1.0-9-amd64",
        "initrd.img-6.1.0-10-amd64",
    ] {
        fs::write(root.join("boot").join(f), "").unwrap();
    }
    let script = r#"set -eu -o pipefail
for f in die common-defaults img-defaults ramdisk-defaults common-functions img-functions ramdisk-functions; do
    source "$_LIB/$f"
done
select_boot_kernel_initrd "$1"
echo "KERNEL=$KERNEL RAMDISK=$RAMDISK"
# ramdisk-functions: the libraries bash needs land in $TMP_MOUNT_PATH/lib
# (named as the loader asks for them), and the tree becomes a newc cpio.
TMP_MOUNT_PATH=$2/ramdisk
mkdir -p "$TMP_MOUNT_PATH/lib" "$TMP_MOUNT_PATH/bin"
cp -L "$(type -p bash)" "$TMP_MOUNT_PATH/bin/"
copy_required_libs "$(type -p bash)"
ls "$TMP_MOUNT_PATH/lib" | grep -q '^libc\.so' || { echo "no libc copied"; exit 1; }
echo "fullpath=$(cd /tmp && fullpath x) $(fullpath /abs)"
TMP_IMAGE_PATH=$2/initrd finalise_image >/dev/null
gzip -dc "$2/initrd" | cpio -it 2>/dev/null | grep -qx bin/bash || { echo "bin/bash not in the cpio"; exit 1; }
(exit 7) || die "died"
"#;
    let o = Command::new("bash")
        .args(["-c", script, "x"])
        .arg(&root)
        .arg(t.path())
        .env("_LIB", &lib)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(7), "{test}:\n{}", out_text(&o));
    assert!(
        text.contains("KERNEL=vmlinuz-6.1.0-10-amd64 RAMDISK=initrd.img-6.1.0-10-amd64"),
        "{test}:\n{}",
        out_text(&o)
    );
    assert!(text.contains("died"), "{test}:\n{}", out_text(&o));
    assert!(
        text.contains("fullpath=/tmp/x /abs"),
        "{test}:\n{}",
        out_text(&o)
    );
}
