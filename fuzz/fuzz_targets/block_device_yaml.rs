//! Arbitrary bytes as a block-device YAML config: parse, build the graph,
//! lay it out on a few disk sizes (MBR and GPT, 512 and 4096-byte sectors),
//! write the table to a sparse in-memory disk and read it back. Errors are
//! fine; a panic (including a read-back mismatch or overlap) is a bug.
#![no_main]

use dibr::disk::layout::check_roundtrip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
