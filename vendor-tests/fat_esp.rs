//! The FAT32 ESP writer (`dibr::fat::write_fat32`) judged by the real tools:
//! `fsck.fat -n -v` (dosfstools) must find nothing, and mtools must read back
//! exactly the files written, from the partition offset inside a larger image.

mod common;
use common::*;

use dibr::fat::{write_fat32, FatEntry, FatError, FatOptions, FatStats};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const TOOLS: &[&str] = &["fsck.fat", "mcopy", "mdir", "dd"];

/// What the volume should hold: path -> Some(content) for files, None for dirs.
type Expect = BTreeMap<String, Option<Vec<u8>>>;

/// A byte pattern that depends on the position, so a shifted or zeroed
/// range is noticed.
fn pattern(pos: u64) -> u8 {
    (pos.wrapping_mul(2_654_435_761) >> 7) as u8 | 1
}

/// Creates a sparse image of `len` bytes whose bytes outside
/// `[offset, offset + size)` are a pattern; inside the region a few MiB of
/// garbage (the writer must clear them).
fn make_image(path: &Path, len: u64, offset: u64, size: u64) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(len).unwrap();
    let fill = |from: u64, to: u64| {
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(MIB);
            let buf: Vec<u8> = (pos..pos + n).map(pattern).collect();
            f.write_all_at(&buf, pos).unwrap();
            pos += n;
        }
    };
    fill(0, offset);
    fill(offset + size, len);
    fill(offset, offset + MIB.min(size)); // garbage over the boot sector and FATs
    fill(offset + size - MIB.min(size), offset + size); // and at the end of the region
    f
}

fn check_outside(path: &Path, offset: u64, size: u64) {
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    for (from, to) in [(0, offset), (offset + size, len)] {
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(MIB);
            let mut buf = vec![0u8; n as usize];
            f.read_exact_at(&mut buf, pos).unwrap();
            for (i, b) in buf.iter().enumerate() {
                let p = pos + i as u64;
                assert_eq!(
                    *b,
                    pattern(p),
                    "byte {p} outside the FAT region was changed"
                );
            }
            pos += n;
        }
    }
}

/// fsck.fat -n -v exits 0 and reports nothing but its usual summary; returns
/// its output.
fn fsck_clean(esp: &Path, stats: &FatStats) -> String {
    let o = run(Command::new(tool("fsck.fat")).arg("-n").arg("-v").arg(esp));
    let text = out_text(&o);
    assert!(o.status.success(), "fsck.fat -n -v failed\n{text}");
    let lower = text.to_lowercase();
    for bad in [
        "dirty bit",
        "differ",
        "uninitialized",
        "wrong",
        "bad ",
        "expected",
        "invalid",
        "renamed",
        "truncat",
        "delet",
        "contains",
        "share clusters",
        "mismatch",
        "warning",
        "not ",
    ] {
        assert!(
            !lower.contains(bad),
            "fsck.fat -n -v reported {bad:?}\n{text}"
        );
    }
    let summary = format!(
        "{}/{} clusters",
        stats.clusters_used, stats.layout.cluster_count
    );
    assert!(
        text.contains(&summary),
        "fsck.fat summary is not {summary:?}\n{text}"
    );
    assert!(text.contains("32 bit entries"), "not FAT32\n{text}");
    text
}

fn mtools_env(c: &mut Command) -> &mut Command {
    c.env("MTOOLS_SKIP_CHECK", "1")
        .env("LC_ALL", "C.UTF-8")
        .env("MTOOLSRC", "/dev/null")
}

/// Reads the whole volume back with `mcopy -s` and compares it with `want`.
fn mtools_readback(img: &Path, offset: u64, want: &Expect, scratch: &Path) {
    let out = scratch.join("readback");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).unwrap();
    let spec = format!("{}@@{offset}", img.display());
    let listing = run_ok(
        mtools_env(&mut Command::new(tool("mdir")))
            .arg("-/")
            .arg("-a")
            .arg("-i")
            .arg(&spec)
            .arg("::/"),
    );
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    run_ok(
        mtools_env(&mut Command::new(tool("mcopy")))
            .arg("-s")
            .arg("-n")
            .arg("-p")
            .arg("-m")
            .arg("-i")
            .arg(&spec)
            .arg("::/*")
            .arg(&out),
    );
    let mut got = Expect::new();
    fn walk(base: &Path, dir: &Path, got: &mut Expect) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
            if e.file_type().unwrap().is_dir() {
                got.insert(rel, None);
                walk(base, &p, got);
            } else {
                got.insert(rel, Some(fs::read(&p).unwrap()));
            }
        }
    }
    walk(&out, &out, &mut got);
    let names = |m: &Expect| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&got),
        names(want),
        "mcopy -s read back other names\nmdir -/:\n{listing}"
    );
    for (k, v) in want {
        assert!(got[k] == *v, "{k}: content read back by mcopy differs");
    }
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..]).unwrap();
        if k == 0 {
            break;
        }
        n += k;
    }
    n
}

/// The ESP content of the big test: nested dirs, long names, a 0-byte file,
/// a 1 MiB file from disk, 200 small files, an empty directory.
struct Content {
    big: PathBuf,
    big_data: Vec<u8>,
    small: Vec<(String, Vec<u8>)>,
}

impl Content {
    fn new(dir: &Path) -> Content {
        let big_data: Vec<u8> = (0..MIB).map(|i| (i * 7 + i / 4096) as u8).collect();
        let big = dir.join("grubx64.efi");
        fs::write(&big, &big_data).unwrap();
        let small = (0..200)
            .map(|i| {
                (
                    format!("EFI/many/Small file number {i}.txt"),
                    format!("file {i}\n").repeat(i + 1).into_bytes(),
                )
            })
            .collect();
        Content {
            big,
            big_data,
            small,
        }
    }

    fn entries(&self) -> Vec<FatEntry<'_>> {
        let mut v = vec![
            FatEntry::dir("EFI"),
            FatEntry::dir("EFI/BOOT"),
            FatEntry::bytes("EFI/BOOT/BOOTX64.EFI", b"MZ fake shim\x00\x01\x02"),
            FatEntry::file("EFI/debian/grubx64.efi", &self.big),
            FatEntry::bytes("EFI/debian/grub.cfg", b"search.fs_uuid 1234 root\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n"),
            FatEntry::bytes("EFI/debian/BOOTX64.CSV", b""),
            FatEntry::bytes("loader/entries/Debian GNU Linux 6.1.0-13-amd64 (long name).conf", b"title Debian\nlinux /vmlinuz\n"),
            FatEntry::bytes("loader/loader.conf", b"timeout 3\n"),
            FatEntry::bytes("loader/a.b.c.d", b"dots"),
            FatEntry::bytes("Mixed Case Dir/Ünïcode ñame.txt", "héllo wörld\n".as_bytes()),
            FatEntry::dir("empty/dir"),
        ];
        v.extend(self.small.iter().map(|(p, d)| FatEntry::bytes(p, d)));
        v
    }

    fn expect(&self) -> Expect {
        let mut m = Expect::new();
        for e in self.entries() {
            let comps: Vec<&str> = e.path.split('/').collect();
            for i in 1..comps.len() {
                m.insert(comps[..i].join("/"), None);
            }
            let v = match e.kind {
                dibr::fat::FatKind::Dir => None,
                dibr::fat::FatKind::File(dibr::fat::FatSource::Bytes(b)) => Some(b.to_vec()),
                dibr::fat::FatKind::File(dibr::fat::FatSource::Path(_)) => {
                    Some(self.big_data.clone())
                }
            };
            m.insert(e.path.to_string(), v);
        }
        m
    }
}

fn opts(seed: u64) -> FatOptions {
    FatOptions {
        label: "ESP".into(),
        volume_id_seed: seed,
        timestamp: 1_700_000_000,
    }
}

#[test]
fn esp_550m_in_image_is_fsck_clean_and_reads_back() {
    let name = "esp_550m_in_image_is_fsck_clean_and_reads_back";
    if !require(name, false, TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let content = Content::new(tmp.path());
    let (offset, size, len) = (MIB, 550 * MIB, 560 * MIB);
    let img = tmp.path().join("disk.img");
    let f = make_image(&img, len, offset, size);
    let stats = write_fat32(&f, offset, size, &content.entries(), &opts(42)).unwrap();
    drop(f);
    assert_eq!(stats.cluster_bytes, 4096);
    assert_eq!(stats.files, 208);
    assert_eq!(stats.dirs, 9);
    check_outside(&img, offset, size);

    let esp = tmp.path().join("esp.img");
    extract(&img, &esp, offset, size);
    let text = fsck_clean(&esp, &stats);
    assert!(
        text.contains(&format!("{} hidden sectors", offset / 512)),
        "{text}"
    );
    mtools_readback(&img, offset, &content.expect(), tmp.path());

    // Label and volume id as mtools sees them.
    let spec = format!("{}@@{offset}", img.display());
    let o = run_ok(
        mtools_env(&mut Command::new(tool("mdir")))
            .arg("-i")
            .arg(&spec)
            .arg("::/"),
    );
    let s = String::from_utf8_lossy(&o.stdout);
    println!("{text}\n{s}");
    assert!(s.contains("Volume in drive : is ESP"), "{s}");
    // Every timestamp is the one given (2023-11-14 22:13:20 UTC).
    let o = run_ok(
        mtools_env(&mut Command::new(tool("mdir")))
            .arg("-i")
            .arg(&spec)
            .arg("::/EFI/debian"),
    );
    let d = String::from_utf8_lossy(&o.stdout);
    println!("{d}");
    assert!(
        d.contains("2023-11-14  22:13") || d.contains("11-14-2023  22:13"),
        "{d}"
    );
    let id = format!(
        "{:04X}-{:04X}",
        stats.volume_id >> 16,
        stats.volume_id & 0xFFFF
    );
    assert!(s.contains(&id), "volume id {id} not in\n{s}");

    // Same input, same seed and time: byte-identical image; another seed
    // changes the volume id only.
    let img2 = tmp.path().join("disk2.img");
    let f2 = make_image(&img2, len, offset, size);
    write_fat32(&f2, offset, size, &content.entries(), &opts(42)).unwrap();
    drop(f2);
    assert!(
        same_bytes(&img, &img2),
        "two runs with the same options differ"
    );
    let f3 = OpenOptions::new().write(true).open(&img2).unwrap();
    let s3 = write_fat32(&f3, offset, size, &content.entries(), &opts(43)).unwrap();
    assert_ne!(s3.volume_id, stats.volume_id);
}

#[test]
fn smallest_fat32_volumes() {
    let name = "smallest_fat32_volumes";
    if !require(name, false, TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for size in [33 * MIB, dibr::fat::Layout::min_size()] {
        let offset = 2048 * 512;
        let img = tmp.path().join("small.img");
        let f = make_image(&img, offset + size + MIB, offset, size);
        let data = vec![0x5Au8; 100_000];
        let entries = [
            FatEntry::bytes("EFI/BOOT/BOOTX64.EFI", &data),
            FatEntry::bytes("EFI/BOOT/a long name.cfg", b"x"),
        ];
        let o = FatOptions {
            label: String::new(),
            ..opts(1)
        };
        let stats = write_fat32(&f, offset, size, &entries, &o).unwrap();
        drop(f);
        assert_eq!(stats.cluster_bytes, 512, "size {size}");
        assert!(stats.layout.cluster_count >= 65_525);
        check_outside(&img, offset, size);
        let esp = tmp.path().join("small-esp.img");
        extract(&img, &esp, offset, size);
        fsck_clean(&esp, &stats);
        let mut want = Expect::new();
        want.insert("EFI".into(), None);
        want.insert("EFI/BOOT".into(), None);
        want.insert("EFI/BOOT/BOOTX64.EFI".into(), Some(data.clone()));
        want.insert("EFI/BOOT/a long name.cfg".into(), Some(b"x".to_vec()));
        mtools_readback(&img, offset, &want, tmp.path());
    }

    // A volume filled to the last cluster; one byte more does not fit.
    let size = 33 * MIB;
    let layout = dibr::fat::Layout::compute(size).unwrap();
    let img = tmp.path().join("full.img");
    let f = make_image(&img, size, 0, size);
    let fill = ((u64::from(layout.cluster_count) - 1) * 512) as usize; // root takes one cluster
    let data: Vec<u8> = (0..fill + 1).map(|i| (i % 251) as u8).collect();
    let o = FatOptions {
        label: String::new(),
        ..opts(1)
    };
    let e = write_fat32(&f, 0, size, &[FatEntry::bytes("full.bin", &data)], &o).unwrap_err();
    assert!(
        matches!(e, FatError::DoesNotFit { .. }) && e.to_string().contains("full.bin"),
        "{e}"
    );
    let stats = write_fat32(
        &f,
        0,
        size,
        &[FatEntry::bytes("full.bin", &data[..fill])],
        &o,
    )
    .unwrap();
    drop(f);
    assert_eq!(stats.clusters_free, 0);
    fsck_clean(&img, &stats);
    let mut want = Expect::new();
    want.insert("full.bin".into(), Some(data[..fill].to_vec()));
    mtools_readback(&img, 0, &want, tmp.path());
}

#[test]
fn errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("e.img");
    let f = make_image(&img, 40 * MIB, MIB, 34 * MIB);
    let o = opts(0);

    // Too small for FAT32.
    let e = write_fat32(&f, MIB, 32 * MIB, &[], &o).unwrap_err();
    assert!(matches!(e, FatError::TooSmall { .. }), "{e}");
    assert!(e.to_string().contains("too small"), "{e}");

    // Content that does not fit names the file.
    let big = vec![1u8; 40 << 20];
    let e = write_fat32(
        &f,
        MIB,
        34 * MIB,
        &[FatEntry::bytes("EFI/Linux/huge.efi", &big)],
        &o,
    )
    .unwrap_err();
    assert!(matches!(e, FatError::DoesNotFit { .. }), "{e}");
    assert!(e.to_string().contains("EFI/Linux/huge.efi"), "{e}");

    // Names FAT cannot hold.
    for bad in [
        "EFI/a:b",
        "EFI/what?",
        "EFI/trailing.",
        "EFI/../x",
        &"n".repeat(256),
    ] {
        let e = write_fat32(&f, MIB, 34 * MIB, &[FatEntry::bytes(bad, b"")], &o).unwrap_err();
        assert!(matches!(e, FatError::InvalidName { .. }), "{bad}: {e}");
        assert!(e.to_string().contains("invalid for FAT"), "{e}");
    }
    // Case-insensitive collisions and files used as directories.
    let e = write_fat32(
        &f,
        MIB,
        34 * MIB,
        &[
            FatEntry::bytes("EFI/grub.cfg", b""),
            FatEntry::bytes("efi/GRUB.CFG", b""),
        ],
        &o,
    )
    .unwrap_err();
    assert!(matches!(e, FatError::Collision { .. }), "{e}");
    let e = write_fat32(
        &f,
        MIB,
        34 * MIB,
        &[FatEntry::bytes("EFI", b""), FatEntry::bytes("EFI/x", b"")],
        &o,
    )
    .unwrap_err();
    assert!(matches!(e, FatError::NotADirectory { .. }), "{e}");
    assert!(e.to_string().contains("EFI/x"), "{e}");
    // A missing source file names both paths.
    let e = write_fat32(
        &f,
        MIB,
        34 * MIB,
        &[FatEntry::file("EFI/x.efi", Path::new("/nonexistent/x"))],
        &o,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("EFI/x.efi") && e.to_string().contains("/nonexistent/x"),
        "{e}"
    );
    // Bad label, misaligned offset.
    let e = write_fat32(
        &f,
        MIB,
        34 * MIB,
        &[],
        &FatOptions {
            label: "far too long label".into(),
            ..opts(0)
        },
    )
    .unwrap_err();
    assert!(matches!(e, FatError::InvalidLabel { .. }), "{e}");
    let e = write_fat32(&f, 100, 34 * MIB, &[], &o).unwrap_err();
    assert!(matches!(e, FatError::Misaligned { .. }), "{e}");
    // Failed plans wrote nothing.
    drop(f);
    check_outside(&img, MIB, 34 * MIB);
    let f = File::open(&img).unwrap();
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, MIB).unwrap();
    assert_eq!(b[0], pattern(MIB), "a failed plan touched the region");
}
