//! A foreign architecture's binaries run through the kernel's binfmt_misc
//! handler for qemu-user: checked before any work, with the host setup
//! step named when it is missing.
//!
//! The kernel's "Kernel Support for miscellaneous Binary Formats"
//! (Documentation/admin-guide/binfmt-misc.rst) lists each registered
//! handler as a file in the binfmt_misc directory
//! (`/proc/sys/fs/binfmt_misc`) with `enabled`/`disabled`, its
//! `interpreter`, its `flags:` and its `magic`/`mask`. Hooks run chrooted
//! into the target tree in a user namespace, where the host's
//! `/usr/bin/qemu-aarch64` is not visible: only a handler registered with
//! the **F** (fix-binary) flag works there, because the kernel opened the
//! interpreter when it was registered. Debian's `qemu-user-static` (via
//! binfmt-support) and Debian 13's `qemu-user-binfmt` (via systemd-binfmt's
//! `/usr/lib/binfmt.d/qemu-aarch64.conf`) both register with F.
//!
//! Handlers are matched by what they do, not by name: the one whose magic
//! and mask accept the target's ELF header (e_machine, ELF "System V
//! Application Binary Interface", machine numbers of the arch's psABI).

use std::path::{Path, PathBuf};

/// What is missing on the host, and the command that fixes it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BinfmtError {
    #[error("-a {arch} on this {host} host runs the image's {arch} programs through qemu-user, but {dir} is not there (binfmt_misc is not mounted): sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc, then register qemu-user: {fix}")]
    NotMounted {
        arch: String,
        host: String,
        dir: PathBuf,
        fix: &'static str,
    },
    #[error("-a {arch} on this {host} host runs the image's {arch} programs through qemu-user, but no binfmt_misc handler for {elf} binaries is registered in {dir}: {fix}")]
    Missing {
        arch: String,
        host: String,
        elf: &'static str,
        dir: PathBuf,
        fix: &'static str,
    },
    #[error("the binfmt_misc handler {file} for {elf} binaries is disabled: sudo update-binfmts --enable {name} (binfmt-support), or echo 1 | sudo tee {file}")]
    Disabled {
        file: PathBuf,
        name: String,
        elf: &'static str,
    },
    #[error("the binfmt_misc handler {file} (interpreter {interpreter}) has flags {flags:?}, without F (fix-binary): the interpreter is then looked up inside the build's chroot, where it does not exist. Register the static qemu with F: {fix}")]
    NoFixBinary {
        file: PathBuf,
        interpreter: String,
        flags: String,
        fix: &'static str,
    },
    #[error("dibr cannot build {arch} images on a {host} host: it builds amd64 and arm64, natively or through qemu-user")]
    Unsupported { arch: String, host: String },
}

/// The one host setup step, for Debian 12/13 and Ubuntu.
pub const FIX: &str = "sudo apt install qemu-user-static binfmt-support \
    (Debian 12/13, Ubuntu; it registers qemu-aarch64 with the F flag). If the package is installed but \
    the handler is not registered: sudo update-binfmts --enable qemu-aarch64 (binfmt-support), or \
    sudo systemctl restart systemd-binfmt (qemu-user-binfmt's /usr/lib/binfmt.d/qemu-aarch64.conf)";

/// An architecture as DIB names it, and what identifies its binaries.
struct Target {
    /// The Rust/uname name (`std::env::consts::ARCH`).
    uname: &'static str,
    /// For messages.
    elf: &'static str,
    /// The first 20 bytes of an ELF64 little-endian executable for it
    /// (e_ident, e_type = ET_EXEC, e_machine): what a handler must accept.
    header: [u8; 20],
}

const fn elf64_le(machine: u16) -> [u8; 20] {
    let m = machine.to_le_bytes();
    [
        0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, m[0], m[1],
    ]
}

fn target(arch: &str) -> Option<Target> {
    match arch {
        "amd64" | "x86_64" => Some(Target {
            uname: "x86_64",
            elf: "x86-64 (EM_X86_64)",
            header: elf64_le(62),
        }),
        "arm64" | "aarch64" => Some(Target {
            uname: "aarch64",
            elf: "AArch64 (EM_AARCH64)",
            header: elf64_le(183),
        }),
        _ => None,
    }
}

/// One handler file of the binfmt_misc directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Handler {
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    pub offset: usize,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Handler {
    /// A handler file's text; None for one that is not a magic handler
    /// (an `extension` one, or `register`/`status`).
    pub fn parse(text: &str) -> Option<Handler> {
        let mut h = Handler::default();
        let mut magic = false;
        for line in text.lines() {
            let line = line.trim();
            if line == "enabled" {
                h.enabled = true;
            } else if let Some(v) = line.strip_prefix("interpreter ") {
                h.interpreter = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("flags:") {
                h.flags = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("offset ") {
                h.offset = v.trim().parse().ok()?;
            } else if let Some(v) = line.strip_prefix("magic ") {
                h.magic = hex(v.trim())?;
                magic = true;
            } else if let Some(v) = line.strip_prefix("mask ") {
                h.mask = hex(v.trim())?;
            }
        }
        magic.then_some(h)
    }

    /// Whether the kernel would hand a file starting with `header` to
    /// this handler (binfmt-misc.rst: the magic compared after the mask).
    pub fn accepts(&self, header: &[u8]) -> bool {
        let Some(bytes) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        bytes.iter().enumerate().all(|(i, b)| {
            let m = self.mask.get(i).copied().unwrap_or(0xff);
            b & m == self.magic[i] & m
        })
    }
}

/// Whether a `-a arch` build can run on this host: the same architecture,
/// or a registered, enabled handler with the F flag for it in `dir` (the
/// binfmt_misc directory, `crate::settings::binfmt_misc_dir`). `host` is
/// `std::env::consts::ARCH`. Returns the handler's file when emulated.
pub fn check(arch: &str, host: &str, dir: &Path) -> Result<Option<PathBuf>, BinfmtError> {
    let unsupported = || BinfmtError::Unsupported {
        arch: arch.to_string(),
        host: host.to_string(),
    };
    let t = target(arch).ok_or_else(unsupported)?;
    if t.uname == host {
        return Ok(None);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Err(BinfmtError::NotMounted {
            arch: arch.to_string(),
            host: host.to_string(),
            dir: dir.to_path_buf(),
            fix: FIX,
        });
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    let mut found = None;
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if matches!(name, "register" | "status") {
            continue;
        }
        let Some(h) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| Handler::parse(&t))
        else {
            continue;
        };
        if h.accepts(&t.header) {
            // An enabled one with F wins over others for the same binaries.
            if h.enabled && h.flags.contains('F') {
                return Ok(Some(f));
            }
            found.get_or_insert((f, h));
        }
    }
    match found {
        None => Err(BinfmtError::Missing {
            arch: arch.to_string(),
            host: host.to_string(),
            elf: t.elf,
            dir: dir.to_path_buf(),
            fix: FIX,
        }),
        Some((file, h)) if !h.enabled => Err(BinfmtError::Disabled {
            name: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            file,
            elf: t.elf,
        }),
        Some((file, h)) => Err(BinfmtError::NoFixBinary {
            file,
            interpreter: h.interpreter,
            flags: h.flags,
            fix: FIX,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Debian 13's qemu-user-binfmt registers (read back from
    /// /proc/sys/fs/binfmt_misc/qemu-aarch64).
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn parses_and_matches_by_elf_header() {
        let h = Handler::parse(AARCH64).unwrap();
        assert!(h.enabled);
        assert_eq!(h.flags, "POF");
        assert!(h.accepts(&target("arm64").unwrap().header));
        assert!(!h.accepts(&target("amd64").unwrap().header));
        assert_eq!(
            Handler::parse("enabled\ninterpreter /x\nflags: \nextension .jar\n"),
            None
        );
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    #[test]
    fn native_needs_nothing_and_other_arches_are_refused() {
        let none = Path::new("/nonexistent/binfmt");
        assert_eq!(check("amd64", "x86_64", none), Ok(None));
        assert_eq!(check("arm64", "aarch64", none), Ok(None));
        let e = check("s390x", "x86_64", none).unwrap_err();
        assert!(matches!(e, BinfmtError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn foreign_needs_an_enabled_handler_with_f() {
        let d = dir_with(&[("status", "enabled\n"), ("qemu-aarch64", AARCH64)]);
        let ok = check("aarch64", "x86_64", d.path()).unwrap();
        assert_eq!(ok, Some(d.path().join("qemu-aarch64")));

        let e = check("arm64", "x86_64", Path::new("/nonexistent/binfmt")).unwrap_err();
        assert!(e.to_string().contains("sudo mount -t binfmt_misc"), "{e}");

        let d = dir_with(&[("status", "enabled\n"), ("register", "")]);
        let e = check("arm64", "x86_64", d.path()).unwrap_err().to_string();
        assert!(
            e.contains("sudo apt install qemu-user-static binfmt-support"),
            "{e}"
        );
        assert!(e.contains("update-binfmts --enable qemu-aarch64"), "{e}");

        let d = dir_with(&[("qemu-aarch64", &AARCH64.replace("enabled", "disabled"))]);
        let e = check("arm64", "x86_64", d.path()).unwrap_err().to_string();
        assert!(
            e.contains("is disabled") && e.contains("--enable qemu-aarch64"),
            "{e}"
        );

        let d = dir_with(&[("qemu-aarch64", &AARCH64.replace("POF", "P"))]);
        let e = check("arm64", "x86_64", d.path()).unwrap_err();
        assert!(matches!(e, BinfmtError::NoFixBinary { .. }), "{e}");
        assert!(e.to_string().contains("without F"), "{e}");
    }
}
