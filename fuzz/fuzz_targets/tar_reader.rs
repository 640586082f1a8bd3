//! Arbitrary bytes through the tar reader: iterate all entries and read all
//! data; any panic is a bug (errors are fine).
#![no_main]

use std::io::Cursor;

use dibr::tarstream::TarReader;
use dibr::tree::FileData;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rd = TarReader::new(Cursor::new(data));
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded: every entry consumes at least one header block.
    while let Ok(Some(_entry)) = rd.next_entry() {
        while let Ok(1..) = rd.read(&mut buf) {}
    }
});
