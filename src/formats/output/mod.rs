//! Writing outputs: atomic files and raw → qcow2 / vhd converters.

pub mod atomic;
pub mod cpio;
pub mod qcow2;
pub mod set;
pub mod vhd;
