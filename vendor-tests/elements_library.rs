//! dibr's element library (`elements/`), each element checked the cheap way
//! in the default suite, as the CI user:
//!
//! - every element has a README.md, resolves with `dibr elements`, and every
//!   hook and bin script parses (`bash -n`);
//! - a rootless `dibr build` of the host-binary test OS with
//!   `install-static`, `manifests`, `element-manifest` and `dib-init-system`
//!   puts the static file, the manifests (copied to NAME.d/) and the
//!   element list where DIB does;
//! - `no-final-image` runs every phase and writes nothing.
//!
//! Each element's own test elements (DIB's `test-elements` idea) are built
//! by `element_tests`; the Debian elements also by a real build in
//! `debian_image` (DIBR_IMAGE_TESTS=1) and by `boot`; the package-installs
//! tables by the unit tests of `src/elements/tables.rs`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::build::*;
use common::*;

fn library() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("elements")
}

#[test]
fn every_element_has_a_readme_resolves_and_parses() {
    let lib = library();
    let mut n = 0;
    for e in fs::read_dir(&lib).unwrap() {
        let e = e.unwrap();
        if !e.file_type().unwrap().is_dir() {
            continue;
        }
        n += 1;
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            e.path().join("README.md").is_file(),
            "element {name} has no README.md"
        );
        for sub in fs::read_dir(e.path()).unwrap() {
            let sub = sub.unwrap().path();
            let is_hooks = sub.is_dir()
                && sub
                    .file_name()
                    .map(|f| f.to_string_lossy().ends_with(".d") || f == "bin")
                    .unwrap_or(false);
            if !is_hooks {
                continue;
            }
            for f in fs::read_dir(&sub).unwrap() {
                let f = f.unwrap().path();
                if !f.is_file() {
                    continue;
                }
                let head = fs::read(&f).unwrap();
                let shell = head.starts_with(b"#!/bin/bash")
                    || head.starts_with(b"#!/bin/sh")
                    || f.parent()
                        .map(|p| p.ends_with("environment.d"))
                        .unwrap_or(false);
                if shell {
                    let o = run(Command::new("bash").arg("-n").arg(&f));
                    assert!(o.status.success(), "{}: {}", f.display(), out_text(&o));
                }
            }
        }
        // Resolves (with the test OS for operating-system; a base-less build).
        let o = run(Command::new(dibr_bin())
            .args(["elements", "-n"])
            .arg(&name)
            .arg("dibr-test-os")
            .env(
                "ELEMENTS_PATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-tests/elements"),
            )
            .env("DIBR_ELEMENTS_DIR", &lib));
        let text = out_text(&o);
        // The distro elements provide operating-system themselves: two
        // providers with the test OS.
        if ![
            "debian",
            "debian-minimal",
            "ubuntu",
            "ubuntu-minimal",
            "fedora",
            "fedora-minimal",
            "centos",
            "centos-minimal",
            "rhel",
            "opensuse",
            "opensuse-minimal",
        ]
        .contains(&name.as_str())
        {
            assert!(
                o.status.success(),
                "element {name} does not resolve\n{text}"
            );
        }
    }
    assert!(n >= 25, "only {n} elements in {}", lib.display());
}

#[test]
fn static_manifests_and_no_final_image_build_rootless() {
    let test = "static_manifests_and_no_final_image_build_rootless";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    add_shipped(
        &s,
        &[
            "install-static",
            "manifests",
            "element-manifest",
            "dib-init-system",
            "no-final-image",
        ],
    );
    let o = build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "tar",
            "-o",
            "lib",
            "dibr-test-os",
            "dibr-test-static",
            "element-manifest",
            "dib-init-system",
        ],
        &[],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    let tar = read_tar(&s.out.join("lib.tar"));
    let marker = tar.get("etc/dibr-static-marker");
    assert!(
        marker.is_some(),
        "{test}: install-static did not copy static/etc/dibr-static-marker"
    );
    let m = marker.unwrap();
    assert_eq!(
        (m.uid, m.gid),
        (0, 0),
        "{test}: static file not owned by root"
    );
    for f in [
        "etc/dib-manifests/dib-element-manifest",
        "etc/dib-manifests/dib_environment",
    ] {
        assert!(tar.contains_key(f), "{test}: {f} missing from the image");
    }
    let listed = fs::read_to_string(s.out.join("lib.d/dib-manifests/dib-element-manifest"))
        .unwrap_or_else(|e| {
            panic!("{test}: NAME.d/dib-manifests/dib-element-manifest: {e}\n{text}")
        });
    for e in [
        "dibr-test-os",
        "dibr-test-static",
        "install-static",
        "manifests",
    ] {
        assert!(
            listed.lines().any(|l| l == e),
            "{test}: {e} not in the element manifest: {listed}"
        );
    }

    // no-final-image: every phase, no output.
    let b = before();
    let o = build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "tar",
            "-o",
            "none",
            "dibr-test-os",
            "no-final-image",
        ],
        &[],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(
        o.status.success(),
        "{test}: no-final-image build failed\n{text}"
    );
    assert!(
        text.contains("no-final-image"),
        "{test}: no note about no-final-image\n{text}"
    );
    assert!(
        !s.out.join("none.tar").exists(),
        "{test}: no-final-image wrote an image"
    );
    assert_no_leftovers(test, &b);
}
