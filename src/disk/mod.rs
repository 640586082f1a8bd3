//! Disk images: partition tables (MBR as diskimage-builder writes it, GPT),
//! and DIB's block-device YAML turned into a partition layout.

pub mod gpt;
pub mod mbr;
pub mod read;
