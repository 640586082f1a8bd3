//! Arbitrary bytes as a disk: the MBR/EBR and GPT readers must return an
//! error or a table, never panic or loop.
#![no_main]

use dibr::disk::read::{read_gpt, read_mbr};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let _ = read_mbr(&mut Cursor::new(data));
    let _ = read_gpt(&mut Cursor::new(data), 512);
    let _ = read_gpt(&mut Cursor::new(data), 4096);
});
