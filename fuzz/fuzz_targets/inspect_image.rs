//! Arbitrary bytes as a disk image, raw and as a qcow2 file: the qcow2
//! reader, the partition/volume discovery, the ext4 reader behind the
//! userspace mount, the kernel choice and every check must return a result
//! or an error, never panic, loop or allocate without bound.
#![no_main]

use std::path::Path;

use dibr::ext4::verify::ImageSource;
use dibr::inspect::disk::{layout, Format, Image};
use dibr::inspect::qcow2::Qcow2;
use dibr::inspect::view::View;
use dibr::inspect::{check, kernel};
use libfuzzer_sys::fuzz_target;

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
    let Ok(view) = View::open(img, &lay) else { return };
    let _ = kernel::choose(&view);
    let _ = check::run(&view, &lay);
    if let Ok(Some(n)) = view.resolve("/boot/vmlinuz", true) {
        let _ = view.copy_node(&n, &mut std::io::sink());
    }
}

fuzz_target!(|data: &[u8]| {
    let p = Path::new("fuzz.img");
    inspect(&Image::from_source(p, Format::Raw, Box::new(Mem(data.to_vec()))));
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
});
