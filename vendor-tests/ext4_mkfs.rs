//! `dibr mkfs` judged by the real tools: e2fsck -fn, dumpe2fs, debugfs htree,
//! and the kernel (read-only loop mount) compared against a torture tree.
//!
//! Set DIBR_TEST_MKFS=mke2fs to run the same checks against the mke2fs -d
//! stand-in (it must FAIL the timestamp checks: that proves the harness can
//! fail).

mod common;
use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TORTURE_TOOLS: &[&str] = &[
    "tar", "mknod", "mkfifo", "setcap", "setfacl", "getfacl", "setfattr", "getfattr", "e2fsck",
    "dumpe2fs", "debugfs", "mount", "umount", "touch", "python3",
];

/// Words the mkfs summary must contain (it prints size, inode count and
/// growth ceiling). Case-insensitive; adjust here to the real wording.
const SUMMARY_WORDS: &[&str] = &["inode"];

const LABEL: &str = "dibr-torture";
const UUID: &str = "6c1f5b4e-2d0a-4f3b-9e1c-0123456789ab";

pub const SPARSE: &str = "sparse/1g-one-block-at-512m";
pub const BIGDIR: &str = "bigdir";
const BIGDIR_ENTRIES: usize = 10_000;

struct Fixture {
    tree: PathBuf,
    want: Manifest,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The torture tree, built once per test process under CARGO_TARGET_TMPDIR.
fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("torture");
        if base.exists() {
            fs::remove_dir_all(&base).unwrap();
        }
        let tree = base.join("tree");
        build_torture_tree(&tree);
        let want = manifest(&tree);
        sanity_check_source(&want);
        Fixture { tree, want }
    })
}

fn build_torture_tree(t: &Path) {
    fs::create_dir_all(t).unwrap();
    // Regular files of edge sizes and a 70 MB incompressible one.
    for (i, n) in [0usize, 60, 4095, 4096, 4097].into_iter().enumerate() {
        write_file(
            &t.join(format!("sizes/f{n}")),
            &prng_bytes(100 + i as u64, n),
        );
    }
    write_file(&t.join("sizes/random-70m"), &prng_bytes(42, 70_000_000));
    write_file(&t.join("links/a"), b"three names, one inode\n");
    write_file(&t.join("caps/pinger"), &prng_bytes(5, 9000));
    write_file(&t.join("xattr/big"), b"carries a 3000-byte user xattr\n");
    write_file(&t.join("acl/file"), b"acl\n");
    fs::create_dir_all(t.join("acl/dir")).unwrap();
    write_file(&t.join("owned/file"), b"1234:5678\n");
    write_file(&t.join("times/1965"), b"old\n");
    write_file(&t.join("times/2100"), b"new\n");
    write_file(&t.join("unicode/héllo-世界.txt"), "unicode ✓\n".as_bytes());
    let long = format!("{}.txt", "n".repeat(251));
    assert_eq!(long.len(), 255);
    write_file(&t.join("names").join(&long), b"255-byte name\n");
    let mut deep = t.join("deep");
    for i in 1..=40 {
        deep = deep.join(format!("d{i:02}"));
    }
    write_file(&deep.join("leaf"), b"40 levels down\n");
    fs::create_dir_all(t.join("empty")).unwrap();
    fs::create_dir_all(t.join("tmp1777")).unwrap();
    fs::create_dir_all(t.join("private")).unwrap();
    fs::create_dir_all(t.join("dev")).unwrap();
    fs::create_dir_all(t.join("symlinks")).unwrap();
    let target200: String = (0..200).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    std::os::unix::fs::symlink(&target200, t.join("symlinks/long")).unwrap();
    std::os::unix::fs::symlink("../sizes/f60", t.join("symlinks/short")).unwrap();
    // 1 GiB sparse file with one 4 KiB data block at 512 MiB.
    fs::create_dir_all(t.join("sparse")).unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(t.join(SPARSE)).unwrap();
        f.set_len(1 << 30).unwrap();
        f.seek(SeekFrom::Start(512 << 20)).unwrap();
        f.write_all(&prng_bytes(9, 4096)).unwrap();
    }
    // 10 000-entry directory (htree). Names avoid words the htree check greps.
    fs::create_dir_all(t.join(BIGDIR)).unwrap();
    for i in 0..BIGDIR_ENTRIES {
        fs::File::create(t.join(BIGDIR).join(format!("entry-{i:05}"))).unwrap();
    }
    // Privileged and attribute steps, in an order that keeps them
    // (chown clears setuid and security.capability; so chown, chmod, setcap).
    let big_xattr = format!(
        "0x{}",
        prng_bytes(11, 3000)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let script = format!(
        r#"set -eu
mknod dev/char c 1 3
mknod dev/block b 7 200
mkfifo dev/fifo
chmod 0620 dev/char
ln links/a links/b
ln links/a links/c
chown 1234:5678 links/a
chmod 4755 links/a
setfattr -n user.link -v shared-by-three links/a
chown 1234:5678 owned/file
chown -h 1234:5678 symlinks/short
chmod 0755 caps/pinger
setcap cap_net_raw+ep caps/pinger
setfattr -n user.big -v {big_xattr} xattr/big
setfattr -n user.small -v tiny xattr/big
setfacl -m u:1234:rx acl/file
setfacl -d -m u:1234:rwx acl/dir
chmod 1777 tmp1777
chown 42:42 private
chmod 0700 private
chmod 0640 sizes/f4097
touch -d '1965-01-01 00:00:00.123456789 UTC' times/1965
touch -d '2100-01-01 00:00:00.5 UTC' times/2100
ln -s 1965 times/old-link
touch -h -d '1965-01-01 00:00:00.987654321 UTC' times/old-link
touch -d '2100-01-01 00:00:00.5 UTC' empty
"#
    );
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(t)
            .env("LC_ALL", "C"),
    );
}

/// The source tree must really hold what the tests claim (a test that
/// cannot fail is a defect: e.g. setcap silently dropped by chown).
fn sanity_check_source(m: &Manifest) {
    let get = |p: &str, f: &str| m.get(p).and_then(|e| e.get(f)).cloned().unwrap_or_default();
    assert_eq!(get("dev/char", "type"), "chardev");
    assert_eq!(get("dev/block", "rdev"), "7:200");
    assert_eq!(get("dev/fifo", "type"), "fifo");
    assert_eq!(get("links/b", "nlink"), "3");
    assert_eq!(get("links/c", "mode"), "4755");
    assert!(get("links/c", "xattrs").contains("user.link="));
    assert!(
        get("caps/pinger", "xattrs").contains("security.capability="),
        "setcap lost: {:?}",
        m.get("caps/pinger")
    );
    assert!(get("xattr/big", "xattrs").len() > 6000);
    assert!(get("acl/file", "acl").contains("user:1234:r-x"));
    assert!(get("acl/dir", "acl").contains("default:user:1234:rwx"));
    assert_eq!(get("times/1965", "mtime_s"), "-157766400");
    assert_eq!(get("times/1965", "mtime_ns"), "123456789");
    assert_eq!(get("times/2100", "mtime_s"), "4102444800");
    assert_eq!(get("times/2100", "mtime_ns"), "500000000");
    assert_eq!(get("symlinks/long", "target").len(), 200);
    assert_eq!(get("private", "uid"), "42");
    assert_eq!(get("tmp1777", "mode"), "1777");
    assert_eq!(get(SPARSE, "size"), (1u64 << 30).to_string());
    assert_eq!(
        m.keys().filter(|k| k.starts_with("bigdir/")).count(),
        BIGDIR_ENTRIES
    );
}

/// Check one image made from the torture tree: e2fsck, superblock, htree,
/// manifest through the kernel, sparse allocation.
fn judge(
    img: &Path,
    want: &Manifest,
    skip_fields: &[&str],
    label: Option<&str>,
    uuid: Option<&str>,
) {
    // Collect everything before failing, so one run shows all that is wrong.
    let mut problems = e2fsck_problems(img);
    problems.extend(superblock_problems(img, label, uuid));
    problems.extend(htree_problems(img, &format!("/{BIGDIR}")));
    let fields = fields_except(skip_fields);
    let (got, diffs) = compare_image(img, want, &fields);
    problems.extend(diffs);
    if let Some(e) = got.get(SPARSE) {
        let blocks: u64 = e["blocks"].parse().unwrap();
        if blocks > 16 {
            problems.push(format!(
                "{SPARSE}: blocks: {blocks} sectors allocated, want <= 16 (holes must stay holes)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "image {img:?} differs from the source tree\n{}",
        report(&problems)
    );
}

/// Build the source for one variant in `dir`, run mkfs into an empty
/// output directory, judge the result.
fn variant(test: &str, skip_fields: &[&str], make: impl FnOnce(&Path, &Path) -> Src) {
    let mut tools = TORTURE_TOOLS.to_vec();
    tools.extend(["gzip", "zstd"]);
    if !require(test, true, &tools) {
        return;
    }
    let fx = fixture();
    let work = scratch(test);
    let src = make(&fx.tree, work.path());
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let img = out_dir.join("image.ext4");
    let opts = Opts {
        label: Some(LABEL.into()),
        uuid: Some(UUID.into()),
        ..Default::default()
    };
    let r = mkfs_ok(&src, &img, &opts);
    judge(&img, &fx.want, skip_fields, Some(LABEL), Some(UUID));
    // The summary is part of dibr's contract only (mke2fs -q is silent).
    if mkfs_impl() == Impl::Dibr {
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        )
        .to_lowercase();
        for w in SUMMARY_WORDS {
            assert!(
                said.contains(w),
                "mkfs summary should mention '{w}':\n{}",
                out_text(&r)
            );
        }
    }
}

const PAX: &[&str] = &[
    "--format=pax",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--numeric-owner",
    "--sparse",
];

fn pax_tar(tree: &Path, dir: &Path, extra: &[&str]) -> PathBuf {
    let t = dir.join("t.tar");
    let mut args = PAX.to_vec();
    args.extend_from_slice(extra);
    gnu_tar(tree, &t, &args);
    t
}

// Formats without xattrs/ACLs/sub-second times: those fields can't survive.
const NO_PAX_FIELDS: &[&str] = &["xattrs", "acl", "mtime_ns"];

#[test]
fn torture_tar_records_xattrs_acls_caps() {
    if !require("torture_tar_records_xattrs_acls_caps", true, TORTURE_TOOLS) {
        return;
    }
    let fx = fixture();
    let work = scratch("tarcheck");
    let t = pax_tar(&fx.tree, work.path(), &[]);
    // GNU tar 1.34 records an ACL twice: as SCHILY.acl.access text and (with
    // --xattrs-include='*') as the raw system.posix_acl_access xattr.
    let py = r#"
import sys, tarfile
h = {m.name: m.pax_headers for m in tarfile.open(sys.argv[1])}
def need(name, key):
    if key not in h.get(name, {}):
        sys.exit("tar lacks %s on %s: %r" % (key, name, h.get(name)))
need('./caps/pinger', 'SCHILY.xattr.security.capability')
need('./acl/file', 'SCHILY.acl.access')
need('./acl/file', 'SCHILY.xattr.system.posix_acl_access')
need('./acl/dir', 'SCHILY.acl.default')
need('./xattr/big', 'SCHILY.xattr.user.big')
# hard links: only the first of a/b/c in archive order carries the data
if not any('SCHILY.xattr.user.link' in h.get('./links/' + n, {}) for n in 'abc'):
    sys.exit("tar lacks user.link on every name of links/a")
need('./times/1965', 'mtime')
print("ok")
"#;
    run_ok(Command::new(tool("python3")).arg("-c").arg(py).arg(&t));
}

#[test]
fn torture_pax_tar_file() {
    variant("torture_pax_tar_file", &[], |tree, dir| {
        Src::Path(pax_tar(tree, dir, &[]))
    });
}

#[test]
fn torture_pax_tar_stdin() {
    variant("torture_pax_tar_stdin", &[], |tree, dir| {
        Src::Stdin(pax_tar(tree, dir, &[]))
    });
}

#[test]
fn torture_pax_tar_gzip() {
    variant("torture_pax_tar_gzip", &[], |tree, dir| {
        let t = pax_tar(tree, dir, &[]);
        run_ok(Command::new(tool("gzip")).arg("-1").arg(&t));
        // Name it .tar so only the magic can tell.
        let z = dir.join("gz-by-magic.tar");
        fs::rename(dir.join("t.tar.gz"), &z).unwrap();
        Src::Path(z)
    });
}

#[test]
fn torture_pax_tar_zstd_stdin() {
    variant("torture_pax_tar_zstd_stdin", &[], |tree, dir| {
        let t = pax_tar(tree, dir, &[]);
        run_ok(
            Command::new(tool("zstd"))
                .args(["-q", "-1", "--rm"])
                .arg(&t),
        );
        Src::Stdin(dir.join("t.tar.zst"))
    });
}

#[test]
fn torture_directory_input() {
    variant("torture_directory_input", &[], |tree, _dir| {
        let mut p = tree.as_os_str().to_owned();
        p.push("/");
        Src::Path(PathBuf::from(p))
    });
}

#[test]
fn torture_gnu_format_tar() {
    // Old GNU sparse, 'L'/'K' long names, base-256 negative mtime.
    variant("torture_gnu_format_tar", NO_PAX_FIELDS, |tree, dir| {
        let t = dir.join("t.tar");
        gnu_tar(tree, &t, &["--format=gnu", "--numeric-owner", "--sparse"]);
        Src::Path(t)
    });
}

#[test]
fn torture_pax_sparse_0_0() {
    variant("torture_pax_sparse_0_0", &[], |tree, dir| {
        Src::Path(pax_tar(tree, dir, &["--sparse-version=0.0"]))
    });
}

#[test]
fn torture_pax_sparse_0_1() {
    variant("torture_pax_sparse_0_1", &[], |tree, dir| {
        Src::Path(pax_tar(tree, dir, &["--sparse-version=0.1"]))
    });
}

#[test]
fn torture_pax_sparse_1_0() {
    variant("torture_pax_sparse_1_0", &[], |tree, dir| {
        Src::Path(pax_tar(tree, dir, &["--sparse-version=1.0"]))
    });
}

#[test]
fn ustar_simple_subset() {
    let test = "ustar_simple_subset";
    // Rootless-buildable tree: without root the image is read with debugfs.
    if !require(
        test,
        is_ci(),
        &[
            "tar", "e2fsck", "dumpe2fs", "debugfs", "mount", "umount", "getfattr", "getfacl",
            "setfattr",
        ],
    ) {
        return;
    }
    let work = scratch(test);
    let tree = work.path().join("tree");
    build_simple_tree(&tree);
    let want = manifest(&tree);
    let t = work.path().join("s.tar");
    gnu_tar(&tree, &t, &["--format=ustar", "--numeric-owner"]);
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let img = out_dir.join("image.ext4");
    mkfs_ok(&Src::Path(t), &img, &Opts::default());
    e2fsck_ok(&img);
    check_superblock(&img, None, None);
    let (_, diffs) = compare_image(&img, &want, &fields_except(NO_PAX_FIELDS));
    assert!(
        diffs.is_empty(),
        "ustar image differs from the source\n{}",
        report(&diffs)
    );
}

#[test]
fn reproducible_with_source_date_epoch() {
    let test = "reproducible_with_source_date_epoch";
    if !require(test, true, TORTURE_TOOLS) {
        return;
    }
    let fx = fixture();
    let work = scratch(test);
    let t = pax_tar(&fx.tree, work.path(), &[]);
    let sde = Opts {
        env: vec![("SOURCE_DATE_EPOCH".into(), "1700000000".into())],
        ..Default::default()
    };
    let mut sums = Vec::new();
    for (i, o) in [&sde, &sde, &Opts::default()].into_iter().enumerate() {
        let out_dir = work.path().join(format!("out{i}"));
        fs::create_dir(&out_dir).unwrap();
        let img = out_dir.join("image.ext4");
        mkfs_ok(&Src::Path(t.clone()), &img, o);
        sums.push(sha256_file(&img));
        if i == 0 {
            e2fsck_ok(&img);
        }
        if i < 2 {
            // keep the first two for a diff hint if they differ
            continue;
        }
        fs::remove_file(&img).unwrap();
    }
    if sums[0] != sums[1] {
        let a = work.path().join("out0/image.ext4");
        let b = work.path().join("out1/image.ext4");
        let o = run(Command::new("cmp").arg("-l").arg(&a).arg(&b));
        let first = head(&String::from_utf8_lossy(&o.stdout), 20);
        panic!(
            "two runs with SOURCE_DATE_EPOCH=1700000000 differ: {} vs {}\nfirst differing bytes (offset, octal a, octal b):\n{first}",
            sums[0], sums[1]
        );
    }
    if sums[2] == sums[0] {
        println!("note: a run without SOURCE_DATE_EPOCH gave the same image (UUID expected to differ; not asserted)");
    }
}

#[test]
fn rootless_mkfs_as_unprivileged_user() {
    let test = "rootless_mkfs_as_unprivileged_user";
    if !is_root() {
        // Everything else already runs unprivileged in this case.
        skip(
            test,
            "needs root to switch to an unprivileged user with setpriv",
        );
        return;
    }
    if !require(test, true, &[TORTURE_TOOLS, &["setpriv"]].concat()) {
        return;
    }
    let user = if run(Command::new("id").arg("dibr-ci")).status.success() {
        "dibr-ci"
    } else {
        "nobody"
    };
    let fx = fixture();
    let work = scratch(test);
    // World-traversable scratch: the tar (0644) and a copy of the binary.
    run_ok(Command::new("chmod").arg("0755").arg(work.path()));
    let t = pax_tar(&fx.tree, work.path(), &[]);
    run_ok(Command::new("chmod").arg("0644").arg(&t));
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    run_ok(Command::new("chown").arg(format!("{user}:")).arg(&out_dir));
    if user == "nobody" {
        run_ok(Command::new("chown").arg("nobody").arg(&out_dir));
    }
    let img = out_dir.join("image.ext4");
    let mut argv = mkfs_argv(&Src::Path(t.clone()), &img, &Opts::default());
    if mkfs_impl() == Impl::Dibr {
        let bin = work.path().join("dibr");
        fs::copy(dibr_bin(), &bin).unwrap();
        run_ok(Command::new("chmod").arg("0755").arg(&bin));
        argv[0] = bin.into();
    }
    let mut c = Command::new(tool("setpriv"));
    c.args([
        format!("--reuid={user}"),
        format!("--regid={user}"),
        "--clear-groups".into(),
    ]);
    c.arg("--")
        .args(&argv)
        .current_dir(&out_dir)
        .env_remove("SOURCE_DATE_EPOCH");
    let o = run(&mut c);
    assert!(
        o.status.success(),
        "mkfs as {user} failed\n{}",
        out_text(&o)
    );
    let names = dir_entries(&out_dir);
    assert_eq!(
        names,
        vec![PathBuf::from("image.ext4")],
        "unexpected files in the output directory"
    );
    e2fsck_ok(&img);
    // Ownership recorded in the tar must be kept although the writer was not root.
    let o = run_ok(
        Command::new(tool("debugfs"))
            .arg("-R")
            .arg("stat /links/a")
            .arg(&img),
    );
    let s = String::from_utf8_lossy(&o.stdout);
    let words: Vec<&str> = s.split_whitespace().collect();
    let after = |k: &str| {
        words
            .iter()
            .position(|w| *w == k)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    assert!(
        after("User:") == Some("1234") && after("Group:") == Some("5678"),
        "uid/gid from the tar lost when not root:\n{}",
        head(&s, 12)
    );
}

/// The non-root reader (debugfs rdump + stat) must agree with the kernel on
/// a dibr image, so the fallback used without root is itself checked.
#[test]
fn debugfs_reader_agrees_with_kernel() {
    let test = "debugfs_reader_agrees_with_kernel";
    if !require(
        test,
        true,
        &[
            "tar", "debugfs", "mount", "umount", "getfattr", "getfacl", "setfattr", "e2fsck",
        ],
    ) {
        return;
    }
    let work = scratch(test);
    let tree = work.path().join("tree");
    build_simple_tree(&tree);
    let t = work.path().join("s.tar");
    gnu_tar(&tree, &t, PAX);
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let img = out_dir.join("image.ext4");
    mkfs_ok(&Src::Path(t), &img, &Opts::default());
    e2fsck_ok(&img);
    let m = Mount::ro(&img);
    let kernel = manifest(&m.dir);
    drop(m);
    let dbg = debugfs_manifest(&img);
    let d = diff_manifests(&kernel, &dbg, &fields_except(&["xattrs", "acl"]));
    assert!(
        d.is_empty(),
        "debugfs reader disagrees with the kernel (source=kernel, image=debugfs)\n{}",
        report(&d)
    );
    assert!(kernel.len() >= 10, "simple tree too small: {kernel:?}");
}
