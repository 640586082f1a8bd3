//! An empty jbd2 journal (Documentation/filesystems/ext4/journal.rst),
//! as e2fsprogs' `ext2fs_create_journal_superblock2` writes it: a v2
//! superblock, big-endian, no feature bits (the kernel adds what it uses
//! on first mount), the rest of the journal zero.

use crate::le::put_be32;

pub const JBD2_MAGIC: u32 = 0xC03B_3998;
const JBD2_SUPERBLOCK_V2: u32 = 4;
/// The kernel refuses journals shorter than this (JBD2_MIN_JOURNAL_BLOCKS).
pub const MIN_BLOCKS: u64 = 1024;

/// Default journal size in blocks, from the blocks the tree itself needs:
/// DIB's 64 MiB ("so our journal is large enough when we perform an FS
/// resize") for anything like a root filesystem, less for tiny trees so a
/// 10 MB tree does not get a 64 MiB journal.
pub fn default_blocks(tree_blocks: u64) -> u64 {
    match tree_blocks {
        b if b < 8192 => 1024,  // < 32 MiB of tree: 4 MiB
        b if b < 32768 => 4096, // < 128 MiB: 16 MiB
        b if b < 65536 => 8192, // < 256 MiB: 32 MiB
        _ => 16384,             // 64 MiB
    }
}

pub fn superblock(maxlen: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    put_be32(&mut b, 0x0, JBD2_MAGIC); // h_magic
    put_be32(&mut b, 0x4, JBD2_SUPERBLOCK_V2); // h_blocktype
    put_be32(&mut b, 0x8, 0); // h_sequence
    put_be32(&mut b, 0xC, 4096); // s_blocksize
    put_be32(&mut b, 0x10, maxlen); // s_maxlen
    put_be32(&mut b, 0x14, 1); // s_first
    put_be32(&mut b, 0x18, 1); // s_sequence
    put_be32(&mut b, 0x1C, 0); // s_start: 0 = clean, nothing to replay
    b[0x30..0x40].copy_from_slice(uuid); // s_uuid
    put_be32(&mut b, 0x40, 1); // s_nr_users
    b
}
