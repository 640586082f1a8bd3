//! `dibr::capture`: a tree captured as pax tar, judged three ways: read back
//! with dibr's own tar reader field by field, extracted with GNU tar and
//! compared by manifest, and turned into an ext4 image by the real
//! `dibr mkfs` that `e2fsck -fn` must accept. Plus reproducibility in every
//! output type, the synthesized /dev and excludes.

mod common;
use common::*;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dibr::capture::{write_output, write_tar, CaptureOptions, CaptureStats, OutputType};
use dibr::tarstream::{open_input, TarReader};
use dibr::tree::{Entry, EntryKind, FileData};
use sha2::{Digest, Sha256};

const TOOLS: &[&str] = &[
    "tar", "mknod", "mkfifo", "setcap", "setfacl", "getfacl", "setfattr", "getfattr", "e2fsck",
    "touch", "chown",
];
const SPARSE: &str = "sparse/1g-one-block";
const SOCKET: &str = "misc/sock";

struct Fixture {
    tree: PathBuf,
    tar: PathBuf,
    stats: CaptureStats,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The torture tree and its capture, once per test process.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capture");
        if base.exists() {
            fs::remove_dir_all(&base).unwrap();
        }
        let tree = base.join("tree");
        build_tree(&tree);
        let tar = base.join("capture.tar");
        let stats = write_tar(
            &tree,
            fs::File::create(&tar).unwrap(),
            &CaptureOptions::default(),
        )
        .unwrap();
        Fixture { tree, tar, stats }
    })
}

fn build_tree(t: &Path) {
    fs::create_dir_all(t).unwrap();
    for (i, n) in [0usize, 1, 511, 512, 513, 4096, 70_000, (1 << 20) + 3]
        .into_iter()
        .enumerate()
    {
        write_file(&t.join(format!("sizes/f{n}")), &prng_bytes(i as u64 + 1, n));
    }
    {
        use std::io::{Seek, SeekFrom, Write};
        fs::create_dir_all(t.join("sparse")).unwrap();
        let mut f = fs::File::create(t.join(SPARSE)).unwrap();
        f.set_len(1 << 30).unwrap();
        f.seek(SeekFrom::Start(512 << 20)).unwrap();
        f.write_all(&prng_bytes(9, 4096)).unwrap();
    }
    write_file(&t.join("links/a"), b"three names, one inode\n");
    write_file(&t.join("modes/setuid"), &prng_bytes(3, 100));
    write_file(&t.join("owned/0-42"), b"root:42\n");
    write_file(&t.join("owned/bigid"), b"ids beyond 7 octal digits\n");
    write_file(&t.join("caps/pinger"), &prng_bytes(5, 9000));
    write_file(&t.join("xattr/file"), b"xattrs\n");
    write_file(&t.join("acl/file"), b"acl\n");
    fs::create_dir_all(t.join("acl/dir")).unwrap();
    let long = format!("{}.txt", "n".repeat(251));
    write_file(&t.join("names").join(&long), b"255-byte name\n");
    let mut deep = t.join("deep");
    for i in 1..=40 {
        deep = deep.join(format!("d{i:02}"));
    }
    write_file(&deep.join("leaf"), b"40 levels down\n");
    fs::create_dir_all(t.join("symlinks")).unwrap();
    let target300: String = (0..300).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    std::os::unix::fs::symlink(&target300, t.join("symlinks/long")).unwrap();
    std::os::unix::fs::symlink("../sizes/f1", t.join("symlinks/short")).unwrap();
    write_file(&t.join("times/1965"), b"old\n");
    write_file(&t.join("times/2100"), b"new\n");
    fs::create_dir_all(t.join("misc")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(t.join(SOCKET)).unwrap());
    let script = format!(
        r#"set -eu
mknod misc/char c 1 3
mknod misc/block b 7 200
mkfifo misc/fifo
chmod 0620 misc/char
ln links/a links/b
ln links/a links/c
ln names/{long} names/hardlink-to-long
chown 1234:5678 links/a
chmod 0640 links/a
setfattr -n user.link -v shared links/a
chmod 4755 modes/setuid
mkdir modes/setgid-dir modes/sticky
chmod 2775 modes/setgid-dir
chmod 1777 modes/sticky
chown 0:42 owned/0-42
chown 3000000:3000001 owned/bigid
chmod 0755 caps/pinger
setcap cap_net_raw+ep caps/pinger
setfattr -n user.test -v hello xattr/file
setfattr -n user.binary -v 0x00ff0a3d00 xattr/file
setfacl -m u:1234:rx acl/file
setfacl -d -m u:1234:rwx acl/dir
touch -d '1965-01-01 00:00:00.123456789 UTC' times/1965
touch -d '2100-01-01 00:00:00.5 UTC' times/2100
touch -h -d '1999-12-31 23:59:59.999999999 UTC' symlinks/short
"#
    );
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(t)
            .env("LC_ALL", "C"),
    );
    // The tree must hold what the tests claim.
    let m = manifest(t);
    let get = |p: &str, f: &str| m.get(p).and_then(|e| e.get(f)).cloned().unwrap_or_default();
    assert!(get("caps/pinger", "xattrs").contains("security.capability="));
    assert!(get("acl/dir", "acl").contains("default:user:1234:rwx"));
    assert_eq!(get("modes/setuid", "mode"), "4755");
    assert_eq!(get("links/b", "nlink"), "3");
    assert_eq!(get("times/1965", "mtime_ns"), "123456789");
    assert_eq!(get(SOCKET, "type"), "socket");
}

/// Same digest as `common::content_digest` (sha256 over offset and bytes
/// of every non-zero 4 KiB block), computed from a tar entry's segments.
fn entry_digest(e: &Entry, data: &mut dyn FileData) -> String {
    const B: u64 = 4096;
    let mut h = Sha256::new();
    let mut blk = vec![0u8; B as usize];
    let mut cur: Option<u64> = None;
    let mut flush = |cur: Option<u64>, blk: &mut Vec<u8>| {
        if let Some(k) = cur {
            let len = B.min(e.size - k * B) as usize;
            if blk[..len].iter().any(|&b| b != 0) {
                h.update((k * B).to_le_bytes());
                h.update(&blk[..len]);
            }
            blk.fill(0);
        }
    };
    let mut buf = vec![0u8; 1 << 16];
    for s in &e.segments {
        let mut off = s.offset;
        let end = s.offset + s.len;
        while off < end {
            let want = ((end - off) as usize).min(buf.len());
            let n = data.read(&mut buf[..want]).unwrap();
            assert!(n > 0, "{}: data ends early", e.display_path());
            let mut i = 0;
            while i < n {
                let k = (off + i as u64) / B;
                if cur != Some(k) {
                    flush(cur, &mut blk);
                    cur = Some(k);
                }
                let in_blk = ((off + i as u64) % B) as usize;
                let take = (B as usize - in_blk).min(n - i);
                blk[in_blk..in_blk + take].copy_from_slice(&buf[i..i + take]);
                i += take;
            }
            off += n as u64;
        }
    }
    flush(cur, &mut blk);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn read_all(tar: &Path) -> Vec<(Entry, Option<String>)> {
    let mut rd = TarReader::new(open_input(tar).unwrap());
    let mut out = Vec::new();
    while let Some(e) = rd.next_entry().unwrap() {
        let d = (e.kind == EntryKind::File).then(|| entry_digest(&e, &mut rd));
        out.push((e, d));
    }
    out
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

/// (a) dibr's own reader: every field of every entry against lstat and
/// getfattr of the source.
#[test]
fn capture_reads_back_with_own_reader() {
    if !require("capture_reads_back_with_own_reader", true, TOOLS) {
        return;
    }
    let f = fixture();
    let entries = read_all(&f.tar);
    let xattrs = xattrs_of_tree(&f.tree);
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
    for (e, digest) in &entries {
        let rel = String::from_utf8(e.path.clone()).unwrap();
        let abs = if rel.is_empty() {
            f.tree.clone()
        } else {
            f.tree.join(&rel)
        };
        let md = fs::symlink_metadata(&abs).unwrap_or_else(|err| panic!("{rel}: {err}"));
        let ft = md.file_type();
        let ctx = format!("entry {rel:?}: {e:?}");
        match &e.kind {
            EntryKind::File => {
                assert!(ft.is_file(), "{ctx}");
                assert_eq!(e.size, md.size(), "{ctx}");
                assert_eq!(digest.as_deref().unwrap(), content_digest(&abs), "{ctx}");
            }
            EntryKind::Dir => assert!(ft.is_dir(), "{ctx}"),
            EntryKind::Symlink(t) => {
                assert!(ft.is_symlink(), "{ctx}");
                assert_eq!(
                    t.as_slice(),
                    fs::read_link(&abs).unwrap().as_os_str().as_bytes()
                );
            }
            EntryKind::HardLink(first) => {
                let first = String::from_utf8(first.clone()).unwrap();
                assert_eq!(
                    first_of_inode.get(&(md.dev(), md.ino())),
                    Some(&first),
                    "{ctx}"
                );
            }
            EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
                if matches!(e.kind, EntryKind::CharDev { .. }) {
                    assert!(ft.is_char_device(), "{ctx}");
                } else {
                    assert!(ft.is_block_device(), "{ctx}");
                }
                let rdev = md.rdev();
                let maj = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
                let min = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
                assert_eq!((*major as u64, *minor as u64), (maj, min), "{ctx}");
            }
            EntryKind::Fifo => assert!(ft.is_fifo(), "{ctx}"),
            EntryKind::Socket => panic!("socket in the archive: {ctx}"),
        }
        if !ft.is_dir() && md.nlink() > 1 && !matches!(e.kind, EntryKind::HardLink(_)) {
            first_of_inode.insert((md.dev(), md.ino()), rel.clone());
        }
        assert_eq!(e.mode, md.mode() & 0o7777, "{ctx}");
        assert_eq!((e.uid, e.gid), (md.uid(), md.gid()), "{ctx}");
        assert_eq!(
            (e.mtime.secs, e.mtime.nsec as i64),
            (md.mtime(), md.mtime_nsec()),
            "{ctx}"
        );
        assert_eq!(e.atime, None, "{ctx}: no atime recorded");
        if !matches!(e.kind, EntryKind::HardLink(_)) && !rel.is_empty() {
            let mut got: Vec<String> = e
                .xattrs
                .iter()
                .map(|(k, v)| format!("{}=0x{}", String::from_utf8_lossy(k), hex(v)))
                .collect();
            got.sort();
            let want = xattrs.get(&rel).cloned().unwrap_or_default();
            assert_eq!(got.join(";"), want, "{ctx}");
        }
        seen.insert(rel, ());
    }
    // Every source path is in the archive, except the socket.
    for rel in manifest(&f.tree).keys() {
        assert_eq!(seen.contains_key(rel), rel != SOCKET, "{rel}");
    }
    // Deterministic order: parents first, siblings sorted bytewise.
    let paths: Vec<Vec<u8>> = entries.iter().map(|(e, _)| e.path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| {
        let ca: Vec<&[u8]> = a.split(|&c| c == b'/').filter(|c| !c.is_empty()).collect();
        let cb: Vec<&[u8]> = b.split(|&c| c == b'/').filter(|c| !c.is_empty()).collect();
        ca.cmp(&cb)
    });
    assert_eq!(paths, sorted);
    assert_eq!(paths[0], b"", "root first");
    // The sparse file stays sparse in the archive.
    let (sp, _) = entries
        .iter()
        .find(|(e, _)| e.path == SPARSE.as_bytes())
        .unwrap();
    assert_eq!(sp.size, 1 << 30);
    assert!(
        sp.segments.iter().map(|s| s.len).sum::<u64>() <= 64 << 10,
        "{sp:?}"
    );
    let s = &f.stats;
    assert_eq!(s.sockets_skipped, 1, "{s:?}");
    assert_eq!(s.sparse_files, 1, "{s:?}");
    assert_eq!(s.hardlinks, 3, "{s:?}");
    assert_eq!(s.devices, 2, "{s:?}");
    assert_eq!(s.fifos, 1, "{s:?}");
    assert_eq!(s.entries as usize, entries.len());
    assert!(
        f.tar.metadata().unwrap().len() < 8 << 20,
        "archive holds the holes"
    );
}

/// (b) GNU tar extracts it to the same tree.
#[test]
fn capture_extracts_with_gnu_tar() {
    if !require("capture_extracts_with_gnu_tar", true, TOOLS) {
        return;
    }
    let f = fixture();
    let out = scratch("capture-x");
    run_ok(
        Command::new(tool("tar"))
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "--numeric-owner",
                "-xpf",
            ])
            .arg(&f.tar)
            .arg("-C")
            .arg(out.path())
            .env("LC_ALL", "C"),
    );
    let mut want = manifest(&f.tree);
    want.remove(SOCKET);
    let got = manifest(out.path());
    let problems = diff_manifests(&want, &got, ALL_FIELDS);
    assert!(problems.is_empty(), "{}", report(&problems));
    let blocks: u64 = got[SPARSE]["blocks"].parse().unwrap();
    assert!(
        blocks <= 256,
        "sparse file extracted dense: {blocks} blocks"
    );
    // The root's own mode and owner come along too.
    let (a, b) = (
        fs::metadata(&f.tree).unwrap(),
        fs::metadata(out.path()).unwrap(),
    );
    assert_eq!(a.mode(), b.mode());
}

/// (c) The real `dibr mkfs` turns the capture into an image e2fsck accepts.
#[test]
fn capture_makes_a_clean_ext4_image() {
    if !require("capture_makes_a_clean_ext4_image", true, TOOLS) {
        return;
    }
    let f = fixture();
    let out = scratch("capture-img");
    let img = out.path().join("root.ext4");
    let o = run(Command::new(env!("CARGO_BIN_EXE_dibr"))
        .args(["mkfs", "--from"])
        .arg(&f.tar)
        .arg("-o")
        .arg(&img)
        .env("DIBR_NO_FSYNC", "1"));
    assert!(o.status.success(), "dibr mkfs failed:\n{}", out_text(&o));
    e2fsck_ok(&img);
}

/// A tree that needs no privileges but has the reproducibility hazards:
/// hard links, xattrs, a sparse file, mtimes after the epoch to clamp to.
fn build_repro_tree(t: &Path) {
    build_simple_tree(t);
    {
        let f = fs::File::create(t.join("var/sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"middle", 32 << 20).unwrap();
    }
    write_file(&t.join("var/new"), b"from the future\n");
    run_ok(
        Command::new("touch")
            .args(["-d", "2030-01-01 00:00:00.25 UTC"])
            .arg(t.join("var/new")),
    );
}

/// Two captures with SOURCE_DATE_EPOCH are byte-identical in every output
/// type, also of a copy of the tree (other inode numbers, readdir order,
/// atimes), and mtimes are clamped.
#[test]
fn capture_is_reproducible() {
    if which("cp").is_none() {
        skip("capture_is_reproducible", "missing cp");
        return;
    }
    let dir = scratch("capture-repro");
    let a = dir.path().join("a");
    build_repro_tree(&a);
    let b = dir.path().join("b");
    run_ok(Command::new("cp").arg("-a").arg(&a).arg(&b));
    let sde = 1_800_000_000; // after the simple tree's 2023 mtimes, before 2030
    let opts = CaptureOptions {
        source_date_epoch: Some(sde),
        synthesize_dev: true,
        exclude: vec!["var/empty".into()],
        no_fsync: false,
    };
    for (ty, ext) in [
        (OutputType::Tar, "tar"),
        (OutputType::Tgz, "tgz"),
        (OutputType::TarZst, "tar.zst"),
    ] {
        let mut outs = Vec::new();
        for (i, src) in [&a, &a, &b].into_iter().enumerate() {
            let p = dir.path().join(format!("out{i}.{ext}"));
            write_output(src, &p, ty, &opts).unwrap();
            outs.push(fs::read(&p).unwrap());
        }
        assert!(outs[0] == outs[1], "{ext}: two captures differ");
        assert!(outs[0] == outs[2], "{ext}: capture of a copy differs");
        if ty == OutputType::Tgz {
            assert_eq!(&outs[0][4..8], &[0, 0, 0, 0], "gzip mtime");
            assert_eq!(outs[0][3] & 0x08, 0, "gzip FNAME flag");
        }
    }
    let entries = read_all(&dir.path().join("out0.tar"));
    let by_path: BTreeMap<String, &Entry> =
        entries.iter().map(|(e, _)| (e.display_path(), e)).collect();
    assert_eq!(by_path["var/new"].mtime.secs, sde);
    assert_eq!(by_path["var/new"].mtime.nsec, 0);
    assert_eq!(
        by_path["etc/motd"].mtime.nsec, 250_000_000,
        "older mtimes kept"
    );
    assert!(!by_path.contains_key("var/empty"));
    let sparse = by_path["var/sparse"];
    assert_eq!(sparse.size, 64 << 20);
    assert!(sparse.segments.iter().map(|s| s.len).sum::<u64>() < 1 << 20);
    // No atime/ctime records, no user or group names.
    let raw = fs::read(dir.path().join("out0.tar")).unwrap();
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!has(b" atime=") && !has(b" ctime="));
    for hdr in raw.chunks(512).filter(|c| &c[257..262] == b"ustar") {
        assert!(hdr[265..329].iter().all(|&c| c == 0), "uname/gname set");
    }
}

/// synthesize_dev writes the standard devices as headers in place of the
/// tree's own dev/ contents; excludes leave paths (or their contents) out.
#[test]
fn capture_synthesizes_dev_and_excludes() {
    let dir = scratch("capture-dev");
    let t = dir.path().join("tree");
    for p in [
        "bin/sh",
        "dev/junk",
        "dev/sub/deeper",
        "proc/1/status",
        "sys/kernel/x",
        "tmp/in_target.d/hook",
        "tmp/keep",
        "usr/lib/x",
    ] {
        write_file(&t.join(p), p.as_bytes());
    }
    let opts = CaptureOptions {
        source_date_epoch: None,
        synthesize_dev: true,
        exclude: vec!["proc/*".into(), "/sys".into(), "tmp/in_target.d".into()],
        no_fsync: false,
    };
    let tar = dir.path().join("dev.tar");
    let stats = write_tar(&t, fs::File::create(&tar).unwrap(), &opts).unwrap();
    let entries = read_all(&tar);
    let list: Vec<(String, EntryKind, u32)> = entries
        .iter()
        .map(|(e, _)| (e.display_path(), e.kind.clone(), e.mode))
        .collect();
    let names: Vec<&str> = list.iter().map(|(p, _, _)| p.as_str()).collect();
    let dev = |maj, min| EntryKind::CharDev {
        major: maj,
        minor: min,
    };
    let link = |t: &str| EntryKind::Symlink(t.as_bytes().to_vec());
    let want_dev: Vec<(String, EntryKind, u32)> = vec![
        ("dev", EntryKind::Dir, 0o755),
        ("dev/console", dev(5, 1), 0o600),
        ("dev/fd", link("/proc/self/fd"), 0o777),
        ("dev/full", dev(1, 7), 0o666),
        ("dev/null", dev(1, 3), 0o666),
        ("dev/ptmx", dev(5, 2), 0o666),
        ("dev/pts", EntryKind::Dir, 0o755),
        ("dev/random", dev(1, 8), 0o666),
        ("dev/shm", EntryKind::Dir, 0o1777),
        ("dev/stderr", link("/proc/self/fd/2"), 0o777),
        ("dev/stdin", link("/proc/self/fd/0"), 0o777),
        ("dev/stdout", link("/proc/self/fd/1"), 0o777),
        ("dev/tty", dev(5, 0), 0o666),
        ("dev/urandom", dev(1, 9), 0o666),
        ("dev/zero", dev(1, 5), 0o666),
    ]
    .into_iter()
    .map(|(p, k, m)| (p.to_string(), k, m))
    .collect();
    let got_dev: Vec<_> = list
        .iter()
        .filter(|(p, _, _)| p == "dev" || p.starts_with("dev/"))
        .cloned()
        .collect();
    // The tree's own dev dir keeps its mode (0755 from create_dir_all).
    assert_eq!(got_dev, want_dev);
    assert_eq!(stats.synthesized_dev, 14);
    assert_eq!(
        names,
        [
            "/",
            "bin",
            "bin/sh",
            "dev",
            "dev/console",
            "dev/fd",
            "dev/full",
            "dev/null",
            "dev/ptmx",
            "dev/pts",
            "dev/random",
            "dev/shm",
            "dev/stderr",
            "dev/stdin",
            "dev/stdout",
            "dev/tty",
            "dev/urandom",
            "dev/zero",
            "proc",
            "tmp",
            "tmp/keep",
            "usr",
            "usr/lib",
            "usr/lib/x",
        ]
    );
    // The synthesized nodes belong to root; the tree's own dev dir keeps
    // its owner (the user running the test, who may not be root).
    let dev_dir = {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(t.join("dev")).unwrap();
        (m.uid() as u64, m.gid() as u64)
    };
    for (e, _) in &entries {
        let p = e.display_path();
        if p.starts_with("dev/") {
            assert_eq!((e.uid as u64, e.gid as u64), (0, 0), "{p}");
        } else if p == "dev" {
            assert_eq!((e.uid as u64, e.gid as u64), dev_dir, "{p}");
        }
    }

    // Without a dev dir in the tree one is made, in sorted position; GNU
    // tar agrees on types and numbers.
    fs::remove_dir_all(t.join("dev")).unwrap();
    write_file(&t.join("dev-not-dev/x"), b"x");
    let stats = write_tar(&t, fs::File::create(&tar).unwrap(), &opts).unwrap();
    assert_eq!(stats.synthesized_dev, 15);
    let names: Vec<String> = read_all(&tar)
        .iter()
        .map(|(e, _)| e.display_path())
        .collect();
    let i = names.iter().position(|n| n == "dev").unwrap();
    assert_eq!(names[i - 1], "bin/sh");
    assert_eq!(names[i + 15], "dev-not-dev");
    if which("tar").is_some() {
        let o = run_ok(
            Command::new(tool("tar"))
                .args(["--numeric-owner", "-tvf"])
                .arg(&tar)
                .env("LC_ALL", "C")
                .env("TZ", "UTC"),
        );
        let text = String::from_utf8_lossy(&o.stdout);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.ends_with(name))
                .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
                .to_string()
        };
        assert!(line(" dev/null").starts_with("crw-rw-rw- 0/0"), "{text}");
        assert!(line(" dev/null").contains(" 1,3 "), "{text}");
        assert!(line(" dev/console").starts_with("crw-------"), "{text}");
        assert!(line(" dev/shm/").starts_with("drwxrwxrwt"), "{text}");
        assert!(line(" dev/stdin -> /proc/self/fd/0").starts_with("lrwxrwxrwx"));
    } else {
        skip(
            "capture_synthesizes_dev_and_excludes (GNU tar listing)",
            "missing tar",
        );
    }
}

#[test]
fn capture_errors_name_the_path() {
    let dir = scratch("capture-err");
    let missing = dir.path().join("no-such-tree");
    let e = write_tar(&missing, std::io::sink(), &CaptureOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no-such-tree"), "{e}");
    let bad = CaptureOptions {
        exclude: vec!["../etc".into()],
        ..Default::default()
    };
    fs::create_dir_all(dir.path().join("t")).unwrap();
    let e = write_tar(&dir.path().join("t"), std::io::sink(), &bad).unwrap_err();
    assert!(e.to_string().contains("../etc"), "{e}");
}
