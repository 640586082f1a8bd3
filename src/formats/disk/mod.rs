//! Disk images: partition tables (MBR as diskimage-builder writes it, GPT),
//! and DIB's block-device YAML turned into a partition layout.

pub mod config;
pub mod gpt;
pub mod layout;
pub mod lvm_config;
pub mod mbr;
pub mod mem;
pub mod read;
