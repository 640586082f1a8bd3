//! Partition tables written by `dibr::disk` judged by util-linux (partx,
//! sfdisk) and gdisk (sgdisk): the MBR cases re-create diskimage-builder's
//! `block_device/tests/test_mbr.py` row for row; the GPT cases are DIB's
//! default layouts (block-device-gpt, block-device-efi) and `gpt_efi.yaml`.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use dibr::disk::gpt::{self, Geometry, GptPartition, GuidSource};
use dibr::disk::mbr::{MbrWriter, TYPE_LINUX};
use dibr::disk::read::{read_gpt, read_mbr};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const SIZE_10M: u64 = 10 * MIB;

fn sparse_image(dir: &Path, size: u64) -> PathBuf {
    let p = dir.join("image.raw");
    File::create(&p).unwrap().set_len(size).unwrap();
    p
}

fn run(tool: &str, args: &[&str], img: &Path) -> String {
    let out = Command::new(common::tool(tool))
        .args(args)
        .arg(img)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// DIB's test_mbr.py: `partx --raw --output NR,START,END,TYPE,FLAGS,SCHEME -g -b -`.
fn partx(img: &Path) -> String {
    run(
        "partx",
        &[
            "--raw",
            "--output",
            "NR,START,END,TYPE,FLAGS,SCHEME",
            "-g",
            "-b",
            "-",
        ],
        img,
    )
}

/// Writes an MBR (1 GiB disk, 1 MiB alignment) with partitions given as
/// (primary, boot, size, type) and returns partx's rows.
fn mbr_case(test: &str, parts: &[(bool, bool, u64, u8)]) -> Option<String> {
    if !common::require(test, false, &["partx"]) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_image(dir.path(), GIB);
    let f = File::options().read(true).write(true).open(&img).unwrap();
    let mut w = MbrWriter::new(f, GIB, MIB, 0x1234_5678).unwrap();
    for &(primary, boot, size, ptype) in parts {
        w.add_partition(primary, boot, size, ptype).unwrap();
    }
    let (_, placed) = w.finish().unwrap();
    // Our own reader agrees with what the writer reports.
    let read = read_mbr(&mut File::open(&img).unwrap()).unwrap();
    let logical: Vec<_> = read
        .iter()
        .filter(|p| !matches!(p.ptype, 0x05 | 0x0f))
        .map(|p| (p.number, p.start, p.sectors, p.ptype, p.boot))
        .collect();
    let want: Vec<_> = placed
        .iter()
        .map(|p| (p.number, p.start, p.sectors, p.ptype, p.boot))
        .collect();
    assert_eq!(logical, want);
    Some(partx(&img))
}

#[test]
fn mbr_zero_partitions() {
    if let Some(out) = mbr_case("mbr_zero_partitions", &[]) {
        assert_eq!(out, "");
    }
}

#[test]
fn mbr_one_ext_partition() {
    if let Some(out) = mbr_case(
        "mbr_one_ext_partition",
        &[(false, false, SIZE_10M, TYPE_LINUX)],
    ) {
        assert_eq!(
            out,
            "1 2048 2097151 0xf 0x0 dos\n5 4096 24575 0x83 0x0 dos\n"
        );
    }
}

#[test]
fn mbr_many_ext_partitions() {
    let parts = vec![(false, false, SIZE_10M, TYPE_LINUX); 64];
    let Some(out) = mbr_case("mbr_many_ext_partitions", &parts) else {
        return;
    };
    let lines: Vec<&str> = out.split('\n').collect();
    assert_eq!(lines.len(), 66);
    assert_eq!(lines[0], "1 2048 2097151 0xf 0x0 dos");
    let mut start = 4096u64;
    for nr in 1..65u64 {
        let end = start + SIZE_10M / 512 - 1;
        assert_eq!(
            lines[nr as usize],
            format!("{} {start} {end} 0x83 0x0 dos", nr + 4)
        );
        start += 22528;
    }
}

#[test]
fn mbr_one_pri_partition() {
    if let Some(out) = mbr_case(
        "mbr_one_pri_partition",
        &[(true, false, SIZE_10M, TYPE_LINUX)],
    ) {
        assert_eq!(out, "1 2048 22527 0x83 0x0 dos\n");
    }
}

#[test]
fn mbr_three_pri_partitions() {
    let parts = vec![(true, false, SIZE_10M, TYPE_LINUX); 3];
    if let Some(out) = mbr_case("mbr_three_pri_partitions", &parts) {
        assert_eq!(
            out,
            "1 2048 22527 0x83 0x0 dos\n2 22528 43007 0x83 0x0 dos\n3 43008 63487 0x83 0x0 dos\n"
        );
    }
}

#[test]
fn mbr_many_pri_and_ext_partitions() {
    let mut parts = vec![(true, false, SIZE_10M, TYPE_LINUX); 3];
    parts.extend(vec![(false, false, SIZE_10M, TYPE_LINUX); 7]);
    if let Some(out) = mbr_case("mbr_many_pri_and_ext_partitions", &parts) {
        assert_eq!(
            out,
            "1 2048 22527 0x83 0x0 dos\n\
             2 22528 43007 0x83 0x0 dos\n\
             3 43008 63487 0x83 0x0 dos\n\
             4 63488 2097151 0xf 0x0 dos\n\
             5 65536 86015 0x83 0x0 dos\n\
             6 88064 108543 0x83 0x0 dos\n\
             7 110592 131071 0x83 0x0 dos\n\
             8 133120 153599 0x83 0x0 dos\n\
             9 155648 176127 0x83 0x0 dos\n\
             10 178176 198655 0x83 0x0 dos\n\
             11 200704 221183 0x83 0x0 dos\n"
        );
    }
}

#[test]
fn mbr_pri_fat32_lba_partition() {
    if let Some(out) = mbr_case(
        "mbr_pri_fat32_lba_partition",
        &[(true, false, SIZE_10M, 0x0c)],
    ) {
        assert_eq!(out, "1 2048 22527 0xc 0x0 dos\n");
    }
}

#[test]
fn mbr_boot_flag_and_sfdisk() {
    let test = "mbr_boot_flag_and_sfdisk";
    if !common::require(test, false, &["partx", "sfdisk"]) {
        return;
    }
    let Some(out) = mbr_case(
        test,
        &[
            (true, true, SIZE_10M, TYPE_LINUX),
            (false, false, SIZE_10M, 0x82),
        ],
    ) else {
        return;
    };
    assert_eq!(
        out,
        "1 2048 22527 0x83 0x80 dos\n2 22528 2097151 0xf 0x0 dos\n5 24576 45055 0x82 0x0 dos\n"
    );
    // sfdisk reads the same table (and the disk id) without complaint.
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_image(dir.path(), GIB);
    let f = File::options().write(true).open(&img).unwrap();
    let mut w = MbrWriter::new(f, GIB, MIB, 0xdeadbeef).unwrap();
    w.add_partition(true, true, 100 * MIB, TYPE_LINUX).unwrap();
    w.finish().unwrap();
    let dump = run("sfdisk", &["--dump"], &img);
    assert!(dump.contains("label: dos"), "{dump}");
    assert!(dump.contains("label-id: 0xdeadbeef"), "{dump}");
    assert!(
        dump.contains("start=        2048, size=      204800, type=83, bootable"),
        "{dump}"
    );
}

/// `sgdisk -p` rows: (number, start, end, code, name).
fn sgdisk_rows(img: &Path) -> Vec<(u32, u64, u64, String, String)> {
    let out = run("sgdisk", &["-p"], img);
    let mut rows = Vec::new();
    let mut table = false;
    for line in out.lines() {
        if line.starts_with("Number") {
            table = true;
            continue;
        }
        if !table || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        rows.push((
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[5].to_string(),
            f[6..].join(" "),
        ));
    }
    rows
}

fn sgdisk_verify(img: &Path) {
    let out = run("sgdisk", &["-v"], img);
    assert!(out.contains("No problems found"), "sgdisk -v: {out}");
}

/// Writes a GPT on a sparse `disk` with partitions (name, code, MiB).
fn gpt_case(
    test: &str,
    disk: u64,
    parts: &[(&str, &str, u64)],
) -> Option<(tempfile::TempDir, PathBuf)> {
    if !common::require(test, false, &["sgdisk"]) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_image(dir.path(), disk);
    let geo = Geometry::new(disk, 512).unwrap();
    let parts: Vec<GptPartition> = parts
        .iter()
        .map(|(name, code, mib)| GptPartition {
            name: name.to_string(),
            type_guid: gpt::type_guid(code).unwrap(),
            size: mib * MIB,
            attributes: 0,
        })
        .collect();
    let seed = GuidSource::Seed(b"1700000000".to_vec());
    let entries = gpt::place(geo, MIB, &parts, &seed).unwrap();
    let mut f = File::options().write(true).open(&img).unwrap();
    gpt::write_gpt(&mut f, geo, seed.disk().unwrap(), &entries).unwrap();
    drop(f);
    let back = read_gpt(&mut File::open(&img).unwrap(), 512).unwrap();
    assert_eq!(back.disk_guid, seed.disk().unwrap());
    assert_eq!(
        back.entries
            .iter()
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>(),
        entries
    );
    sgdisk_verify(&img);
    Some((dir, img))
}

fn rows(v: &[(u32, u64, u64, &str, &str)]) -> Vec<(u32, u64, u64, String, String)> {
    v.iter()
        .map(|(n, s, e, c, name)| (*n, *s, *e, c.to_string(), name.to_string()))
        .collect()
}

#[test]
fn gpt_block_device_gpt_default() {
    // block-device-gpt: BSP EF02 8 MiB, root 8300 100% (1 GiB: 1024-2-8 MiB).
    if let Some((_d, img)) = gpt_case(
        "gpt_block_device_gpt_default",
        GIB,
        &[("BSP", "EF02", 8), ("root", "8300", 1014)],
    ) {
        assert_eq!(
            sgdisk_rows(&img),
            rows(&[
                (1, 2048, 18431, "EF02", "BSP"),
                (2, 18432, 2095103, "8300", "root"),
            ])
        );
    }
}

#[test]
fn gpt_block_device_efi_default() {
    // block-device-efi: ESP EF00 550 MiB, BSP EF02 8 MiB, root 8300 100%.
    if let Some((_d, img)) = gpt_case(
        "gpt_block_device_efi_default",
        GIB,
        &[
            ("ESP", "EF00", 550),
            ("BSP", "EF02", 8),
            ("root", "8300", 464),
        ],
    ) {
        assert_eq!(
            sgdisk_rows(&img),
            rows(&[
                (1, 2048, 1128447, "EF00", "ESP"),
                (2, 1128448, 1144831, "EF02", "BSP"),
                (3, 1144832, 2095103, "8300", "root"),
            ])
        );
    }
}

#[test]
fn gpt_efi_yaml_names_with_spaces() {
    // DIB's tests/config/gpt_efi.yaml on 1 GiB: -n 1:0:+8M ESP, 2:+8M BSP, 3:+1006M "Root Part".
    if let Some((_d, img)) = gpt_case(
        "gpt_efi_yaml_names_with_spaces",
        GIB,
        &[
            ("ESP", "EF00", 8),
            ("BSP", "EF02", 8),
            ("Root Part", "8300", 1006),
        ],
    ) {
        assert_eq!(
            sgdisk_rows(&img),
            rows(&[
                (1, 2048, 18431, "EF00", "ESP"),
                (2, 18432, 34815, "EF02", "BSP"),
                (3, 34816, 2095103, "8300", "Root Part"),
            ])
        );
        // sgdisk sees our seeded GUIDs.
        let seed = GuidSource::Seed(b"1700000000".to_vec());
        let p = run("sgdisk", &["-p"], &img);
        assert!(
            p.contains(&format!("Disk identifier (GUID): {}", seed.disk().unwrap())),
            "{p}"
        );
        let i = run("sgdisk", &["-i", "3"], &img);
        assert!(
            i.contains(&format!(
                "Partition unique GUID: {}",
                seed.partition(3).unwrap()
            )),
            "{i}"
        );
        assert!(i.contains("Partition name: 'Root Part'"), "{i}");
    }
}

#[test]
fn gpt_full_disk_last_partition_and_attributes() {
    // A partition ending exactly at the last usable sector; legacy-BIOS-bootable attribute.
    let test = "gpt_full_disk_last_partition_and_attributes";
    if !common::require(test, false, &["sgdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = 64 * MIB;
    let img = sparse_image(dir.path(), disk);
    let geo = Geometry::new(disk, 512).unwrap();
    let size = (geo.last_usable() + 1 - 2048) * 512;
    let parts = [GptPartition {
        name: "root".into(),
        type_guid: gpt::type_guid("8300").unwrap(),
        size,
        attributes: 1 << 2,
    }];
    let e = gpt::place(geo, MIB, &parts, &GuidSource::Random).unwrap();
    assert_eq!(e[0].last_lba, geo.last_usable());
    let mut f = File::options().write(true).open(&img).unwrap();
    gpt::write_gpt(&mut f, geo, gpt::Guid::random().unwrap(), &e).unwrap();
    sgdisk_verify(&img);
    let i = run("sgdisk", &["-A", "1:show"], &img);
    assert!(i.contains("legacy BIOS bootable"), "{i}");
    // One sector more does not fit.
    let too_big = [GptPartition {
        size: size + 512,
        ..parts[0].clone()
    }];
    assert!(gpt::place(geo, MIB, &too_big, &GuidSource::Random).is_err());
}

#[test]
fn gpt_seeded_is_reproducible() {
    let disk = 64 * MIB;
    let img = |seed: &[u8]| {
        let geo = Geometry::new(disk, 512).unwrap();
        let src = GuidSource::Seed(seed.to_vec());
        let parts = [GptPartition {
            name: "root".into(),
            type_guid: gpt::type_guid("8300").unwrap(),
            size: 32 * MIB,
            attributes: 0,
        }];
        let e = gpt::place(geo, MIB, &parts, &src).unwrap();
        let mut c = std::io::Cursor::new(vec![0u8; disk as usize]);
        gpt::write_gpt(&mut c, geo, src.disk().unwrap(), &e).unwrap();
        c.into_inner()
    };
    assert_eq!(img(b"42"), img(b"42"));
    assert_ne!(img(b"42"), img(b"43"));
    // 4096-byte sectors read back.
    let geo = Geometry::new(disk, 4096).unwrap();
    assert_eq!(
        (geo.first_usable(), geo.last_usable()),
        (6, disk / 4096 - 6)
    );
    let parts = [GptPartition {
        name: "ESP".into(),
        type_guid: gpt::type_guid("ef00").unwrap(),
        size: 8 * MIB,
        attributes: 0,
    }];
    let e = gpt::place(geo, MIB, &parts, &GuidSource::Seed(vec![1])).unwrap();
    assert_eq!((e[0].first_lba, e[0].last_lba), (256, 256 + 2048 - 1));
    let mut c = std::io::Cursor::new(vec![0u8; disk as usize]);
    gpt::write_gpt(&mut c, geo, gpt::Guid::ZERO, &e).unwrap();
    let back = read_gpt(&mut c, 4096).unwrap();
    assert_eq!(back.entries[0].1, e[0]);
}
