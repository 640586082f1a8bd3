//! The disk writers (qcow2 zlib/zstd, version 2 and 3, vhd, vmdk) on 40
//! random sparse disks of the fuzz target `output_writers`' shape (holes,
//! zero data, compressible and incompressible runs, sizes that are not a
//! multiple of a sector or a cluster), judged by the real tool: `qemu-img
//! check` is clean for every qcow2 and `qemu-img compare` finds each output
//! identical to its raw disk. Issue 17, acceptance 6.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use dibr::fuzz_harness::write_raw_disk;
use dibr::output::qcow2::{write_qcow2, Qcow2Compat, Qcow2Compression, Qcow2Options};
use dibr::output::{vhd::write_vhd, vmdk::write_vmdk};

fn qemu_img(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, String) {
    let o = run(Command::new("qemu-img").args(args.iter().map(|a| a.as_ref())));
    (o.status.success(), out_text(&o))
}

fn identical(raw: &Path, img: &Path, fmt: &str, case: &str) {
    let (ok, out) = qemu_img(&[&"compare", &"-f", &"raw", &"-F", &fmt, &raw, &img]);
    assert!(
        ok && out.contains("Images are identical"),
        "{case}: {fmt}: qemu-img compare: {out}"
    );
}

#[test]
fn random_disks_convert_exactly() {
    let test = "random_disks_convert_exactly";
    if !require(test, false, &["qemu-img"]) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let mut x = 0x51f1_5eed_0bad_cafeu64;
    for n in 0..40 {
        let mut input = Vec::new();
        for _ in 0..2 + n % 30 * 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            input.push(x as u8);
        }
        // Every fourth disk 8 MiB, so runs reach clusters far apart.
        if n % 4 == 0 {
            input[1] = 0x08;
        }
        let case = format!("disk {n} (input {})", hex(&input));
        let raw = dir.join(format!("{n}.raw"));
        write_raw_disk(&raw, &input).unwrap();
        for (compat, compression) in [
            (Qcow2Compat::V3, Qcow2Compression::Zlib),
            (Qcow2Compat::V3, Qcow2Compression::Zstd),
            (Qcow2Compat::V2, Qcow2Compression::Zlib),
        ] {
            let out = dir.join(format!("{n}.qcow2"));
            let opts = Qcow2Options {
                compat,
                compression,
                ..Default::default()
            };
            write_qcow2(&raw, &out, &opts).unwrap();
            let (ok, text) = qemu_img(&[&"check", &"-f", &"qcow2", &out]);
            assert!(
                ok && text.contains("No errors were found") && !text.contains("leak"),
                "{case}: {compat:?} {compression:?}: qemu-img check: {text}"
            );
            identical(
                &raw,
                &out,
                "qcow2",
                &format!("{case} {compat:?} {compression:?}"),
            );
        }
        let vhd = dir.join(format!("{n}.vhd"));
        write_vhd(&raw, &vhd).unwrap();
        identical(&raw, &vhd, "vpc", &case);
        let vmdk = dir.join(format!("{n}.vmdk"));
        write_vmdk(&raw, &vmdk).unwrap();
        identical(&raw, &vmdk, "vmdk", &case);
        for p in [&raw, &vhd, &vmdk] {
            std::fs::remove_file(p).unwrap();
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
