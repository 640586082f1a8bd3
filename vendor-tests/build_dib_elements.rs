//! diskimage-builder's own elements, unchanged, built rootless by
//! `dibr build` (issue 3, acceptance 3).
//!
//! `pip install diskimage-builder` into a venv (from Debian's python3, so
//! the CI user can run it), a Debian bookworm root tarball from
//! `mmdebstrap --variant=apt --include=python3,python3-yaml` (both cached in
//! `DIBR_TEST_CACHE`, default /var/tmp/dibr-test-cache), then, as the
//! unprivileged CI user, with `ELEMENTS_PATH=<our test elements>:<DIB's
//! elements>`:
//! `dibr build -n -t tar dibr-test-debian dibr-test-dib install-static
//!  element-manifest manifests pkg-map package-installs dib-init-system
//!  install-types`.
//! `dibr-test-debian` unpacks the tarball and depends on DIB's `dpkg`
//! element; `dibr-test-dib` has a static file and `hello` in its
//! package-installs.yaml (installed with apt inside the chroot).

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::build::*;
use common::*;

/// A cached Debian root tarball with python3 (DIB's package-installs and
/// pkg-map are Python).
fn debian_rootfs(test: &str) -> Option<PathBuf> {
    let tar = test_cache().join("bookworm-apt-python3.tar");
    if !tar.is_file() {
        if !require(test, true, &["mmdebstrap"]) {
            return None;
        }
        let part = test_cache().join("bookworm-apt-python3.part.tar");
        let o = Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--format=tar",
                "--variant=apt",
                "--include=python3,python3-yaml",
                "bookworm",
            ])
            .arg(&part)
            .output()
            .unwrap();
        if !o.status.success() {
            assert!(!is_ci(), "{test}: mmdebstrap failed\n{}", out_text(&o));
            skip(test, "mmdebstrap failed (no Debian mirror?)");
            return None;
        }
        fs::rename(&part, &tar).unwrap();
    }
    run_ok(Command::new("chmod").arg("a+r").arg(&tar));
    Some(tar)
}

#[test]
fn upstream_dib_elements_build_rootless() {
    let test = "upstream_dib_elements_build_rootless";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let Some((py, dib_elements)) = dib_venv(test) else {
        return;
    };
    let Some(rootfs) = debian_rootfs(test) else {
        return;
    };
    let b = before();
    let elements_path = format!("{}:{}", s.elements.display(), dib_elements.display());
    let py = py.display().to_string();
    let rootfs = rootfs.display().to_string();
    let o = build_cmd(
        &s,
        &[
            // -v: dib-run-parts' lines are read from the terminal.
            "-v",
            "-n",
            "-t",
            "tar",
            "-o",
            "deb",
            "dibr-test-debian",
            "dibr-test-dib",
            "install-static",
            "element-manifest",
            "manifests",
            "pkg-map",
            "package-installs",
            "dib-init-system",
            "install-types",
        ],
        &[
            ("ELEMENTS_PATH", &elements_path),
            ("DIB_PYTHON_EXEC", &py),
            ("DIB_DIBR_TEST_ROOTFS", &rootfs),
        ],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    let m = read_tar(&s.out.join("deb.tar"));
    for (path, what) in [
        (
            "etc/dibr-static-marker",
            "install-static did not copy static/",
        ),
        (
            "etc/dib-manifests/dib-element-manifest",
            "element-manifest wrote no manifest",
        ),
        (
            "etc/dib-manifests/dib-manifest-dpkg-deb",
            "dpkg's finalise.d manifest missing",
        ),
        ("usr/bin/hello", "package-installs did not install hello"),
        (
            "usr/share/pkg-map/install-static",
            "pkg-map did not copy the maps",
        ),
        (
            "usr/local/bin/install-packages",
            "install-bin did not install dpkg's install-packages",
        ),
    ] {
        assert!(
            m.contains_key(path),
            "{test}: {what} ({path} not in the tar)\n{}",
            head(&text, 60)
        );
    }
    let manifest = s.out.join("deb.d/dib-manifests");
    assert!(
        manifest.is_dir(),
        "{test}: manifests did not save {}",
        manifest.display()
    );
    // Hooks that print the element list must have seen every element.
    assert!(
        text.contains("dib-run-parts Running"),
        "{test}: no hook ran\n{text}"
    );
    assert_no_leftovers(test, &b);
}
