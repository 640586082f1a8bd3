//! The internal log, written clean: one record at block 0 holding an
//! unmount operation, cycle 1, the rest zero — what xfsprogs'
//! `libxfs_log_clear` writes for mkfs ("XFS Algorithms & Data
//! Structures", *Journaling Log*; `struct xlog_rec_header`,
//! `xlog_op_header` in the kernel's libxfs/xfs_log_format.h). A zeroed
//! log mounts, but xfs_repair then wants to reformat it (the metadata LSN
//! check), so the record is written.

use super::crc::{be32, be64};
use super::geometry::SECT;

const S: usize = SECT as usize;

/// The first two log sectors: record header, then the unmount op.
pub fn clean(uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; 2 * S];
    let cycle = 1u32;
    be32(&mut b, 0, 0xfeed_babe);
    be32(&mut b, 4, cycle);
    be32(&mut b, 8, 2); // version 2
    be32(&mut b, 12, S as u32); // h_len: one sector of data
    be64(&mut b, 16, (cycle as u64) << 32); // h_lsn (1, 0)
    be64(&mut b, 24, (cycle as u64) << 32); // h_tail_lsn (1, 0)
    be32(&mut b, 36, u32::MAX); // h_prev_block
    be32(&mut b, 40, 1); // h_num_logops
                         // h_cycle_data[0]: the data sector's first word, which the cycle
                         // number replaces on disk (the op header's transaction id).
    be32(&mut b, 44, 0xb0c0_d0d0);
    be32(&mut b, 300, 1); // h_fmt: XLOG_FMT_LINUX_LE
    b[304..320].copy_from_slice(uuid);
    be32(&mut b, 320, 32768); // h_size: log buffer size
                              // The op: tid (replaced by the cycle), len 8, XFS_LOG client,
                              // XLOG_UNMOUNT_TRANS; then the unmount payload (magic 0x556e, native
                              // little-endian as the kernel writes it).
    let d = S;
    be32(&mut b, d, cycle);
    be32(&mut b, d + 4, 8);
    b[d + 8] = 0xaa;
    b[d + 9] = 0x20;
    b[d + 12..d + 14].copy_from_slice(&0x556eu16.to_le_bytes());
    b
}
