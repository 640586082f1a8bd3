//! `ubuntu-minimal` and `ubuntu` (issue 5), built rootless as the CI user
//! **against Debian's archive as a stand-in**: Ubuntu's archive is not
//! reachable from dibr's CI, but the mechanism — `DIB_APT_SOURCES_CONF`
//! assembled from `DIB_DISTRIBUTION_MIRROR`, `DIB_RELEASE`,
//! `DIB_UBUNTU_MIRROR_DISTS` and the components, mmdebstrap with
//! `DIB_APT_KEYRING`, dpkg's install-packages, the cloud package set — is
//! the elements' own. Each build includes the elements' test elements
//! (`run-by: ubuntu_elements`), which check inside the image.
//!
//! Stand-in settings: `DIB_RELEASE=bookworm`, Debian's mirror and keyring,
//! `DIB_UBUNTU_MIRROR_DISTS=updates`, `DIB_DEBIAN_COMPONENTS=main`,
//! `DIB_UBUNTU_KERNEL=none` (Ubuntu's kernel metapackages do not exist in
//! Debian). Slow: runs with `DIBR_IMAGE_TESTS=1`, else prints "skipped".

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::build::{add_shipped, build_cmd, stage, Stage, USER};
use common::*;

fn add_test_elements(s: &Stage) {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    for el in ["ubuntu", "ubuntu-minimal"] {
        let t = lib
            .join(el)
            .join("test-elements")
            .join(format!("{el}-build-succeeds"));
        run_ok(Command::new("cp").arg("-a").arg(&t).arg(&s.elements));
    }
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&s.elements));
}

fn image_cache() -> PathBuf {
    let cache = PathBuf::from(
        std::env::var("DIBR_TEST_CACHE").unwrap_or_else(|_| "/var/tmp/dibr-test-cache".into()),
    )
    .join("image-cache");
    fs::create_dir_all(&cache).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&cache));
    cache
}

#[test]
fn ubuntu_elements_build_against_a_stand_in_archive() {
    let test = "ubuntu_elements_build_against_a_stand_in_archive";
    if std::env::var("DIBR_IMAGE_TESTS").as_deref() != Ok("1") {
        println!("skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: a bootstrap and a build)");
        return;
    }
    if !require(test, true, &["mmdebstrap"]) {
        return;
    }
    let Some(s) = stage(test) else { return };
    add_shipped(
        &s,
        &[
            "ubuntu",
            "ubuntu-minimal",
            "debootstrap",
            "dpkg",
            "pkg-map",
            "package-installs",
            "base",
            "dib-init-system",
            "install-types",
            "openssh-server",
            "sysprep",
            "cloud-init",
        ],
    );
    add_test_elements(&s);
    let cache = image_cache().display().to_string();
    let t0 = Instant::now();
    let o = build_cmd(
        &s,
        &[
            "-o",
            "ubuntu",
            "-t",
            "tar",
            "ubuntu-build-succeeds",
            "ubuntu-minimal-build-succeeds",
        ],
        &[
            ("DIB_IMAGE_CACHE", cache.as_str()),
            ("DIB_RELEASE", "bookworm"),
            ("DIB_DISTRIBUTION_MIRROR", "http://deb.debian.org/debian"),
            ("DIB_UBUNTU_MIRROR_DISTS", "updates"),
            ("DIB_DEBIAN_COMPONENTS", "main"),
            (
                "DIB_APT_KEYRING",
                "/usr/share/keyrings/debian-archive-keyring.gpg",
            ),
            ("DIB_UBUNTU_KERNEL", "none"),
        ],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    eprintln!("{test}: build {:?}", t0.elapsed());
    assert!(o.status.success(), "{test}: ubuntu build failed\n{text}");
    assert!(
        text.contains("mmdebstrap ubuntu bookworm") || text.contains("debootstrap: using cached"),
        "{test}: not bootstrapped as ubuntu\n{text}"
    );
    let tar = common::build::read_tar(&s.out.join("ubuntu.tar"));
    assert!(
        tar.contains_key("usr/bin/cloud-init"),
        "{test}: cloud-init missing from the image"
    );
}
