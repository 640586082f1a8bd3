//! Fuzz bodies for disk-level parsers: block-device YAML layouts,
//! partition tables, and whole images through `dibr inspect`'s readers.

use std::io::Cursor;
use std::path::Path;

use crate::disk::layout::check_roundtrip;
use crate::disk::read::{read_gpt, read_mbr};
use crate::image_io::ImageSource;
use crate::inspect::disk::{layout, Format, Image};
use crate::inspect::view::View;
use crate::inspect::{check, kernel};
use crate::output::qcow2::read::Qcow2;

/// Arbitrary bytes as a block-device YAML config: parse, build the graph,
/// lay it out on a few disk sizes (MBR and GPT, 512 and 4096-byte
/// sectors), write the table to a sparse in-memory disk and read it back.
/// Errors are fine; a read-back mismatch or overlap panics inside
/// `check_roundtrip`.
pub fn block_device_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for (size, sector) in [
        (1u64 << 30, 512u64),
        (64 << 20, 512),
        (3 << 40, 512),
        (1 << 30, 4096),
        (100_000, 512),
    ] {
        let _ = check_roundtrip(&text, size, sector);
    }
}

/// Arbitrary bytes as a disk: the MBR/EBR and GPT readers return an error
/// or a table, never panic or loop.
pub fn partition_tables(data: &[u8]) {
    let _ = read_mbr(&mut Cursor::new(data));
    let _ = read_gpt(&mut Cursor::new(data), 512);
    let _ = read_gpt(&mut Cursor::new(data), 4096);
}

struct Mem(Vec<u8>);

impl ImageSource for Mem {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        (&self.0[..]).read_at(off, buf)
    }
}

fn inspect(img: &Image) {
    let Ok(lay) = layout(img) else { return };
    let Ok(view) = View::open(img, &lay) else {
        return;
    };
    let _ = kernel::choose(&view);
    let _ = check::run(&view, &lay);
    if let Ok(Some(n)) = view.resolve("/boot/vmlinuz", true) {
        let _ = view.copy_node(&n, &mut Bounded(COPY_LIMIT));
    }
}

/// Bytes of a file the harness copies before it stops. A damaged inode may
/// claim a sparse size of terabytes, all holes: copying them is slow, not
/// wrong (found by the fuzzer as a timeout; regression
/// `fuzz/regressions/inspect_image/vmlinuz-of-huge-sparse-size`).
const COPY_LIMIT: u64 = 64 << 20;

/// A sink that fails once more than its budget of bytes was written.
struct Bounded(u64);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len() as u64;
        if n > self.0 {
            return Err(std::io::Error::other("copy limit reached"));
        }
        self.0 -= n;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Arbitrary bytes as a disk image, raw and as a qcow2 file: the qcow2
/// reader, the partition/volume discovery, the ext4 reader behind the
/// userspace mount, the kernel choice and every check return a result or
/// an error, never panic, loop or allocate without bound.
pub fn inspect_image(data: &[u8]) {
    let p = Path::new("fuzz.img");
    inspect(&Image::from_source(
        p,
        Format::Raw,
        Box::new(Mem(data.to_vec())),
    ));
    if let Ok(q) = Qcow2::open(Box::new(Mem(data.to_vec()))) {
        let mut buf = vec![0u8; 4096];
        let size = q.size();
        let mut off = 0;
        while off < size.min(1 << 20) {
            let n = (size - off).min(4096) as usize;
            let _ = q.read_at(off, &mut buf[..n]);
            off += n as u64;
        }
        inspect(&Image::from_source(p, Format::Qcow2, Box::new(q)));
    }
}

/// Arbitrary bytes as the start of an LVM2 physical volume (padded with
/// zeros to the 1 MiB header area): `lvm::read_pv` returns an error or a
/// PV, never panics; whatever it accepts has its metadata area inside the
/// header area, before the first extent.
pub fn lvm_pv(data: &[u8]) {
    let mut area = data.to_vec();
    if area.len() < crate::lvm::PE_START as usize {
        area.resize(crate::lvm::PE_START as usize, 0);
    }
    if let Ok(pv) = crate::lvm::read_pv(&area) {
        assert!(pv.mda_start + pv.mda_size <= pv.pe_start, "{pv:?}");
    }
}
