//! Writing outputs: atomic files (and later raw/qcow2/vhd/tar converters).

pub mod atomic;
