//! Reader tests: archives written by the real GNU tar (1.34) where it can
//! produce the case, hand-built byte fixtures for the edge cases.

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use super::header::Block;
use super::*;
use crate::tree::{Entry, EntryKind, FileData, Segment, Timestamp};

// ---------------------------------------------------------------- helpers

fn gnu_tar(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["--sort=name", "--numeric-owner", "-C"])
        .arg(dir)
        .args(args)
        .args(["-cf", "-", "."])
        .output()
        .expect("run GNU tar");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn read_all<R: TarSource>(rd: &mut TarReader<R>) -> Result<Vec<(Entry, Vec<u8>)>, String> {
    let mut out = Vec::new();
    while let Some(e) = rd.next_entry().map_err(|e| e.to_string())? {
        let mut data = Vec::new();
        let mut chunk = vec![0u8; 70_000];
        loop {
            let n = rd.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&chunk[..n]);
        }
        out.push((e, data));
    }
    Ok(out)
}

fn entries(bytes: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, String> {
    read_all(&mut TarReader::new(Cursor::new(bytes)))
}

fn find<'a>(es: &'a [(Entry, Vec<u8>)], path: &str) -> &'a (Entry, Vec<u8>) {
    es.iter()
        .find(|(e, _)| e.path == path.as_bytes())
        .unwrap_or_else(|| panic!("no entry {path:?}"))
}

fn put_octal(f: &mut [u8], v: u64) {
    let s = format!("{:0w$o}\0", v, w = f.len() - 1);
    f.copy_from_slice(s.as_bytes());
}

fn fix_checksum(b: &mut Block) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn header(name: &[u8], typeflag: u8, size: u64) -> Block {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name);
    put_octal(&mut b[100..108], 0o644);
    put_octal(&mut b[108..116], 1000);
    put_octal(&mut b[116..124], 1001);
    put_octal(&mut b[124..136], size);
    put_octal(&mut b[136..148], 1_700_000_000);
    b[156] = typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    fix_checksum(&mut b);
    b
}

fn pad(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(512) * 512, 0);
}

fn member(name: &[u8], typeflag: u8, data: &[u8]) -> Vec<u8> {
    let mut v = header(name, typeflag, data.len() as u64).to_vec();
    v.extend_from_slice(data);
    pad(&mut v);
    v
}

fn pax_data(records: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (k, v) in records {
        let body = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} ").as_bytes());
        data.extend_from_slice(k);
        data.push(b'=');
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    data
}

fn pax(typeflag: u8, records: &[(&[u8], &[u8])]) -> Vec<u8> {
    member(b"PaxHeaders/x", typeflag, &pax_data(records))
}

fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

use crate::test_rng::Rng;

/// A small tree: regular files, dir, symlink, hard link, fifo, long names.
fn sample_tree(dir: &Path, with_long_name: bool) {
    let long_dir = "d/".to_string() + &"x".repeat(60) + "/" + &"y".repeat(60);
    fs::create_dir_all(dir.join(&long_dir)).unwrap();
    fs::write(dir.join("a"), b"hello world\n").unwrap();
    fs::write(dir.join(&long_dir).join("f"), vec![7u8; 3000]).unwrap();
    if with_long_name {
        // 150-byte name: not representable in ustar.
        fs::write(dir.join("d").join("z".repeat(150)), b"").unwrap();
    }
    std::os::unix::fs::symlink("../a", dir.join("d/l")).unwrap();
    fs::hard_link(dir.join("a"), dir.join("h")).unwrap();
    fs::set_permissions(dir.join("a"), fs::Permissions::from_mode(0o4751)).unwrap();
    let st = Command::new("mkfifo").arg(dir.join("p")).status().unwrap();
    assert!(st.success());
}

// ------------------------------------------------------- GNU tar formats

#[test]
fn gnu_tar_formats() {
    let long_dir = "d/".to_string() + &"x".repeat(60) + "/" + &"y".repeat(60);
    for format in ["ustar", "gnu", "pax", "oldgnu"] {
        let tmp = tempfile::tempdir().unwrap();
        sample_tree(tmp.path(), format != "ustar");
        let arg = format!("--format={format}");
        let bytes = gnu_tar(tmp.path(), &[&arg]);
        let es = entries(&bytes).unwrap_or_else(|e| panic!("{format}: {e}"));
        let (root, _) = &es[0];
        assert_eq!(
            (root.path.as_slice(), &root.kind),
            (&b""[..], &EntryKind::Dir)
        );
        assert_eq!(root.source_offset, 0);
        let (a, data) = find(&es, "a");
        assert_eq!(data, b"hello world\n");
        assert_eq!(a.kind, EntryKind::File);
        assert_eq!(a.mode, 0o4751);
        assert_eq!(a.size, 12);
        assert_eq!(a.segments, vec![Segment { offset: 0, len: 12 }]);
        // GNU tar archives the second name of a hard link as a link.
        assert_eq!(find(&es, "h").0.kind, EntryKind::HardLink(b"a".to_vec()));
        assert_eq!(
            find(&es, "d/l").0.kind,
            EntryKind::Symlink(b"../a".to_vec())
        );
        assert_eq!(find(&es, "p").0.kind, EntryKind::Fifo);
        let (f, data) = find(&es, &(long_dir.clone() + "/f"));
        assert_eq!((f.size, data.len()), (3000, 3000));
        assert!(data.iter().all(|&b| b == 7));
        if format != "ustar" {
            let (e, _) = find(&es, &("d/".to_string() + &"z".repeat(150)));
            assert_eq!((e.size, e.segments.len()), (0, 0));
        }
        // Offsets are strictly increasing and block aligned.
        for w in es.windows(2) {
            assert!(w[0].0.source_offset < w[1].0.source_offset);
            assert_eq!(w[1].0.source_offset % 512, 0);
        }
        assert_eq!(es.len(), if format == "ustar" { 9 } else { 10 }, "{format}");
    }
}

#[test]
fn ustar_prefix_field() {
    // ustar splits "d/xxx.../yyy.../f" into prefix + name.
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path(), false);
    let bytes = gnu_tar(tmp.path(), &["--format=ustar"]);
    let prefixed = bytes
        .chunks(512)
        .any(|b| b[257..263] == *b"ustar\0" && b[345] != 0);
    assert!(prefixed, "fixture must use the prefix field");
    let es = entries(&bytes).unwrap();
    let want = "d/".to_string() + &"x".repeat(60) + "/" + &"y".repeat(60) + "/f";
    find(&es, &want);
}

#[test]
fn times_pax_and_gnu() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("old"), b"o").unwrap();
    fs::write(d.join("future"), b"f").unwrap();
    fs::write(d.join("neg"), b"n").unwrap();
    let touch = |when: &str, f: &str| {
        let st = Command::new("touch")
            .args(["-m", "-d", when])
            .arg(d.join(f))
            .status()
            .unwrap();
        assert!(st.success());
    };
    touch("@-157766399.876543211", "old");
    touch("@4102444800.5", "future"); // 2100-01-01
    touch("@-157766400", "neg");
    let es = entries(&gnu_tar(d, &["--format=pax"])).unwrap();
    assert_eq!(
        find(&es, "old").0.mtime,
        Timestamp::new(-157766400, 123456789)
    );
    assert_eq!(
        find(&es, "future").0.mtime,
        Timestamp::new(4102444800, 500_000_000)
    );
    assert_eq!(find(&es, "neg").0.mtime, Timestamp::new(-157766400, 0));
    assert!(find(&es, "neg").0.atime.is_some());
    // GNU format: negative mtime in base-256, no fractions.
    let es = entries(&gnu_tar(d, &["--format=gnu"])).unwrap();
    assert_eq!(find(&es, "neg").0.mtime, Timestamp::new(-157766400, 0));
    assert_eq!(find(&es, "old").0.mtime, Timestamp::new(-157766400, 0));
    assert_eq!(find(&es, "future").0.mtime, Timestamp::new(4102444800, 0));
}

// ------------------------------------------------------------- sparse

fn sparse_tree(dir: &Path) -> Vec<u8> {
    let mut content = vec![0u8; 3 << 20];
    content[..5].copy_from_slice(b"hello");
    content[1 << 20..(1 << 20) + 3].copy_from_slice(b"mid");
    let n = content.len();
    content[n - 3..].copy_from_slice(b"end");
    let f = fs::File::create(dir.join("sp")).unwrap();
    f.set_len(content.len() as u64).unwrap();
    for (off, len) in [(0, 5), (1 << 20, 3), (n - 3, 3)] {
        f.write_all_at(&content[off..off + len], off as u64)
            .unwrap();
    }
    fs::File::create(dir.join("hole"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    content
}

fn check_sparse(es: &[(Entry, Vec<u8>)], content: &[u8], what: &str) {
    let (e, data) = find(es, "sp");
    assert_eq!(e.size, content.len() as u64, "{what}");
    assert!(e.segments.len() >= 3, "{what}: {:?}", e.segments);
    // Reassemble: segment data in place, zeros elsewhere.
    let mut img = vec![0u8; content.len()];
    let mut at = 0usize;
    for s in &e.segments {
        let (o, l) = (s.offset as usize, s.len as usize);
        img[o..o + l].copy_from_slice(&data[at..at + l]);
        at += l;
    }
    assert_eq!(at, data.len(), "{what}");
    assert!(img == content, "{what}: content differs");
    let (h, hdata) = find(es, "hole");
    assert_eq!(
        (h.size, h.segments.len(), hdata.len()),
        (1 << 30, 0, 0),
        "{what}"
    );
    assert!(es
        .iter()
        .all(|(e, _)| !e.path.starts_with(b"GNUSparseFile")));
}

#[test]
fn sparse_all_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let content = sparse_tree(tmp.path());
    let variants: [&[&str]; 4] = [
        &["--sparse", "--format=gnu"],
        &["--sparse", "--format=pax", "--sparse-version=0.0"],
        &["--sparse", "--format=pax", "--sparse-version=0.1"],
        &["--sparse", "--format=pax", "--sparse-version=1.0"],
    ];
    for args in variants {
        let bytes = gnu_tar(tmp.path(), args);
        let what = args.join(" ");
        let es = entries(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        check_sparse(&es, &content, &what);

        // Same through a plain file: skipping seeks, raw_location points
        // at the stored segment data.
        let path = tmp.path().join("a.tar");
        fs::write(&path, &bytes).unwrap();
        let input = open_input(&path).unwrap();
        assert_eq!(input.compression(), Compression::None);
        let mut rd = TarReader::new(input);
        let mut seen = false;
        while let Some(e) = rd.next_entry().unwrap() {
            if e.path == b"sp" {
                let loc = rd.raw_location().expect("plain file has a raw location");
                assert_eq!(loc.offsets.len(), e.segments.len());
                for (s, off) in e.segments.iter().zip(&loc.offsets) {
                    let mut got = vec![0u8; s.len as usize];
                    loc.file.read_exact_at(&mut got, *off).unwrap();
                    let o = s.offset as usize;
                    assert_eq!(got, content[o..o + got.len()], "{what}");
                }
                rd.mark_consumed();
                let mut b = [0u8; 8];
                assert_eq!(rd.read(&mut b).unwrap(), 0);
                seen = true;
            }
        }
        assert!(seen);
    }
}

#[test]
fn old_gnu_sparse_extension_blocks() {
    // More than 4 segments forces isextended + extension blocks.
    let tmp = tempfile::tempdir().unwrap();
    let f = fs::File::create(tmp.path().join("many")).unwrap();
    let size = 64u64 << 20;
    f.set_len(size).unwrap();
    let mut want = Vec::new();
    for i in 0..30u64 {
        let off = i * (2 << 20);
        f.write_all_at(&[i as u8 + 1; 4096], off).unwrap();
        want.push(off);
    }
    let bytes = gnu_tar(tmp.path(), &["--sparse", "--format=gnu"]);
    assert!(bytes.chunks(512).any(|b| b[156] == b'S' && b[482] == 1));
    let es = entries(&bytes).unwrap();
    let (e, data) = find(&es, "many");
    assert_eq!(e.size, size);
    let offs: Vec<u64> = e.segments.iter().map(|s| s.offset).collect();
    assert_eq!(offs, want);
    assert_eq!(data.len(), 30 * 4096);
    assert_eq!(data[4096 * 29], 30);
}

#[test]
fn sparse_hand_built_errors() {
    let bad = |recs: &[(&[u8], &[u8])], data: &[u8]| {
        let b = cat(&[pax(b'x', recs), member(b"s", b'0', data), end()]);
        entries(&b).unwrap_err()
    };
    // Overlapping segments.
    let e = bad(
        &[
            (b"GNU.sparse.size", b"100"),
            (b"GNU.sparse.map", b"0,10,5,10"),
        ],
        &[0; 20],
    );
    assert!(e.contains("bad sparse file map"), "{e}");
    // Map claims more data than stored.
    let e = bad(
        &[(b"GNU.sparse.size", b"100"), (b"GNU.sparse.map", b"0,50")],
        &[0; 20],
    );
    assert!(e.contains("stores only 20"), "{e}");
    // 1.0 map without an end.
    let e = bad(
        &[
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.realsize", b"9"),
        ],
        &[b'9'; 1024],
    );
    assert!(e.contains("bad sparse file map"), "{e}");
    // Missing real size.
    let e = bad(&[(b"GNU.sparse.map", b"0,5")], &[0; 5]);
    assert!(e.contains("GNU.sparse.size"), "{e}");
}

// -------------------------------------------------- PAX: hand-built cases

#[test]
fn pax_globals_overrides_and_offsets() {
    let g = pax(
        b'g',
        &[(b"uid", b"42"), (b"mtime", b"-1.25"), (b"gid", b"9")],
    );
    let a = member(b"a", b'0', b"AAA");
    let xb = pax(b'x', &[(b"uid", b"7"), (b"path", b"./long/real name")]);
    let b = member(b"b", b'0', b"BB");
    let xc = pax(b'x', &[(b"uid", b""), (b"size", b"600")]);
    let c = member(b"c", b'0', &[5u8; 600]); // header says 600 too
    let bytes = cat(&[
        g.clone(),
        a.clone(),
        xb.clone(),
        b.clone(),
        xc.clone(),
        c,
        end(),
    ]);
    let es = entries(&bytes).unwrap();
    assert_eq!(es.len(), 3);
    let (ea, _) = &es[0];
    assert_eq!((ea.uid, ea.gid), (42, 9));
    assert_eq!(ea.mtime, Timestamp::new(-2, 750_000_000));
    assert_eq!(ea.source_offset, g.len() as u64);
    let (eb, db) = &es[1];
    assert_eq!(
        (eb.path.as_slice(), eb.uid, eb.gid),
        (&b"long/real name"[..], 7, 9)
    );
    assert_eq!(db, b"BB");
    assert_eq!(eb.source_offset, (g.len() + a.len()) as u64);
    let (ec, dc) = &es[2];
    assert_eq!(ec.uid, 1000, "empty value deletes the global");
    assert_eq!(dc.len(), 600);
    assert_eq!(
        ec.source_offset,
        (g.len() + a.len() + xb.len() + b.len()) as u64
    );
}

#[test]
fn pax_size_overrides_header() {
    let x = pax(b'x', &[(b"size", b"700")]);
    let mut h = header(b"big", b'0', 0);
    put_octal(&mut h[124..136], 0);
    fix_checksum(&mut h);
    let mut m = h.to_vec();
    m.extend_from_slice(&[1u8; 700]);
    pad(&mut m);
    let es = entries(&cat(&[x, m, member(b"next", b'0', b"n"), end()])).unwrap();
    assert_eq!((es[0].0.size, es[0].1.len()), (700, 700));
    assert_eq!(es[1].1, b"n");
}

#[test]
fn xattrs_and_acls() {
    let acl = b"user::rwx,user:1234:r-x,group::r-x,mask::r-x,other::r-x";
    let x = pax(
        b'x',
        &[
            (b"SCHILY.xattr.user.bin", b"a\0b\nc"),
            (b"LIBARCHIVE.xattr.user.b64%3D", b"AAEC/w"),
            (b"SCHILY.acl.access", acl),
            (b"SCHILY.acl.default", b""),
            (b"SCHILY.xattr.user.empty", b""),
            (b"uname", b"nobody"),
        ],
    );
    let es = entries(&cat(&[x, member(b"f", b'0', b""), end()])).unwrap();
    let xs = &es[0].0.xattrs;
    assert_eq!(xs[0], (b"user.bin".to_vec(), b"a\0b\nc".to_vec()));
    assert_eq!(xs[1], (b"user.b64=".to_vec(), vec![0, 1, 2, 255]));
    assert_eq!(xs[2], (b"user.empty".to_vec(), vec![]));
    assert_eq!(xs[3].0, b"system.posix_acl_access");
    assert_eq!(xs[3].1.len(), 4 + 5 * 8);
    assert_eq!(&xs[3].1[..4], &2u32.to_le_bytes());
    assert_eq!(xs.len(), 4);

    // The explicit xattr wins over the text ACL.
    let x = pax(
        b'x',
        &[
            (b"SCHILY.acl.access", acl),
            (b"SCHILY.xattr.system.posix_acl_access", b"raw"),
        ],
    );
    let es = entries(&cat(&[x, member(b"f", b'0', b""), end()])).unwrap();
    assert_eq!(
        es[0].0.xattrs,
        vec![(b"system.posix_acl_access".to_vec(), b"raw".to_vec())]
    );

    // Named (non-numeric) ACL entries: error naming the entry.
    let x = pax(
        b'x',
        &[(
            b"SCHILY.acl.default",
            b"user::rwx,user:alice:r,group::r,mask::r,other::r",
        )],
    );
    let e = entries(&cat(&[x, member(b"dir/", b'5', b""), end()])).unwrap_err();
    assert!(e.contains("'dir'") && e.contains("alice"), "{e}");
}

#[test]
fn empty_xattr_names_are_refused_naming_the_entry() {
    for key in [&b"SCHILY.xattr."[..], b"LIBARCHIVE.xattr."] {
        let x = pax(b'x', &[(key, b"dg==")]);
        let e = entries(&cat(&[x, member(b"named", b'0', b""), end()])).unwrap_err();
        assert!(
            e.contains("'named'") && e.contains("empty xattr name"),
            "{e}"
        );
    }
    // In a global header: refused there, before any entry.
    let g = pax(b'g', &[(b"SCHILY.xattr.", b"v")]);
    let e = entries(&cat(&[g, member(b"f", b'0', b""), end()])).unwrap_err();
    assert!(e.contains("empty xattr name"), "{e}");
}

/// 200 000 distinct xattr records on one entry (issue 14: a list searched
/// per record took 117 s in `dibr mkfs`, 1.4 s for 25 000 — quadratic).
/// The bound is generous for a loaded 2-core machine (the parse takes
/// about 0.1 s in release) yet far below quadratic time.
#[test]
fn many_xattr_records_parse_in_linear_time() {
    const N: usize = 200_000;
    let keys: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("SCHILY.xattr.user.k{i:06}").into_bytes())
        .collect();
    let records: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &b"v"[..])).collect();
    let tar = cat(&[pax(b'x', &records), member(b"many", b'0', b""), end()]);
    let start = std::time::Instant::now();
    let es = entries(&tar).unwrap();
    let took = start.elapsed();
    let limit = if cfg!(debug_assertions) { 30.0 } else { 2.0 };
    println!(
        "{N} xattr records: {took:?} ({} KiB of PAX records)",
        tar.len() >> 10
    );
    assert!(
        took.as_secs_f64() <= limit,
        "{N} xattr records took {took:?}"
    );
    let xs = &es[0].0.xattrs;
    assert_eq!(xs.len(), N);
    assert_eq!(xs[N - 1].0, format!("user.k{:06}", N - 1).as_bytes());
}

#[test]
fn gnu_tar_acls_numeric() {
    // Needs setfacl and a filesystem with ACLs; skip quietly otherwise.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), b"x").unwrap();
    let ok = Command::new("setfacl")
        .args(["-m", "u:1234:r-x"])
        .arg(tmp.path().join("f"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("setfacl unavailable, skipping");
        return;
    }
    let bytes = gnu_tar(tmp.path(), &["--format=pax", "--acls"]);
    let es = entries(&bytes).unwrap();
    let (e, _) = find(&es, "f");
    let (_, v) = e
        .xattrs
        .iter()
        .find(|(n, _)| n == b"system.posix_acl_access")
        .unwrap();
    assert!(
        v.windows(8).any(|w| w == [2, 0, 5, 0, 0xd2, 0x04, 0, 0]),
        "{v:?}"
    );
}

#[test]
fn gnu_tar_xattrs_binary() {
    // Needs setfattr and user xattrs on the temp filesystem.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), b"x").unwrap();
    let ok = Command::new("setfattr")
        .args(["-n", "user.test", "-v", "0x00ff0a41"])
        .arg(tmp.path().join("f"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("setfattr unavailable, skipping");
        return;
    }
    let bytes = gnu_tar(tmp.path(), &["--format=pax", "--xattrs"]);
    let es = entries(&bytes).unwrap();
    let (e, _) = find(&es, "f");
    assert_eq!(
        e.xattrs,
        vec![(b"user.test".to_vec(), vec![0, 0xff, b'\n', b'A'])]
    );
}

// ------------------------------------------------------ entry types etc.

#[test]
fn devices_types_and_names() {
    let mut chr = header(b"dev/null", b'3', 0);
    put_octal(&mut chr[329..337], 1);
    put_octal(&mut chr[337..345], 3);
    fix_checksum(&mut chr);
    let mut blk = header(b"dev/sda", b'4', 0);
    put_octal(&mut blk[329..337], 8);
    put_octal(&mut blk[337..345], 0);
    fix_checksum(&mut blk);
    let mut v7dir = header(b"olddir/", 0, 0);
    v7dir[257..265].fill(0);
    fix_checksum(&mut v7dir);
    let bytes = cat(&[
        member(b"./", b'5', b""),
        member(b"vol", b'V', b""),
        chr.to_vec(),
        blk.to_vec(),
        v7dir.to_vec(),
        member(b"/abs/./c", b'7', b"cc"),
        member(b"lnk", b'1', b""),
        member(b"gnu-long", b'L', b"very/long/name\0"),
        member(b"ignored", b'2', b""),
        member(b"K", b'K', b"../target/\0"),
        member(b"sym", b'2', b""),
    ]);
    let es = entries(&cat(&[bytes, end()])).unwrap();
    let kinds: Vec<(String, EntryKind)> = es
        .iter()
        .map(|(e, _)| (e.display_path(), e.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("/".into(), EntryKind::Dir),
            ("dev/null".into(), EntryKind::CharDev { major: 1, minor: 3 }),
            ("dev/sda".into(), EntryKind::BlockDev { major: 8, minor: 0 }),
            ("olddir".into(), EntryKind::Dir),
            ("abs/c".into(), EntryKind::File),
            ("lnk".into(), EntryKind::HardLink(vec![])),
            ("very/long/name".into(), EntryKind::Symlink(vec![])),
            ("sym".into(), EntryKind::Symlink(b"../target/".to_vec())),
        ]
    );
    assert_eq!(es[4].1, b"cc");
    assert_eq!(es[0].0.mode, 0o644);
    assert_eq!((es[0].0.uid, es[0].0.gid), (1000, 1001));
}

#[test]
fn unsupported_types() {
    let e = entries(&cat(&[
        member(b"a", b'0', b""),
        member(b"weird", b'Z', b""),
        end(),
    ]))
    .unwrap_err();
    assert!(
        e.contains("'weird'") && e.contains("byte 512") && e.contains("'Z'"),
        "{e}"
    );
    let e = entries(&cat(&[member(b"cont", b'M', b""), end()])).unwrap_err();
    assert!(e.contains("multi-volume"), "{e}");
    let e = entries(&cat(&[member(b"/", b'0', b"x"), end()])).unwrap_err();
    assert!(e.contains("archive root"), "{e}");
    let e = entries(&cat(&[member(b"../x", b'0', b"x"), end()])).unwrap_err();
    assert!(e.contains("escapes"), "{e}");
}

#[test]
fn numeric_field_errors() {
    let mut h = header(b"f", b'0', 0);
    h[108..116].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 0]); // uid 2^32
    fix_checksum(&mut h);
    let e = entries(&cat(&[h.to_vec(), end()])).unwrap_err();
    assert!(e.contains("bad uid"), "{e}");
    let mut h = header(b"f", b'0', 0);
    h[100..108].copy_from_slice(b"06x4\0\0\0\0");
    fix_checksum(&mut h);
    let e = entries(&cat(&[h.to_vec(), end()])).unwrap_err();
    assert!(e.contains("bad mode"), "{e}");
    // Base-256 uid that fits.
    let mut h = header(b"f", b'0', 0);
    h[108..116].copy_from_slice(&[0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe]);
    fix_checksum(&mut h);
    assert_eq!(
        entries(&cat(&[h.to_vec(), end()])).unwrap()[0].0.uid,
        0xffff_fffe
    );
    // PAX uid too large.
    let x = pax(b'x', &[(b"gid", b"4294967296")]);
    let e = entries(&cat(&[x, member(b"f", b'0', b""), end()])).unwrap_err();
    assert!(e.contains("bad PAX") && e.contains("gid"), "{e}");
}

#[test]
fn oversized_extension_headers_are_refused() {
    let mut h = header(b"PaxHeaders/x", b'x', 0);
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff]);
    fix_checksum(&mut h);
    let e = entries(&cat(&[h.to_vec(), end()])).unwrap_err();
    assert!(e.contains("limit"), "{e}");
    let mut h = header(b"././@LongLink", b'L', 0);
    put_octal(&mut h[124..136], 0o77777777777);
    fix_checksum(&mut h);
    assert!(entries(&h).unwrap_err().contains("limit"));
}

// ------------------------------------------------- end, truncation, junk

#[test]
fn end_of_archive_variants() {
    let body = cat(&[member(b"a", b'0', b"1"), member(b"b", b'0', b"22")]);
    for tail in [vec![], vec![0u8; 512], vec![0u8; 1024], vec![0u8; 10240]] {
        let es = entries(&cat(&[body.clone(), tail])).unwrap();
        assert_eq!(es.len(), 2);
    }
    assert_eq!(entries(b"").unwrap().len(), 0);
    // After the end the reader keeps returning None.
    let bytes = cat(&[body.clone(), end()]);
    let mut rd = TarReader::new(Cursor::new(&bytes[..]));
    read_all(&mut rd).unwrap();
    assert!(rd.next_entry().unwrap().is_none());
}

#[test]
fn truncation_is_an_error_with_path_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("data"), vec![1u8; 4096]).unwrap();
    let bytes = gnu_tar(tmp.path(), &["--format=gnu"]);
    // Layout: "./" header at 0, "./data" header at 512, data 1024..5120.
    let e = entries(&bytes[..3000]).unwrap_err();
    assert_eq!(
        e,
        "tar entry 'data' at byte 512: truncated in file data (expected 4096 bytes, archive ended after 1976)"
    );
    let e = entries(&bytes[..700]).unwrap_err();
    assert!(
        e.contains("byte 512") && e.contains("truncated header"),
        "{e}"
    );
    // Truncated in the padding.
    let mut b = cat(&[member(b"x", b'0', b"abc")]);
    b.truncate(600);
    let e = entries(&b).unwrap_err();
    assert!(e.contains("'x'") && e.contains("padding"), "{e}");
    // Truncated extension header data.
    let x = pax(b'x', &[(b"path", b"p")]);
    let e = entries(&x[..520]).unwrap_err();
    assert!(e.contains("PAX extended header"), "{e}");
    // Extension header then EOF.
    let e = entries(&member(b"L", b'L', b"name\0")).unwrap_err();
    assert!(e.contains("'name'") && e.contains("not followed"), "{e}");
    // Skipping through a plain file (seek path) still detects it.
    let path = tmp.path().join("t.tar");
    fs::write(&path, &bytes[..3000]).unwrap();
    let mut rd = TarReader::new(open_input(&path).unwrap());
    rd.next_entry().unwrap();
    rd.next_entry().unwrap();
    let e = rd.next_entry().unwrap_err().to_string();
    assert!(e.contains("truncated in file data"), "{e}");
    // And reading the data reports it as UnexpectedEof.
    let mut rd = TarReader::new(Cursor::new(&bytes[..3000]));
    rd.next_entry().unwrap();
    rd.next_entry().unwrap();
    let mut buf = vec![0u8; 8192];
    let mut err = None;
    for _ in 0..10 {
        match rd.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("read must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("'data'"), "{err}");
}

#[test]
fn checksum_errors() {
    let e = entries(&[b'x'; 2048]).unwrap_err();
    assert!(
        e.contains("byte 0") && e.contains("not a tar archive?"),
        "{e}"
    );
    let mut b = cat(&[member(b"a", b'0', b"1"), member(b"b", b'0', b"2"), end()]);
    b[1024 + 10] ^= 1;
    let e = entries(&b).unwrap_err();
    assert!(
        e.contains("byte 1024") && e.contains("checksum") && !e.contains("not a tar"),
        "{e}"
    );
}

#[test]
fn partial_reads_mark_consumed_and_skips() {
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    let bytes = cat(&[
        member(b"big", b'0', &data),
        member(b"small", b'0', b"s"),
        member(b"big2", b'0', &data),
        member(b"last", b'0', b"L"),
        end(),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.tar");
    fs::write(&path, &bytes).unwrap();
    // Over a cursor (read path) and over a plain file (seek path).
    let check = |rd: &mut dyn FnMut() -> Option<Entry>, fd: &mut dyn FnMut(&mut [u8]) -> usize| {
        let e = rd().unwrap();
        assert_eq!(e.path, b"big");
        let mut b = [0u8; 10];
        assert_eq!(fd(&mut b), 10);
        assert_eq!(b[..], data[..10]);
        let e = rd().unwrap();
        assert_eq!(e.path, b"small");
        let e = rd().unwrap(); // skip small without reading
        assert_eq!(e.path, b"big2");
        let e = rd().unwrap();
        assert_eq!(e.path, b"last");
        assert_eq!(fd(&mut b), 1);
        assert!(rd().is_none());
    };
    let mut rd = TarReader::new(Cursor::new(&bytes[..]));
    {
        let cell = std::cell::RefCell::new(&mut rd);
        check(&mut || cell.borrow_mut().next_entry().unwrap(), &mut |b| {
            cell.borrow_mut().read(b).unwrap()
        });
    }
    let mut rd = TarReader::new(open_input(&path).unwrap());
    {
        let cell = std::cell::RefCell::new(&mut rd);
        check(&mut || cell.borrow_mut().next_entry().unwrap(), &mut |b| {
            cell.borrow_mut().read(b).unwrap()
        });
    }
    // raw_location + mark_consumed after a partial read.
    let mut rd = TarReader::new(open_input(&path).unwrap());
    rd.next_entry().unwrap();
    let mut b = [0u8; 100];
    rd.read(&mut b).unwrap();
    let loc = rd.raw_location().unwrap();
    assert_eq!(loc.offsets, vec![512]);
    let mut got = vec![0u8; data.len()];
    loc.file.read_exact_at(&mut got, 512).unwrap();
    assert!(got == data);
    rd.mark_consumed();
    assert_eq!(rd.read(&mut b).unwrap(), 0);
    let e = rd.next_entry().unwrap().unwrap();
    assert_eq!(e.path, b"small");
    assert_eq!(
        rd.raw_location().unwrap().offsets,
        vec![512 + 700_416 + 512]
    );
    // Cursor input has no raw location.
    let mut rd = TarReader::new(Cursor::new(&bytes[..]));
    rd.next_entry().unwrap();
    assert!(rd.raw_location().is_none());
}

#[test]
fn compressed_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    sample_tree(tmp.path(), true);
    let bytes = gnu_tar(tmp.path(), &["--format=pax"]);
    let plain = entries(&bytes).unwrap();
    let gz = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        enc.finish().unwrap()
    };
    let zst = zstd::encode_all(&bytes[..], 1).unwrap();
    // xz and bzip2 go through the host tools (as distributions publish
    // their root filesystems): compress with the same tools.
    let tool = |t: &str| {
        let mut c = std::process::Command::new(t)
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut sin = c.stdin.take().unwrap();
        let data = bytes.clone();
        let w = std::thread::spawn(move || {
            use std::io::Write;
            sin.write_all(&data).unwrap();
        });
        let o = c.wait_with_output().unwrap();
        w.join().unwrap();
        o.stdout
    };
    let xz = tool("xz");
    let bz = tool("bzip2");
    // A damaged xz stream is an error, not a short archive.
    let mut bad = xz.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(tmp.path().join("bad.tar.xz"), &bad).unwrap();
    let mut rd = TarReader::new(open_input(&tmp.path().join("bad.tar.xz")).unwrap());
    assert!(read_all(&mut rd).is_err(), "corrupt xz read without error");
    for (name, data, want) in [
        ("t.tar.gz", gz, Compression::Gzip),
        ("t.tzst", zst, Compression::Zstd),
        ("t.tar.xz", xz, Compression::Xz),
        ("t.tar.bz2", bz, Compression::Bzip2),
        ("t.tar", bytes.clone(), Compression::None),
    ] {
        let path = tmp.path().join(name);
        fs::write(&path, data).unwrap();
        let input = open_input(&path).unwrap();
        assert_eq!(input.compression(), want);
        let mut rd = TarReader::new(input);
        let es = read_all(&mut rd).unwrap();
        assert_eq!(es, plain, "{name}");
    }
    // Raw location only for the plain file.
    let mut rd = TarReader::new(open_input(&tmp.path().join("t.tar.gz")).unwrap());
    while let Some(e) = rd.next_entry().unwrap() {
        if e.kind == EntryKind::File {
            assert!(rd.raw_location().is_none());
        }
    }
    let e = open_input(&tmp.path().join("missing"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

// ---------------------------------------------------------- robustness

#[test]
fn mutated_archives_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    fs::write(d.join("a"), b"some data").unwrap();
    let f = fs::File::create(d.join("sp")).unwrap();
    f.set_len(1 << 20).unwrap();
    f.write_all_at(b"x", 600_000).unwrap();
    std::os::unix::fs::symlink("a", d.join("l")).unwrap();
    let mut seeds = vec![
        gnu_tar(d, &["--format=pax", "--sparse", "--sparse-version=1.0"]),
        gnu_tar(d, &["--format=pax", "--sparse", "--sparse-version=0.1"]),
        gnu_tar(d, &["--format=gnu", "--sparse"]),
    ];
    seeds.push(cat(&[
        pax(b'g', &[(b"uid", b"1")]),
        pax(
            b'x',
            &[
                (b"SCHILY.acl.access", b"u::rwx,g::r,o::r"),
                (b"LIBARCHIVE.xattr.a", b"YQ"),
            ],
        ),
        member(b"f", b'0', b"abc"),
        end(),
    ]));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 4096];
    for i in 0..3000 {
        let mut m = seeds[i % seeds.len()].clone();
        // Trim the long zero tails so mutations hit the interesting part.
        let keep = m.len().min(8192);
        m.truncate(keep);
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(m.len());
            match rng.below(4) {
                0 => m[at] = rng.next() as u8,
                1 => m[at] = b"0123456789 \0\n=x"[rng.below(15)],
                2 => m.truncate(at),
                _ => m[at] ^= 0x80,
            }
            if m.is_empty() {
                break;
            }
        }
        // Mutations mostly break checksums; fix them half the time so the
        // parser past the checksum gets exercised.
        if i % 2 == 0 {
            for blk in m.chunks_mut(512) {
                if let Ok(b) = <&mut Block>::try_from(blk) {
                    if b[257..262] == *b"ustar" {
                        fix_checksum(b);
                    }
                }
            }
        }
        let mut rd = TarReader::new(Cursor::new(&m[..]));
        for _ in 0..100 {
            match rd.next_entry() {
                Ok(Some(_)) => while let Ok(1..) = rd.read(&mut buf) {},
                _ => break,
            }
        }
    }
}

/// Throughput check, run by hand:
/// `DIBR_BENCH_TAR=/path/x.tar cargo test --release --lib tarstream::tests::bench -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_read_all() {
    let Some(path) = std::env::var_os("DIBR_BENCH_TAR") else {
        return;
    };
    let mut buf = vec![0u8; 1 << 20];
    for mode in ["read", "raw"] {
        let t = std::time::Instant::now();
        let mut rd = TarReader::new(open_input(Path::new(&path)).unwrap());
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(e) = rd.next_entry().unwrap() {
            n += 1;
            if mode == "raw" && rd.raw_location().is_some() {
                rd.mark_consumed();
                bytes += e.size;
                continue;
            }
            loop {
                let k = rd.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                bytes += k as u64;
            }
        }
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "{mode}: {n} entries, {bytes} bytes in {s:.3}s = {:.0} MB/s",
            bytes as f64 / s / 1e6
        );
    }
}
