//! The limits `dibr check` and `dibr get-kernel` keep while reading an
//! image from anywhere: a hostile image must end in a clear error naming
//! the file and the limit, never in a crash, a full disk or hours of work.
//!
//! Memory is bounded by two budgets per command: the bytes of file
//! contents read into memory (charged on every read, so a thousand hard
//! links to one file cost a thousand times its size: that bounds the time
//! spent parsing too) and the directory listings kept (each directory is
//! read once and cached, so path lookups in a huge /boot stay linear).
//! What `get-kernel` writes is bounded per output file by `max_output` and
//! by the blocks the files really have (a sparse file is refused).

use std::cell::Cell;

/// How deep `{ … }` blocks may nest in a grub.cfg (grub-mkconfig's nest
/// three or four; GRUB itself has no useful limit).
pub const GRUB_DEPTH: usize = 64;
/// Symlinks followed while resolving one path (Linux's MAXSYMLINKS).
pub const MAX_LINKS: usize = 40;
/// Path components walked while resolving one path, symlink targets
/// included (each target is at most 4096 bytes).
pub const MAX_COMPONENTS: usize = 4096;
/// Bytes in one line of grub.cfg or of a BLS entry (a kernel command
/// line is at most 2 KiB on x86).
pub const MAX_LINE: usize = 64 << 10;
/// Initrds one boot entry may name (GRUB loads them one after the other;
/// real entries name one or two).
pub const MAX_INITRDS: usize = 32;
/// Bytes of holes a kernel or initrd may have beyond its allocated blocks
/// before `get-kernel` calls it sparse (a few zero blocks a tool left as
/// holes are fine; a 1 TiB initrd on a small disk is not).
pub const HOLE_SLACK: u64 = 16 << 20;
/// A config file (grub.cfg, cloud.cfg, a netplan file …) larger than this
/// is refused by name.
pub const CONFIG_FILE: u64 = 4 << 20;
/// Estimated bytes of memory a cached directory entry takes besides its
/// name (the entry in its vector, the name's allocation overhead).
pub const DIR_ENTRY_OVERHEAD: u64 = 64;
/// The smallest directory record on disk (8-byte header, name padded to
/// 4): a directory of `n` bytes holds at most `n / 12` entries.
pub const MIN_DIRENT: u64 = 12;

/// The limits of one command.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of file contents read into memory, in total.
    pub read_budget: u64,
    /// Bytes of directory listings cached, in total.
    pub dir_budget: u64,
    /// Bytes `get-kernel` writes to one output file (the kernel, or the
    /// initrds' concatenation).
    pub max_output: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            read_budget: 64 << 20,
            dir_budget: 64 << 20,
            max_output: 2 << 30,
        }
    }
}

/// A running total against a limit.
#[derive(Debug)]
pub struct Budget {
    /// What it counts, for messages ("file contents read").
    pub what: &'static str,
    pub limit: u64,
    used: Cell<u64>,
}

/// A charge the budget cannot take.
#[derive(Debug, Clone, Copy)]
pub struct Exhausted {
    pub what: &'static str,
    pub limit: u64,
    pub used: u64,
    pub wanted: u64,
}

impl Budget {
    pub fn new(what: &'static str, limit: u64) -> Budget {
        Budget {
            what,
            limit,
            used: Cell::new(0),
        }
    }

    /// Takes `bytes`, or refuses without taking anything.
    pub fn charge(&self, bytes: u64) -> Result<(), Exhausted> {
        let used = self.used.get();
        match used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used.set(total);
                Ok(())
            }
            _ => Err(Exhausted {
                what: self.what,
                limit: self.limit,
                used,
                wanted: bytes,
            }),
        }
    }

    /// Gives back part of an earlier charge (a worst case taken before
    /// reading, once the real cost is known).
    pub fn refund(&self, bytes: u64) {
        self.used.set(self.used.get().saturating_sub(bytes));
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }
}

/// A byte count for messages: a round number of KiB, MiB, GiB or TiB as such,
/// anything else exact (with its size in MiB when large).
pub fn bytes(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) && n >> shift < 1024 {
            return format!("{} {unit}", n >> shift);
        }
    }
    match [(40, "TiB"), (30, "GiB"), (20, "MiB")]
        .into_iter()
        .find(|&(shift, _)| n >= 10 << shift)
    {
        Some((shift, unit)) => format!(
            "{n} bytes ({:.1} {unit})",
            n as f64 / (1u64 << shift) as f64
        ),
        None => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_without_taking() {
        let b = Budget::new("file contents read", 100);
        b.charge(60).unwrap();
        let e = b.charge(41).unwrap_err();
        assert_eq!((e.used, e.wanted, e.limit), (60, 41, 100));
        assert_eq!(b.used(), 60);
        b.charge(40).unwrap();
        assert!(b.charge(u64::MAX).is_err());
        assert_eq!(b.used(), 100);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(2 << 30), "2 GiB");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(4097), "4097 bytes");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(1 << 40), "1 TiB");
        assert!(bytes(1 << 63).starts_with("9223372036854775808 bytes"));
    }
}
