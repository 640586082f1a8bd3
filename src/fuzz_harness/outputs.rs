//! Fuzz body for the disk image writers (qcow2 zlib and zstd, version 2
//! and 3, vhd, vmdk): arbitrary bytes become a sparse raw disk, each
//! writer converts it, and the qcow2 files are read back through dibr's
//! own qcow2 reader and must equal the raw byte for byte. vhd and vmdk
//! must convert without error; `vendor-tests/output_writer_mutations.rs`
//! judges all four with `qemu-img compare` on random disks of the same
//! shape.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::image_io::{FileSource, ImageSource};
use crate::output::qcow2::read::Qcow2;
use crate::output::qcow2::{write_qcow2, Qcow2Compat, Qcow2Compression, Qcow2Options};
use crate::output::{vhd::write_vhd, vmdk::write_vmdk};

/// The largest disk an input may describe (keeps a run fast).
const MAX_DISK: u64 = 8 << 20;

/// A sparse raw disk from fuzz bytes: `[size: u16 LE, in 4 KiB units]`
/// then segments `[offset: u16 LE, in 512-byte units][len: u8, in 512-byte
/// units][kind: u8]`, each filled with a run of one byte (`kind` even:
/// compressible), with noise from the following bytes (`kind` odd), so the
/// writers see holes, zero data, compressible and incompressible clusters
/// and odd sizes (the size is nudged by the low byte of `kind` sums).
pub fn describe_disk(data: &[u8]) -> (u64, Vec<(u64, Vec<u8>)>) {
    let size_units = u16::from_le_bytes([*data.first().unwrap_or(&1), *data.get(1).unwrap_or(&0)]);
    let mut size = (u64::from(size_units) * 4096).clamp(512, MAX_DISK);
    let mut segs = Vec::new();
    let mut noise = 0x9e37_79b9_7f4a_7c15u64;
    for c in data.get(2..).unwrap_or(&[]).chunks_exact(4).take(64) {
        let off = u64::from(u16::from_le_bytes([c[0], c[1]])) * 512;
        let len = (u64::from(c[2]) + 1) * 512;
        let (kind, fill) = (c[3], c[3].wrapping_mul(31));
        size = size.max(off).min(MAX_DISK);
        if kind & 0x80 != 0 {
            // An odd tail: sizes not a multiple of a sector or a cluster.
            size = (size + u64::from(kind & 0x7f)).min(MAX_DISK);
        }
        if off >= size {
            continue;
        }
        let len = len.min(size - off) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if kind & 1 == 1 {
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    noise as u8
                } else {
                    fill
                }
            })
            .collect();
        segs.push((off, bytes));
    }
    (size, segs)
}

/// Writes the described disk as a sparse file; returns its bytes.
pub fn write_raw_disk(path: &Path, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let (size, segs) = describe_disk(data);
    let f = File::create(path)?;
    f.set_len(size)?;
    let mut mem = vec![0u8; size as usize];
    for (off, bytes) in segs {
        f.write_all_at(&bytes, off)?;
        mem[off as usize..off as usize + bytes.len()].copy_from_slice(&bytes);
    }
    Ok(mem)
}

pub fn output_writers(data: &[u8]) {
    let dir = super::scratch_path("outputs");
    fs::create_dir_all(&dir).expect("scratch dir");
    let raw = dir.join("disk.raw");
    let mem = write_raw_disk(&raw, data).expect("writing the raw disk");
    for (compat, compression) in [
        (Qcow2Compat::V3, Qcow2Compression::Zlib),
        (Qcow2Compat::V3, Qcow2Compression::Zstd),
        (Qcow2Compat::V2, Qcow2Compression::Zlib),
    ] {
        let out = dir.join("disk.qcow2");
        let opts = Qcow2Options {
            compat,
            compression,
            ..Default::default()
        };
        write_qcow2(&raw, &out, &opts).expect("qcow2 writer failed on a valid raw disk");
        let f = File::open(&out).expect("qcow2 written");
        let len = f.metadata().expect("qcow2 metadata").len();
        let q = Qcow2::open(Box::new(FileSource { file: &f, len }))
            .expect("dibr's reader refuses dibr's qcow2");
        assert_eq!(
            q.size(),
            mem.len() as u64,
            "{compat:?} {compression:?}: virtual size"
        );
        let mut back = vec![0u8; mem.len()];
        q.read_at(0, &mut back).expect("reading the qcow2 back");
        assert!(
            back == mem,
            "{compat:?} {compression:?}: read back differs from the raw disk"
        );
    }
    write_vhd(&raw, &dir.join("disk.vhd")).expect("vhd writer failed on a valid raw disk");
    write_vmdk(&raw, &dir.join("disk.vmdk")).expect("vmdk writer failed on a valid raw disk");
    let _ = fs::remove_dir_all(&dir);
}
