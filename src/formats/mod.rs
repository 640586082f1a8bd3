//! The format tier: file formats and on-disk structures, each owning both
//! directions where dibr needs both (tar read and written in `tarstream`,
//! ext4 written and read and verified in `ext4`, qcow2 written and read in
//! `output::qcow2`; `image_io` is what the readers read through), driven
//! by typed options and never by the environment or a pipeline stage
//! (`vendor-tests/layering.rs` checks both).
//!
//! Re-exported at the crate root (`dibr::ext4`, `crate::tree`, …), so a
//! path names the format, not the tier.

pub mod boot;
pub mod disk;
pub mod ext4;
pub mod fat;
pub mod image_io;
pub mod iso;
pub mod le;
pub mod lvm;
pub mod output;
pub mod rootfs;
pub mod source;
pub mod tarstream;
pub mod tree;
pub mod units;
pub mod uuid;
pub mod xfs;
