//! Arbitrary bytes as a tar archive through the whole ext4 writer: no input
//! may panic it, and any image it does finish must pass the project's own
//! consistency checker (`dibr::ext4::verify`).
#![no_main]

use std::io::Cursor;

use dibr::ext4::{verify, Builder, Options};
use dibr::tarstream::TarReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("dibr-fuzz-{}.img", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("scratch image");
    let opts = Options {
        label: *b"fuzz\0\0\0\0\0\0\0\0\0\0\0\0",
        uuid: None,
        size_blocks: None,
        extra_blocks: 0,
        // A small growth ceiling keeps the inode-driven virtual size small.
        max_resize_bytes: 1 << 40,
        fit_ceiling: false,
        density: Default::default(),
        reserved_per_mille: 50,
        journal_blocks: None,
        source_date_epoch: Some(0),
    };
    let mut rd = TarReader::new(Cursor::new(data));
    let mut b = Builder::new(file.try_clone().expect("clone"), path.clone(), opts).expect("builder");
    let mut ok = true;
    loop {
        match rd.next_entry() {
            Ok(Some(e)) => {
                if b.add(&e, &mut rd).is_err() {
                    ok = false;
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => {
                ok = false;
                break;
            }
        }
    }
    if ok {
        if b.finish().is_ok() {
            if let Err(e) = verify::verify_file(&file) {
                panic!("writer produced an inconsistent image: {e}");
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
