//! Unpacking checked against what the archive says, with archives built by
//! the `tar` crate (an independent writer).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;

/// A tar archive built entry by entry.
struct T(tar::Builder<Vec<u8>>);

impl T {
    fn new() -> Self {
        T(tar::Builder::new(Vec::new()))
    }
    fn head(kind: tar::EntryType, mode: u32, uid: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        h
    }
    fn dir(mut self, p: &str) -> Self {
        let mut h = Self::head(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, p, &[][..]).unwrap();
        self
    }
    fn file(self, p: &str, data: &str) -> Self {
        self.file_owned(p, data, 0o644, 0)
    }
    fn file_owned(mut self, p: &str, data: &str, mode: u32, uid: u64) -> Self {
        let mut h = Self::head(tar::EntryType::Regular, mode, uid);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, p, data.as_bytes()).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, p: &str, target: &str) -> Self {
        let mut h = Self::head(kind, 0o777, 0);
        self.0.append_link(&mut h, p, target).unwrap();
        self
    }
    fn symlink(self, p: &str, target: &str) -> Self {
        self.link(tar::EntryType::Symlink, p, target)
    }
    fn hardlink(self, p: &str, target: &str) -> Self {
        self.link(tar::EntryType::Link, p, target)
    }
    fn special(mut self, kind: tar::EntryType, p: &str) -> Self {
        let mut h = Self::head(kind, 0o644, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.0.append_data(&mut h, p, &[][..]).unwrap();
        self
    }
    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn opts(scratch: &Path) -> Options {
    Options {
        owners: rustix::process::geteuid().is_root(),
        arch: "amd64".into(),
        scratch: scratch.to_path_buf(),
    }
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn gz(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn run(archive: &[u8]) -> (tempfile::TempDir, Result<Report, UnpackError>) {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("in.tar");
    fs::write(&src, archive).unwrap();
    let dest = t.path().join("root");
    fs::create_dir(&dest).unwrap();
    let r = unpack(&src, &dest, &opts(t.path()));
    (t, r)
}

fn read(t: &tempfile::TempDir, p: &str) -> Option<String> {
    fs::read_to_string(t.path().join("root").join(p)).ok()
}

#[test]
fn tarball_kinds_and_replacement() {
    let a = T::new()
        .dir("./")
        .dir("./etc/")
        .file("./etc/hostname", "old")
        .file("./etc/hostname", "new")
        .file_owned("./usr/bin/su", "su", 0o4755, 0)
        .symlink("./bin", "usr/bin")
        .hardlink("./usr/bin/su2", "./usr/bin/su")
        .special(tar::EntryType::Char, "./dev/null")
        .special(tar::EntryType::Fifo, "./run/initctl")
        .file("./etc/.wh.hostname", "just a file here")
        .done();
    let (t, r) = run(&a);
    let r = r.unwrap();
    assert_eq!(r.format, "tarball");
    let root = t.path().join("root");
    assert_eq!(read(&t, "etc/hostname").as_deref(), Some("new"));
    // A plain tarball has no whiteouts: the name is an ordinary file.
    assert_eq!(
        read(&t, "etc/.wh.hostname").as_deref(),
        Some("just a file here")
    );
    assert_eq!(
        fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    let su = fs::metadata(root.join("usr/bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(su.mtime(), 1_600_000_000);
    assert_eq!(
        su.ino(),
        fs::metadata(root.join("usr/bin/su2")).unwrap().ino(),
        "hard link not linked"
    );
    assert!(fs::symlink_metadata(root.join("run/initctl"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(!root.join("dev/null").exists(), "device node made");
    assert_eq!(r.skipped, vec!["dev/null".to_string()]);
}

#[test]
fn symlinks_cannot_lead_out_of_the_tree() {
    let t0 = tempfile::tempdir().unwrap();
    let outside = t0.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let a = T::new()
        .symlink("slash", "/")
        .file("slash/pwned", "x")
        .symlink("up", "../../../../..")
        .file("up/pwned2", "y")
        .done();
    let (t, r) = run(&a);
    r.unwrap();
    // Resolved as in a chroot of the tree.
    let root = t.path().join("root");
    assert_eq!(read(&t, "pwned").as_deref(), Some("x"));
    assert!(root.join("pwned2").is_file());
    // A symlink to a host directory that the tree does not have: the entry
    // fails, nothing is written on the host.
    let a = T::new()
        .symlink("abs", outside.to_str().unwrap())
        .file("abs/pwned", "x")
        .done();
    let (_t, r) = run(&a);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("abs/pwned"), "{e}");
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "a file was written outside the tree"
    );
}

#[test]
fn owners_as_stored() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("owners_as_stored: needs root (or a namespace); skipped");
        return;
    }
    let a = T::new()
        .file_owned("var/lib/x", "x", 0o2750, 1234)
        .symlink("var/lib/l", "x")
        .done();
    let (t, r) = run(&a);
    r.unwrap();
    let m = fs::metadata(t.path().join("root/var/lib/x")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 1234));
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o2750,
        "setgid lost to chown"
    );
}

/// An OCI image layout archive with the given layers (already encoded).
fn oci(layers: &[(Vec<u8>, &str)], arch_index: bool) -> Vec<u8> {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ldesc = Vec::new();
    for (data, mt) in layers {
        let d = sha(data);
        ldesc.push(serde_json::json!({"mediaType": mt, "digest": format!("sha256:{d}"), "size": data.len()}));
        blobs.push((d, data.clone()));
    }
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let cd = sha(&config);
    blobs.push((cd.clone(), config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{cd}"), "size": 2},
        "layers": ldesc,
    }))
    .unwrap();
    let md = sha(&manifest);
    blobs.push((md.clone(), manifest));
    let mut entries = vec![serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{md}"),
        "platform": {"architecture": "amd64", "os": "linux"}
    })];
    if arch_index {
        // A second platform whose manifest is missing: must not be chosen.
        entries.insert(
            0,
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", "0".repeat(64)),
                "platform": {"architecture": "arm64", "os": "linux"}
            }),
        );
    }
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": entries})).unwrap();
    let mut t = T::new().dir("blobs/").dir("blobs/sha256/");
    for (d, data) in &blobs {
        let mut h = T::head(tar::EntryType::Regular, 0o644, 0);
        h.set_size(data.len() as u64);
        t.0.append_data(&mut h, format!("blobs/sha256/{d}"), &data[..])
            .unwrap();
    }
    t.file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", std::str::from_utf8(&index).unwrap())
        .done()
}

fn two_layers() -> (Vec<u8>, Vec<u8>) {
    let l1 = T::new()
        .dir("a/")
        .file("a/b", "b")
        .file("a/c", "c")
        .dir("d/")
        .file("d/e", "e")
        .file("x", "x1")
        .done();
    let l2 = T::new()
        .file("d/f", "f")
        .file("a/.wh.b", "")
        .file("d/.wh..wh..opq", "")
        .file("x", "x2")
        .done();
    (l1, l2)
}

#[test]
fn oci_layers_in_order_with_whiteouts() {
    let (l1, l2) = two_layers();
    let a = oci(
        &[
            (l1, "application/vnd.oci.image.layer.v1.tar"),
            (gz(&l2), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ],
        true,
    );
    let (t, r) = run(&gz(&a));
    let r = r.unwrap();
    assert_eq!((r.format, r.layers, r.whiteouts), ("OCI image", 2, 2));
    assert_eq!(read(&t, "a/b"), None, "whiteout did not remove a/b");
    assert_eq!(read(&t, "a/c").as_deref(), Some("c"));
    assert_eq!(read(&t, "d/e"), None, "opaque whiteout kept d/e");
    assert_eq!(
        read(&t, "d/f").as_deref(),
        Some("f"),
        "opaque whiteout removed its own layer's file"
    );
    assert_eq!(read(&t, "x").as_deref(), Some("x2"));
    assert!(!t.path().join("root/a/.wh.b").exists());
    assert!(!t.path().join("root/blobs").exists());
    // Scratch removed.
    let left: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".dibr-unpack"))
        .collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

#[test]
fn oci_damaged_layer_is_refused_by_digest() {
    let (l1, _) = two_layers();
    let mut a = oci(
        &[(l1.clone(), "application/vnd.oci.image.layer.v1.tar")],
        false,
    );
    // Flip one byte of the layer's data inside the archive.
    let pos = a
        .windows(2)
        .position(|w| w == b"x1")
        .expect("layer data in archive");
    a[pos + 1] = b'9';
    let (_t, r) = run(&a);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("has sha256") && e.contains(&sha(&l1)), "{e}");
}

#[test]
fn oci_missing_platform_is_named() {
    let (l1, _) = two_layers();
    let a = oci(&[(l1, "application/vnd.oci.image.layer.v1.tar")], true);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("in.tar");
    fs::write(&src, a).unwrap();
    fs::create_dir(t.path().join("root")).unwrap();
    let mut o = opts(t.path());
    o.arch = "s390x".into();
    let e = unpack(&src, &t.path().join("root"), &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("s390x") && e.contains("arm64, amd64"), "{e}");
}

#[test]
fn docker_save_legacy_layout() {
    let (l1, l2) = two_layers();
    let (d1, d2) = (sha(&l1), sha(&l2));
    let config =
        format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{d1}","sha256:{d2}"]}}}}"#);
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["x:1"],"Layers":["{d1}/layer.tar","l2/layer.tar"]}}]"#,
        "c".repeat(64)
    );
    let mut t = T::new().file("manifest.json", &manifest);
    for (p, data) in [
        (format!("{d1}/layer.tar"), &l1),
        (format!("{d2}/layer.tar"), &l2),
    ] {
        let mut h = T::head(tar::EntryType::Regular, 0o644, 0);
        h.set_size(data.len() as u64);
        t.0.append_data(&mut h, p, &data[..]).unwrap();
    }
    let a = t
        .symlink("l2/layer.tar", &format!("../{d2}/layer.tar"))
        .file(&format!("{}.json", "c".repeat(64)), &config)
        .done();
    let (t, r) = run(&a);
    let r = r.unwrap();
    assert_eq!((r.format, r.layers), ("docker save archive", 2));
    assert_eq!(read(&t, "a/b"), None);
    assert_eq!(read(&t, "d/f").as_deref(), Some("f"));
    assert_eq!(read(&t, "x").as_deref(), Some("x2"));
}

#[test]
fn not_a_tarball_is_named() {
    let (_t, r) = run(b"this is not a tar archive at all, just some text that is long enough to fill a block maybe not");
    let e = r.unwrap_err().to_string();
    assert!(e.contains("in.tar"), "{e}");
}
