//! The `iso` element (issue 17, item 4): `dibr ramdisk … iso` writes
//! NAME.iso beside NAME.kernel and NAME.initramfs, rootless, as the CI
//! user. Judged by the real tools: `xorriso -report_el_torito` lists the
//! BIOS and the UEFI boot image, two builds with one SOURCE_DATE_EPOCH are
//! byte-identical (and another epoch is not), a missing host tool stops
//! the build before it starts, naming the Debian package. With
//! DIBR_IMAGE_TESTS=1, a Debian ramdisk's ISO boots from `-cdrom` under
//! SeaBIOS and under OVMF (TCG) to the ramdisk's login prompt.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::build::{stage, Stage};
use common::vm::{self, Vm, OVMF_CODE, OVMF_VARS};
use common::*;

// TCG boots of a 180 MiB initramfs: 1.5–3 min alone, much longer on a
// loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const EPOCH: &str = "1700000000";

fn elements_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("elements")
}

/// `dibr ramdisk -n -o NAME iso-ramdisk` (the `iso` element's fast test
/// element on the host-binary test OS) as the CI user.
fn fast_build(s: &Stage, name: &str, env: &[(&str, &str)]) -> Output {
    fast_build_of(s, name, &["iso-ramdisk"], env)
}

/// `dibr ramdisk -n -o NAME ELEMENTS…` as the CI user, the test elements
/// of `iso` and `ramdisk` on ELEMENTS_PATH.
fn fast_build_of(s: &Stage, name: &str, elements: &[&str], env: &[(&str, &str)]) -> Output {
    let path = format!(
        "{}:{}:{}",
        s.elements.display(),
        elements_dir().join("iso/test-elements").display(),
        elements_dir().join("ramdisk/test-elements").display()
    );
    let lib = elements_dir().display().to_string();
    let mut e = vec![
        ("ELEMENTS_PATH", path.as_str()),
        ("DIBR_ELEMENTS_DIR", lib.as_str()),
    ];
    e.extend_from_slice(env);
    vm::as_user(&s.bin, &e)
        .args(["ramdisk", "-n", "-o", name])
        .args(elements)
        .current_dir(&s.out)
        .output()
        .unwrap()
}

/// `xorriso -report_el_torito plain` of `iso`.
fn el_torito(iso: &Path) -> String {
    let o = run_ok(
        Command::new(tool("xorriso"))
            .arg("-indev")
            .arg(iso)
            .args(["-report_el_torito", "plain"]),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_bios_and_uefi(test: &str, iso: &Path) {
    let r = el_torito(iso);
    let has = |n: &str, pltf: &str, path: &str| {
        r.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.starts_with(&["El", "Torito", "boot", "img", ":", n, pltf, "y", "none"])
        }) && r.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.starts_with(&["El", "Torito", "img", "path", ":", n, path])
        })
    };
    assert!(
        has("1", "BIOS", "/isolinux/isolinux.bin"),
        "{test}: no BIOS boot image (ISOLINUX) in {}:\n{r}",
        iso.display()
    );
    assert!(
        has("2", "UEFI", "/isolinux/efiboot.img"),
        "{test}: no UEFI boot image in {}:\n{r}",
        iso.display()
    );
}

/// A PATH directory with every program of /usr/bin but `missing`.
fn path_without(dir: &Path, missing: &str) -> String {
    fs::create_dir_all(dir).unwrap();
    for e in fs::read_dir("/usr/bin").unwrap() {
        let e = e.unwrap();
        if e.file_name() != missing {
            std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    format!("{}:/usr/sbin:/sbin", dir.display())
}

#[test]
fn ramdisk_iso_is_rootless_reproducible_and_has_both_boot_images() {
    let test = "ramdisk_iso_is_rootless_reproducible_and_has_both_boot_images";
    if !require(test, true, &["xorriso", "grub-mkimage"]) {
        return;
    }
    let Some(s) = stage(test) else { return };
    let t0 = Instant::now();
    for name in ["a", "b"] {
        let o = fast_build(&s, name, &[("SOURCE_DATE_EPOCH", EPOCH)]);
        assert!(o.status.success(), "{test}: build {name}\n{}", out_text(&o));
    }
    eprintln!("{test}: two builds in {:?}", t0.elapsed());
    let (a, b) = (s.out.join("a.iso"), s.out.join("b.iso"));
    assert_bios_and_uefi(test, &a);
    let (ab, bb) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert!(
        ab == bb,
        "{test}: two builds with SOURCE_DATE_EPOCH={EPOCH} differ"
    );
    eprintln!("{test}: a.iso == b.iso, {} bytes", ab.len());

    // Another epoch is another ISO: the dates do reach the bytes.
    let o = fast_build(&s, "c", &[("SOURCE_DATE_EPOCH", "1600000000")]);
    assert!(o.status.success(), "{test}: build c\n{}", out_text(&o));
    assert!(
        fs::read(s.out.join("c.iso")).unwrap() != ab,
        "{test}: SOURCE_DATE_EPOCH did not change the ISO"
    );

    // A ramdisk the elements' hooks made (as DIB's ramdisk-base does) is
    // the one on the ISO.
    let o = fast_build_of(&s, "e", &["ramdisk-made-by-elements", "iso"], &[]);
    assert!(o.status.success(), "{test}: build e\n{}", out_text(&o));
    let e = s.out.join("e.iso");
    assert_bios_and_uefi(test, &e);
    let got = s._dir.path().join("e-initrd");
    run_ok(
        Command::new(tool("xorriso"))
            .args(["-osirrox", "on", "-indev"])
            .arg(&e)
            .args(["-extract", "/initrd"])
            .arg(&got),
    );
    assert!(
        fs::read(&got).unwrap() == fs::read(s.out.join("e.initramfs")).unwrap(),
        "{test}: /initrd on e.iso is not the elements' e.initramfs"
    );

    // No xorriso: refused before the build, naming the package; no outputs.
    let path = path_without(&s._dir.path().join("bin-no-xorriso"), "xorriso");
    let o = fast_build(&s, "d", &[("PATH", &path)]);
    let text = out_text(&o);
    assert!(!o.status.success(), "{test}: built without xorriso\n{text}");
    assert!(
        text.contains("element iso") && text.contains("install the Debian package xorriso"),
        "{test}: the error does not name the element and package\n{text}"
    );
    assert!(
        !text.contains("root.d"),
        "{test}: the build ran before the missing tool was reported\n{text}"
    );
    for ext in ["iso", "kernel", "initramfs"] {
        assert!(
            !s.out.join(format!("d.{ext}")).exists(),
            "{test}: d.{ext} written by a failed build"
        );
    }
}

/// Starts `iso` from `-cdrom` (SeaBIOS, or OVMF when `uefi`), its serial
/// console logged to `out/{seabios,ovmf}.log`.
fn start(iso: &Path, out: &Path, uefi: bool) -> (Vm, PathBuf) {
    let what = if uefi { "ovmf" } else { "seabios" };
    let log = out.join(format!("{what}.log"));
    let vars = out.join("OVMF_VARS.fd");
    if uefi {
        fs::copy(OVMF_VARS, &vars).unwrap();
        run_ok(Command::new("chown").arg(common::build::USER).arg(&vars));
    }
    let mut c = vm::qemu(&log, 2048, uefi.then_some(vars.as_path()));
    c.arg("-cdrom").arg(iso);
    (vm::start(c), log)
}

/// Acceptance 4: the ramdisk ISO boots to the ramdisk's login under
/// SeaBIOS and under OVMF from `-cdrom`.
#[test]
fn debian_ramdisk_iso_boots_under_seabios_and_ovmf() {
    let test = "debian_ramdisk_iso_boots_under_seabios_and_ovmf";
    if !image_tests() {
        println!(
            "skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: a real Debian build and two TCG boots)"
        );
        return;
    }
    if !require(
        test,
        true,
        &[
            "mmdebstrap",
            "qemu-system-x86_64",
            "xorriso",
            "grub-mkimage",
        ],
    ) {
        return;
    }
    if !Path::new(OVMF_CODE).is_file() {
        skip(test, "no OVMF firmware (package ovmf)");
        return;
    }
    let Some(s) = stage(test) else { return };
    let cache = common::build::user_cache("image-cache")
        .display()
        .to_string();
    let lib = elements_dir().display().to_string();
    let t0 = Instant::now();
    let o = vm::as_user(
        &s.bin,
        &[
            ("DIBR_ELEMENTS_DIR", &lib),
            ("DIB_IMAGE_CACHE", &cache),
            (
                "DIB_DEPLOY_ISO_KERNEL_CMDLINE_ARGS",
                "console=ttyS0 panic=-1",
            ),
            ("SOURCE_DATE_EPOCH", EPOCH),
        ],
    )
    .args(["ramdisk", "-o", "deploy", "debian-minimal", "iso"])
    .current_dir(&s.out)
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: dibr ramdisk failed\n{text}");
    let iso = s.out.join("deploy.iso");
    let size = fs::metadata(&iso).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{test}: dibr ramdisk … iso: {:?}, deploy.iso {} MiB",
        t0.elapsed(),
        size >> 20
    );
    assert_bios_and_uefi(test, &iso);
    // Both at once (one vCPU each): the ramdisk is large and TCG slow.
    let t0 = Instant::now();
    let mut vms = [false, true].map(|uefi| (uefi, start(&iso, &s.out, uefi)));
    for (uefi, (v, log_path)) in vms.iter_mut() {
        let uefi = *uefi;
        let what = if uefi { "OVMF" } else { "SeaBIOS" };
        let log = vm::wait_for(
            v,
            log_path,
            " login:",
            &format!("{test}: {what}"),
            t0,
            BOOT_TIMEOUT,
        );
        let took = t0.elapsed();
        eprintln!("{test}: {what}: -cdrom → login prompt {took:?} after start (both VMs at once)");
        assert!(
            log.contains("boot_method=vmedia") && log.contains("console=ttyS0"),
            "{test}: {what}: the kernel did not get the ISO's command line"
        );
        assert!(
            log.contains("Run /init as init process"),
            "{test}: {what}: the kernel did not run the ramdisk's /init"
        );
        // ISOLINUX passes its initrd= to the kernel, GRUB does not.
        let cmdline = log
            .lines()
            .find(|l| l.contains("Command line:"))
            .unwrap_or_default();
        assert!(
            cmdline.contains("BOOT_IMAGE=/vmlinuz") && cmdline.contains("initrd=/initrd") != uefi,
            "{test}: {what}: not booted by the ISO's {}: {cmdline}",
            if uefi { "GRUB" } else { "ISOLINUX" }
        );
    }
}
