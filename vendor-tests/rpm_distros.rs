//! The rpm distributions (issue 5): `fedora`, `centos-minimal`, `rhel`,
//! `opensuse` built rootless, as the CI user, **from a fixture** — dibr's CI
//! reaches no mirror but Debian's, so no real Fedora/CentOS/RHEL/openSUSE
//! bits are used (each element's README says so).
//!
//! The fixture (cached in `DIBR_TEST_CACHE`) is a root filesystem made by
//! `mmdebstrap --mode=unshare` carrying Debian's real `dnf`, `zypper` and
//! `rpm`, and a local rpm-md repository (`createrepo_c`) of empty stand-in
//! packages named as the elements ask (kernel, systemd, cloud-init,
//! openssh-server, …, and openSUSE's kernel-default/udev/growpart). So what
//! is proven is dibr's part — fetching, checksum and digest checks, rootless
//! unpacking of each published format, owners kept, dnf/zypper running in
//! the sandbox with the right package names (pkg-map per family) — not
//! those distributions' userlands. It is served the way each distribution
//! publishes its base:
//!
//! - `fedora`: an OCI image archive (`*.oci.tar.xz`, two layers, one with
//!   a whiteout) on a local HTTP mirror with a directory listing, an older
//!   compose next to it, and a PGP-armoured BSD `CHECKSUM` file — the
//!   element's own defaults find and check it. A tampered checksum is
//!   refused, naming it, and leaves no image.
//! - `centos-minimal`: a `docker save` archive as `DIB_LOCAL_IMAGE`.
//! - `opensuse`: an LXC-style `.tar.xz` with its GNU `.sha256` on a
//!   `file://` mirror; zypper installs openSUSE's package names.
//! - `rhel`: refused without a base (naming `DIB_LOCAL_IMAGE`) and with a
//!   qcow2 (naming the conversion); built from a gzip tarball pinned by
//!   `DIB_LOCAL_IMAGE_SHA256`.
//!
//! Each build includes the elements' test elements (`elements/*/test-elements/*`
//! with `run-by: rpm_distros`), whose hooks check inside the image what
//! their element promises (DISTRO_NAME, DIB_INIT_SYSTEM, install-packages
//! being dnf's or zypper's, packages present or absent by `rpm -q` /
//! `zypper search -i`).
//!
//! Slow (a bootstrap once, then five builds): runs with
//! `DIBR_IMAGE_TESTS=1` (`.ci/run` sets it), else prints "skipped".

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::build::{build_cmd, read_tar, stage, Stage, TarEntry, USER};
use common::*;
use sha2::{Digest, Sha256};

/// Bump when the fixture's recipe changes (the cache is keyed by it).
const FIXTURE: &str = "rpm-fixture-v2";

/// Stand-in packages in the fixture's repository.
const STANDINS: &[&str] = &[
    "kernel",
    "systemd",
    "systemd-udev",
    "dracut",
    "dracut-config-generic",
    "NetworkManager",
    "kernel-default",
    "udev",
    "cloud-init",
    "openssh-server",
    "cloud-utils-growpart",
    "growpart",
    "curl",
    "rsync",
    "less",
    "sudo",
];

/// Shipped elements the builds use.
const ELEMENTS: &[&str] = &[
    "base",
    "cache-url",
    "centos",
    "centos-minimal",
    "cloud-init",
    "dib-init-system",
    "fedora",
    "fedora-minimal",
    "install-types",
    "openssh-server",
    "opensuse",
    "opensuse-minimal",
    "package-installs",
    "pkg-map",
    "redhat-common",
    "rhel",
    "rootfs-image",
    "rpm-distro",
    "sysprep",
    "yum",
    "zypper",
];

/// The shipped elements' test elements that say `run-by: rpm_distros`
/// (DIB's test-elements: each checks, inside the image, what its element
/// promises), copied next to the elements.
fn add_test_elements(s: &Stage) {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    for e in fs::read_dir(&lib).unwrap() {
        let te = e.unwrap().path().join("test-elements");
        let Ok(rd) = fs::read_dir(&te) else { continue };
        for t in rd {
            let t = t.unwrap().path();
            let by = fs::read_to_string(t.join("run-by")).unwrap_or_default();
            if by.trim() == "rpm_distros" {
                run_ok(Command::new("cp").arg("-a").arg(&t).arg(&s.elements));
            }
        }
    }
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&s.elements));
}

fn cache_dir() -> PathBuf {
    common::build::user_cache(FIXTURE)
}

/// The script run in the fixture's chroot: stand-in rpms, the repository,
/// its configuration for dnf and zypper, files the checks look for.
fn fixture_script() -> String {
    let mut s = String::from(
        "set -eu\nmkdir -p /root/rpmbuild/SPECS /srv/repo\n\
         for p in ",
    );
    s.push_str(&STANDINS.join(" "));
    s.push_str(
        r#"; do
cat > /root/rpmbuild/SPECS/$p.spec <<SPEC
Name: $p
Version: 1.0
Release: 1
Summary: dibr fixture stand-in for $p
License: MIT
BuildArch: noarch
%description
Stand-in: an empty package with the name dibr's elements install.
%install
mkdir -p %{buildroot}/usr/share/dibr-fixture
echo $p > %{buildroot}/usr/share/dibr-fixture/$p
%files
/usr/share/dibr-fixture/$p
SPEC
rpmbuild --quiet --define "_topdir /root/rpmbuild" -bb /root/rpmbuild/SPECS/$p.spec >/dev/null 2>&1 || rpmbuild --define "_topdir /root/rpmbuild" -bb /root/rpmbuild/SPECS/$p.spec
done
cp /root/rpmbuild/RPMS/noarch/*.rpm /srv/repo/
createrepo_c --quiet /srv/repo
rm -rf /root/rpmbuild
mkdir -p /etc/yum.repos.d /etc/zypp/repos.d
printf '[fixture]\nname=dibr fixture\nbaseurl=file:///srv/repo\ngpgcheck=0\nenabled=1\n' > /etc/yum.repos.d/fixture.repo
printf '[fixture]\nname=dibr fixture\nbaseurl=file:///srv/repo\ngpgcheck=0\nenabled=1\nautorefresh=1\ntype=rpm-md\n' > /etc/zypp/repos.d/fixture.repo
echo fixture > /etc/dibr-fixture
echo "whited out by layer 2" > /etc/dibr-fixture-remove-me
mkdir -p /var/lib/dibr-fixture-owned
echo owned > /var/lib/dibr-fixture-owned/file
chown -R 1234:1234 /var/lib/dibr-fixture-owned
"#,
    );
    s
}

/// The fixture root filesystem (plain tar), made rootless by the CI user.
fn fixture(test: &str) -> Option<PathBuf> {
    let dir = cache_dir();
    let tar = dir.join("rootfs.tar");
    let script = dir.join("make-fixture.sh");
    if !tar.is_file() {
        fs::write(&script, fixture_script()).unwrap();
    }
    common::build::mmdebstrap_tar(
        test,
        &tar,
        &[],
        &[
            "--variant=minbase".into(),
            "--include=dnf,zypper,rpm,createrepo-c".into(),
            "--dpkgopt=path-exclude=/usr/share/man/*".into(),
            "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
            "--dpkgopt=path-exclude=/usr/share/locale/*".into(),
            format!(
                "--customize-hook=upload {} /tmp/make-fixture.sh",
                script.display()
            ),
            "--customize-hook=chroot \"$1\" bash /tmp/make-fixture.sh".into(),
            "--customize-hook=rm -f \"$1/tmp/make-fixture.sh\"".into(),
        ],
    )
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// `xz -T2 -0` of `src` into `dst` (what the distributions publish).
fn xz(src: &Path, dst: &Path) {
    let out = fs::File::create(dst).unwrap();
    let st = Command::new("xz")
        .args(["-T2", "-0", "-c"])
        .arg(src)
        .stdout(out)
        .status()
        .unwrap();
    assert!(st.success(), "xz failed");
}

fn append(b: &mut tar::Builder<fs::File>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

/// Fedora's publication: an OCI image archive, xz-compressed, layer 1 the
/// fixture (zstd), layer 2 a whiteout and a new file (gzip).
fn fedora_archive(rootfs: &Path, dst: &Path) {
    let tmp = dst.with_extension("build");
    let l1 = zstd::encode_all(fs::File::open(rootfs).unwrap(), 3).unwrap();
    let l2 = {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, "etc/.wh.dibr-fixture-remove-me", &[][..])
            .unwrap();
        let data = b"layer 2\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, "etc/dibr-fixture-layer2", &data[..])
            .unwrap();
        let raw = t.into_inner().unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&raw).unwrap();
        e.finish().unwrap()
    };
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#.to_vec();
    let (d1, d2, dc) = (sha256_hex(&l1), sha256_hex(&l2), sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{dc}"), "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
             "digest": format!("sha256:{d1}"), "size": l1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": format!("sha256:{d2}"), "size": l2.len()},
        ],
    }))
    .unwrap();
    let dm = sha256_hex(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{dm}"), "size": manifest.len()}],
    }))
    .unwrap();
    let mut b = tar::Builder::new(fs::File::create(&tmp).unwrap());
    for (d, data) in [(&d1, &l1), (&d2, &l2), (&dc, &config), (&dm, &manifest)] {
        append(&mut b, &format!("blobs/sha256/{d}"), data);
    }
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    append(&mut b, "index.json", &index);
    b.finish().unwrap();
    drop(b);
    xz(&tmp, dst);
    fs::remove_file(&tmp).unwrap();
}

/// `docker save` (legacy layout): one uncompressed layer, diff_ids in the
/// config.
fn docker_archive(rootfs: &Path, dst: &Path) {
    let diff = sha256_file(rootfs);
    let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{diff}"]}}}}"#);
    let cname = format!("{}.json", sha256_hex(config.as_bytes()));
    let manifest = format!(
        r#"[{{"Config":"{cname}","RepoTags":["fixture/centos:stream9"],"Layers":["{diff}/layer.tar"]}}]"#
    );
    let mut b = tar::Builder::new(fs::File::create(dst).unwrap());
    append(&mut b, &cname, config.as_bytes());
    b.append_path_with_name(rootfs, format!("{diff}/layer.tar"))
        .unwrap();
    append(&mut b, "manifest.json", manifest.as_bytes());
    b.finish().unwrap();
}

/// Derived artifacts, cached next to the fixture.
struct Mirrors {
    fedora: PathBuf,
    opensuse: PathBuf,
    docker: PathBuf,
    targz: PathBuf,
}

const FEDORA_FILE: &str = "Fedora-Container-Base-Generic-43-1.6.x86_64.oci.tar.xz";
const SUSE_FILE: &str = "opensuse-leap-15.6-image.x86_64-lxc.tar.xz";

fn mirrors(rootfs: &Path) -> Mirrors {
    let dir = cache_dir();
    let m = Mirrors {
        fedora: dir.join("fedora"),
        opensuse: dir.join("opensuse"),
        docker: dir.join("centos-docker-save.tar"),
        targz: dir.join("rhel-rootfs.tar.gz"),
    };
    let t0 = Instant::now();
    if !m.fedora.join(FEDORA_FILE).is_file() {
        fs::create_dir_all(&m.fedora).unwrap();
        fedora_archive(rootfs, &m.fedora.join(FEDORA_FILE));
    }
    // The checksum file, PGP-armoured as Fedora's, and an older compose
    // (not a valid archive: picking it would fail).
    let sum = sha256_file(&m.fedora.join(FEDORA_FILE));
    fs::write(
        m.fedora.join("Fedora-Container-43-1.6-x86_64-CHECKSUM"),
        format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# {FEDORA_FILE}: 1 bytes\n\
             SHA256 ({FEDORA_FILE}) = {sum}\n-----BEGIN PGP SIGNATURE-----\n\nxxxx\n-----END PGP SIGNATURE-----\n"
        ),
    )
    .unwrap();
    fs::write(
        m.fedora
            .join("Fedora-Container-Base-Generic-43-1.2.x86_64.oci.tar.xz"),
        "an older compose\n",
    )
    .unwrap();
    if !m.opensuse.join(SUSE_FILE).is_file() {
        fs::create_dir_all(&m.opensuse).unwrap();
        let part = m.opensuse.join("part.xz");
        xz(rootfs, &part);
        fs::rename(&part, m.opensuse.join(SUSE_FILE)).unwrap();
    }
    let sum = sha256_file(&m.opensuse.join(SUSE_FILE));
    fs::write(
        m.opensuse.join(format!("{SUSE_FILE}.sha256")),
        format!("{sum}  {SUSE_FILE}\n"),
    )
    .unwrap();
    if !m.docker.is_file() {
        let part = m.docker.with_extension("part");
        docker_archive(rootfs, &part);
        fs::rename(&part, &m.docker).unwrap();
    }
    if !m.targz.is_file() {
        let part = m.targz.with_extension("part");
        let mut e = flate2::write::GzEncoder::new(
            fs::File::create(&part).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut fs::File::open(rootfs).unwrap(), &mut e).unwrap();
        e.finish().unwrap();
        fs::rename(&part, &m.targz).unwrap();
    }
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(cache_dir()));
    eprintln!("mirrors ready in {:?}", t0.elapsed());
    m
}

/// `python3 -m http.server` on a free local port, killed when dropped.
struct Http(Child, u16);

impl Http {
    fn serve(dir: &Path) -> Http {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Http(child, port);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("python3 -m http.server did not start");
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Build `elements` to `NAME.tar` as the CI user; the log and the tar.
fn build(
    s: &Stage,
    name: &str,
    elements: &[&str],
    env: &[(&str, &str)],
) -> (
    bool,
    String,
    Option<std::collections::BTreeMap<String, TarEntry>>,
) {
    let cache = s.out.join("image-cache");
    fs::create_dir_all(&cache).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&cache));
    let cache_s = cache.display().to_string();
    let mut all_env = vec![("DIB_IMAGE_CACHE", cache_s.as_str())];
    all_env.extend_from_slice(env);
    // -v: the root.d hooks' lines (checksums verified) are read from the
    // terminal.
    let mut args = vec!["-v", "-o", name, "-t", "tar"];
    args.extend_from_slice(elements);
    let t0 = Instant::now();
    let o = build_cmd(s, &args, &all_env).output().unwrap();
    let text = out_text(&o);
    eprintln!(
        "dibr build -o {name} {}: {:?} ({})",
        elements.join(" "),
        t0.elapsed(),
        if o.status.success() { "ok" } else { "failed" }
    );
    let tar = s.out.join(format!("{name}.tar"));
    let t = tar.is_file().then(|| read_tar(&tar));
    (o.status.success(), text, t)
}

fn check_installed(
    test: &str,
    tar: &std::collections::BTreeMap<String, TarEntry>,
    want: &[&str],
    not: &[&str],
) {
    for p in want {
        assert!(
            tar.contains_key(&format!("usr/share/dibr-fixture/{p}")),
            "{test}: package {p} was not installed by the image's package manager"
        );
    }
    for p in not {
        assert!(
            !tar.contains_key(&format!("usr/share/dibr-fixture/{p}")),
            "{test}: package {p} installed, but this family's pkg-map should have renamed it"
        );
    }
    assert!(
        tar.contains_key("etc/dibr-fixture"),
        "{test}: the base root filesystem was not unpacked"
    );
    let owned = tar
        .get("var/lib/dibr-fixture-owned/file")
        .unwrap_or_else(|| panic!("{test}: var/lib/dibr-fixture-owned/file missing"));
    assert_eq!(
        (owned.uid, owned.gid),
        (1234, 1234),
        "{test}: the base's owners were not kept"
    );
}

#[test]
fn rpm_distros_build_rootless_from_published_formats() {
    let test = "rpm_distros_build_rootless_from_published_formats";
    if !image_tests() {
        println!("skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: a bootstrap and four builds)");
        return;
    }
    if !require(test, true, &["mmdebstrap", "xz", "python3", "qemu-img"]) {
        return;
    }
    let Some(s) = stage(test) else { return };
    common::build::add_shipped(&s, ELEMENTS);
    add_test_elements(&s);
    let Some(rootfs) = fixture(test) else { return };
    let m = mirrors(&rootfs);

    // fedora: the element's defaults against a local HTTP mirror.
    let http = Http::serve(&m.fedora);
    let url = format!("http://127.0.0.1:{}", http.1);
    let (ok, text, tar) = build(
        &s,
        "fedora",
        &[
            "fedora-build-succeeds",
            "fedora-minimal-build-succeeds",
            "rootfs-image-build-succeeds",
            "yum-build-succeeds",
        ],
        &[("DIB_CLOUD_IMAGES", &url)],
    );
    assert!(ok, "{test}: fedora build failed\n{text}");
    let tar = tar.unwrap();
    check_installed(
        test,
        &tar,
        &[
            "kernel",
            "systemd",
            "systemd-udev",
            "dracut",
            "cloud-init",
            "openssh-server",
            "cloud-utils-growpart",
        ],
        &["kernel-default", "growpart"],
    );
    assert!(
        text.contains(&format!("{url}/{FEDORA_FILE}")),
        "{test}: the newest compose was not the one fetched\n{text}"
    );
    assert!(
        text.contains("verified"),
        "{test}: no checksum verification in the log\n{text}"
    );
    assert!(
        tar.contains_key("etc/dibr-fixture-layer2")
            && !tar.contains_key("etc/dibr-fixture-remove-me"),
        "{test}: OCI layer 2 (new file + whiteout) not applied"
    );
    assert!(
        !tar.keys().any(|k| k.contains(".wh.")),
        "{test}: whiteout markers in the image"
    );
    drop(http);

    // A tampered checksum: refused, named, nothing written, download gone.
    let bad = s.out.join("bad-mirror");
    fs::create_dir(&bad).unwrap();
    fs::hard_link(m.fedora.join(FEDORA_FILE), bad.join(FEDORA_FILE))
        .or_else(|_| fs::copy(m.fedora.join(FEDORA_FILE), bad.join(FEDORA_FILE)).map(|_| ()))
        .unwrap();
    fs::write(
        bad.join("Fedora-Container-43-1.6-x86_64-CHECKSUM"),
        format!("SHA256 ({FEDORA_FILE}) = {}\n", "0".repeat(64)),
    )
    .unwrap();
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&bad));
    let b = common::build::before();
    let bad_url = format!("file://{}", bad.display());
    let (ok, text, _) = build(
        &s,
        "tampered",
        &["fedora-minimal"],
        &[("DIB_CLOUD_IMAGES", &bad_url)],
    );
    assert!(!ok, "{test}: a build with a wrong checksum succeeded");
    assert!(
        text.contains("sha256 is") && text.contains(&"0".repeat(64)),
        "{test}: the checksum mismatch is not named\n{text}"
    );
    assert!(
        !s.out.join("tampered.tar").exists(),
        "{test}: image written despite the wrong checksum"
    );
    assert!(
        !s.out
            .join("image-cache/rootfs-image/fedora")
            .join(FEDORA_FILE)
            .exists()
            || text.contains("removed the download"),
        "{test}: the unverified download was kept"
    );
    common::build::assert_no_leftovers(test, &b);

    // centos-minimal: a docker save archive as DIB_LOCAL_IMAGE.
    let docker = m.docker.display().to_string();
    let (ok, text, tar) = build(
        &s,
        "centos-minimal",
        &[
            "centos-minimal-build-succeeds",
            "redhat-common-build-succeeds",
            "rpm-distro-build-succeeds",
        ],
        &[("DIB_LOCAL_IMAGE", &docker)],
    );
    assert!(ok, "{test}: centos-minimal build failed\n{text}");
    check_installed(
        test,
        &tar.unwrap(),
        &[
            "kernel",
            "systemd",
            "systemd-udev",
            "dracut",
            "NetworkManager",
        ],
        &["cloud-init", "kernel-default"],
    );
    assert!(
        text.contains("docker save archive"),
        "{test}: the docker archive was not read as one\n{text}"
    );
    // centos: the OCI archive as DIB_LOCAL_IMAGE.
    let oci = m.fedora.join(FEDORA_FILE).display().to_string();
    let (ok, text, tar) = build(
        &s,
        "centos",
        &["centos-build-succeeds"],
        &[("DIB_LOCAL_IMAGE", &oci)],
    );
    assert!(ok, "{test}: centos build failed\n{text}");
    check_installed(
        test,
        &tar.unwrap(),
        &[
            "kernel",
            "cloud-init",
            "openssh-server",
            "cloud-utils-growpart",
        ],
        &["growpart"],
    );

    // opensuse: tar.xz + .sha256 on a file:// mirror, zypper, suse names.
    let suse_url = format!("file://{}", m.opensuse.display());
    let (ok, text, tar) = build(
        &s,
        "opensuse",
        &[
            "opensuse-build-succeeds",
            "opensuse-minimal-build-succeeds",
            "zypper-build-succeeds",
        ],
        &[("DIB_CLOUD_IMAGES", &suse_url)],
    );
    assert!(ok, "{test}: opensuse build failed\n{text}");
    check_installed(
        test,
        &tar.unwrap(),
        &[
            "kernel-default",
            "udev",
            "growpart",
            "cloud-init",
            "openssh-server",
        ],
        &["kernel", "systemd-udev", "cloud-utils-growpart"],
    );
    assert!(
        text.contains(&format!("{SUSE_FILE}.sha256")) || text.contains("verified"),
        "{test}: opensuse download not verified\n{text}"
    );

    // rhel: no base → refused before anything is built, naming the fix.
    let (ok, text, _) = build(&s, "rhel-none", &["rhel"], &[]);
    assert!(
        !ok && text.contains("DIB_LOCAL_IMAGE"),
        "{test}: rhel without a base not refused clearly\n{text}"
    );
    // A qcow2 (what DIB takes) is refused with the conversion to use.
    let qcow = s.out.join("rhel.qcow2");
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&qcow)
            .arg("64M"),
    );
    run_ok(Command::new("chmod").arg("a+r").arg(&qcow));
    let qcow_s = qcow.display().to_string();
    let (ok, text, _) = build(&s, "rhel-qcow", &["rhel"], &[("DIB_LOCAL_IMAGE", &qcow_s)]);
    assert!(
        !ok && text.contains("qcow2") && text.contains("podman"),
        "{test}: a qcow2 DIB_LOCAL_IMAGE not refused clearly\n{text}"
    );
    // A gzip tarball pinned by its sha256: builds.
    let targz = m.targz.display().to_string();
    let sum = sha256_file(&m.targz);
    let (ok, text, tar) = build(
        &s,
        "rhel",
        &["rhel-build-succeeds"],
        &[
            ("DIB_LOCAL_IMAGE", &targz),
            ("DIB_LOCAL_IMAGE_SHA256", &sum),
        ],
    );
    assert!(ok, "{test}: rhel build failed\n{text}");
    check_installed(
        test,
        &tar.unwrap(),
        &["kernel", "cloud-init", "openssh-server"],
        &["kernel-default"],
    );
}
