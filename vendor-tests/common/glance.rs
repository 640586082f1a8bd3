//! Glance properties (issue 19; docs/glance.md): the side file
//! `NAME.<type>.glance.json`, `dibr check --glance`, and the osinfo-db
//! lookup that judges `os_distro`/`os_version` against libosinfo's own
//! database (Debian's `osinfo-db` package, which `.ci/run` installs)
//! rather than a list in the test. Shared by the fixture tests (`glance`)
//! and the real builds (`debian_image`, `releases`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::*;

/// Where the osinfo-db package puts its OS entries (`VENDOR/SHORTID.xml`).
pub const OSINFO: &str = "/usr/share/osinfo/os";

pub type Props = BTreeMap<String, Value>;

/// A properties JSON file, parsed.
pub fn props(path: &Path) -> Props {
    let t = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{path:?}: {e}\n{t}"))
}

/// The side file of a disk output.
pub fn side(img: &Path) -> PathBuf {
    PathBuf::from(format!("{}.glance.json", img.display()))
}

/// `dibr check --glance IMAGE`, parsed (it must succeed).
pub fn check_glance(img: &Path) -> Props {
    let o = run(Command::new(dibr_bin())
        .arg("check")
        .arg("--glance")
        .arg(img));
    assert!(
        o.status.success(),
        "check --glance {img:?}\n{}",
        out_text(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out_text(&o)))
}

/// `sha512sum FILE`'s hex digest (what Glance computes on upload).
pub fn sha512sum(p: &Path) -> String {
    let o = run_ok(Command::new("sha512sum").arg(p));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A property as text (numbers as their JSON text).
pub fn s(p: &Props, k: &str) -> Option<String> {
    p.get(k).map(|v| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    })
}

/// The osinfo-db entry whose short-id is os_distro + os_version must
/// have that `<distro>` and `<version>`.
pub fn in_osinfo(test: &str, p: &Props) {
    if !Path::new(OSINFO).is_dir() {
        skip(
            test,
            "osinfo-db is not installed (apt-get install osinfo-db)",
        );
        return;
    }
    let (d, v) = (
        s(p, "os_distro").unwrap_or_else(|| panic!("{test}: no os_distro\n{p:#?}")),
        s(p, "os_version").unwrap_or_default(),
    );
    let short = format!("<short-id>{d}{v}</short-id>");
    let mut found = None;
    for vendor in fs::read_dir(OSINFO).unwrap() {
        for f in fs::read_dir(vendor.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let t = fs::read_to_string(&path).unwrap_or_default();
            if t.contains(&short) {
                found = Some((path, t));
            }
        }
    }
    let (path, t) = found.unwrap_or_else(|| panic!("{test}: no osinfo-db entry {short}"));
    assert!(
        t.contains(&format!("<distro>{d}</distro>")),
        "{test}: {path:?}: distro is not {d}"
    );
    assert!(
        t.contains(&format!("<version>{v}</version>")),
        "{test}: {path:?}: version is not {v}"
    );
}

/// Each `want` key has that value; each `absent` key is left out.
pub fn expect(test: &str, p: &Props, want: &[(&str, &str)], absent: &[&str]) {
    for (k, v) in want {
        assert_eq!(s(p, k).as_deref(), Some(*v), "{test}: {k}\n{p:#?}");
    }
    for k in absent {
        assert!(!p.contains_key(*k), "{test}: {k} should be absent\n{p:#?}");
    }
}

/// `qemu-img info`'s virtual size of a disk image.
pub fn virtual_size(img: &Path) -> u64 {
    let o = run_ok(
        Command::new(tool("qemu-img"))
            .args(["info", "--output=json"])
            .arg(img),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

/// The `os-release` value of `key` (quotes removed), if set.
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// A real build's qcow2 (issue 19, acceptance 1): its side file holds what
/// docs/glance.md says of an x86_64 Debian-family cloud image with both
/// boot paths — `hw_firmware_type` left out (a hybrid: BIOS boot code in
/// the MBR and `\EFI\BOOT\BOOTX64.EFI`), virtio disk and NIC, `min_disk`
/// from the virtual size, the hash `sha512sum`'s — with `os_distro` and
/// `os_version` the image's own os-release `ID`/`VERSION_ID` found in the
/// osinfo-db package; `dibr check --glance` on the same file prints the
/// same minus the `dibr_*` provenance. Returns the properties.
pub fn assert_real_qcow2(test: &str, disk: &Path, os_release: &str, elements: &[&str]) -> Props {
    assert_real_qcow2_for(test, "x86_64", disk, os_release, elements)
}

/// [`assert_real_qcow2`] for an image of `arch` (Glance's `architecture`):
/// x86_64 images from `block-device-efi` boot BIOS and UEFI (no firmware
/// type, docs/glance.md); aarch64 ones are UEFI-only on QEMU's `virt`.
pub fn assert_real_qcow2_for(
    test: &str,
    arch: &str,
    disk: &Path,
    os_release: &str,
    elements: &[&str],
) -> Props {
    let p = props(&side(disk));
    let id = os_release_value(os_release, "ID").expect("os-release ID");
    let version = os_release_value(os_release, "VERSION_ID").expect("os-release VERSION_ID");
    let (platform, absent): (&[(&str, &str)], &[&str]) = match arch {
        "aarch64" => (
            &[("hw_firmware_type", "uefi"), ("hw_machine_type", "virt")],
            &[],
        ),
        _ => (&[], &["hw_firmware_type", "hw_machine_type"]),
    };
    expect(test, &p, platform, &[]);
    expect(
        test,
        &p,
        &[
            ("architecture", arch),
            ("os_distro", &id),
            ("os_version", &version),
            ("hw_disk_bus", "virtio"),
            ("hw_vif_model", "virtio"),
            ("disk_format", "qcow2"),
            ("container_format", "bare"),
            ("os_hash_algo", "sha512"),
            ("dibr_version", env!("CARGO_PKG_VERSION")),
        ],
        absent,
    );
    in_osinfo(test, &p);
    let built = s(&p, "dibr_elements").unwrap_or_default();
    for e in elements {
        assert!(
            built.split(' ').any(|b| b == *e),
            "{test}: dibr_elements {built:?} lacks {e}"
        );
    }
    assert_eq!(
        p.get("min_disk").and_then(Value::as_u64),
        Some(virtual_size(disk).div_ceil(1 << 30)),
        "{test}: min_disk\n{p:#?}"
    );
    let ram = p.get("min_ram").and_then(Value::as_u64).unwrap_or(0);
    assert!(
        ram >= 512 && ram.is_multiple_of(256),
        "{test}: min_ram {ram}\n{p:#?}"
    );
    assert_eq!(
        s(&p, "os_hash_value"),
        Some(sha512sum(disk)),
        "{test}: os_hash_value is not the file's sha512"
    );
    let mut without = p.clone();
    without.retain(|k, _| !k.starts_with("dibr_"));
    assert_eq!(
        check_glance(disk),
        without,
        "{test}: check --glance differs from the side file"
    );
    println!("{test}: {}: {p:?}", side(disk).display());
    p
}
