//! The ext4 writer in place inside a disk image (issue 4 needs it: "each
//! filesystem written in place at its partition offset, no temporary
//! copy"): bytes before the filesystem stay as they were, and the region
//! itself is a clean filesystem for e2fsck and dibr's verifier.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::process::Command;

use common::*;
use dibr::ext4::{verify, Builder, Options};
use dibr::source::Source;

#[test]
fn ext4_written_at_a_partition_offset() {
    let test = "ext4_written_at_a_partition_offset";
    if !require(test, false, &["e2fsck", "dd"]) {
        return;
    }
    let work = scratch(test);
    let tree = work.path().join("tree");
    build_simple_tree(&tree);
    let disk = work.path().join("disk.img");
    let offset: u64 = 1 << 20;
    // A recognisable pattern where the partition table would be.
    let pattern: Vec<u8> = (0..offset).map(|i| (i % 251) as u8).collect();
    fs::write(&disk, &pattern).unwrap();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    let opts = Options {
        label: *b"cloudimg-rootfs\0",
        uuid: None,
        size_blocks: None,
        extra_blocks: 0,
        max_resize_bytes: 1 << 50,
        fit_ceiling: false,
        density: Default::default(),
        reserved_per_mille: 50,
        journal_blocks: None,
        source_date_epoch: Some(1_700_000_000),
    };
    let mut b = Builder::new_at(file.try_clone().unwrap(), disk.clone(), opts, offset).unwrap();
    let mut src = Source::open(&tree).unwrap();
    while let Some(e) = src.next_entry().unwrap() {
        b.add(&e, src.data()).unwrap();
    }
    let s = b.finish().unwrap();
    let len = fs::metadata(&disk).unwrap().len();
    assert_eq!(len, offset + s.blocks_count * 4096, "{test}: disk length");
    let mut head = vec![0u8; offset as usize];
    file.read_exact_at(&mut head, 0).unwrap();
    assert!(
        head == pattern,
        "{test}: bytes before the filesystem changed"
    );
    // Cut the region out and judge it with the real tool and our own checker.
    let part = work.path().join("part.img");
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", part.display()))
            .args(["bs=1M", "skip=1", "conv=sparse", "status=none"]),
    );
    e2fsck_ok(&part);
    let f = fs::File::open(&part).unwrap();
    verify::verify_file(&f).unwrap_or_else(|e| panic!("{test}: {e}"));
    // An unaligned offset is refused.
    let opts2 = Options {
        label: [0; 16],
        uuid: None,
        size_blocks: None,
        extra_blocks: 0,
        max_resize_bytes: 1 << 50,
        fit_ceiling: false,
        density: Default::default(),
        reserved_per_mille: 50,
        journal_blocks: None,
        source_date_epoch: None,
    };
    let err = Builder::new_at(file, disk.clone(), opts2, 512)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("multiple of 4096"),
        "{test}: unaligned offset accepted: {err}"
    );
}
