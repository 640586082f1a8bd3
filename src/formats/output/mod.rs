//! Writing outputs: atomic files, raw → qcow2 / vhd / vmdk converters (and
//! the qcow2 reader, `qcow2::read`), cpio archives, container image
//! archives (docker, OCI), squashfs (through mksquashfs) and output sets.

pub mod atomic;
pub mod container;
pub mod cpio;
pub mod qcow2;
pub mod set;
pub mod squashfs;
pub mod vhd;
pub mod vmdk;
