//! What the guest carries: its architecture (the ELF header of its
//! shell), the virtio drivers of the kernel it boots, the QEMU guest
//! agent.

use super::super::check::enabled_units;
use super::super::kernel::Choice;
use std::collections::BTreeSet;

use super::super::limits::{self, CONFIG_FILE};
use super::super::view::View;
use super::super::InspectError;

/// Programs every Linux userland has; the first found names the
/// architecture.
const PROGRAMS: &[&str] = &[
    "/bin/sh",
    "/usr/bin/env",
    "/sbin/init",
    "/lib/systemd/systemd",
];

/// The largest initrd read (into memory) for its modules; a larger one
/// is not judged (the kernel's modules decide).
const MAX_INITRD: u64 = 256 << 20;

/// Keeps the first bytes written to it and drops the rest.
struct Head(Vec<u8>);

impl std::io::Write for Head {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let room = 64usize.saturating_sub(self.0.len());
        self.0.extend_from_slice(&b[..room.min(b.len())]);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// libosinfo's (and Glance's) architecture name for an ELF header.
pub fn elf_arch(h: &[u8]) -> Option<&'static str> {
    if h.len() < 20 || &h[..4] != b"\x7fELF" {
        return None;
    }
    let (class64, little) = (h[4] == 2, h[5] == 1);
    let m = if little {
        u16::from_le_bytes([h[18], h[19]])
    } else {
        u16::from_be_bytes([h[18], h[19]])
    };
    Some(match (m, class64) {
        (0x3E, true) => "x86_64",
        (0x03, false) => "i686",
        (0xB7, true) => "aarch64",
        (0x28, false) => "armv7l",
        (0xF3, true) => "riscv64",
        (0x15, true) if little => "ppc64le",
        (0x15, true) => "ppc64",
        (0x16, true) => "s390x",
        _ => return None,
    })
}

/// The architecture of the image's programs, None when none is an ELF
/// file dibr knows.
pub fn architecture(view: &View) -> Result<Option<&'static str>, InspectError> {
    for p in PROGRAMS {
        if let Some(n) = view.resolve(p, true)? {
            if !n.inode.is_file() {
                continue;
            }
            let mut head = Head(Vec::new());
            view.copy_node(&n, &mut head)?;
            if let Some(a) = elf_arch(&head.0) {
                return Ok(Some(a));
            }
        }
    }
    Ok(None)
}

/// The kernel release of a chosen kernel (`/boot/vmlinuz-6.1.0-18-amd64`
/// → `6.1.0-18-amd64`; Fedora's `/lib/modules/REL/vmlinuz` too).
pub fn kernel_release(c: &Choice) -> Option<String> {
    let path = c.kernel.trim_end_matches('/');
    let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
    for prefix in ["vmlinuz-", "vmlinux-", "Image-", "kernel-"] {
        if let Some(r) = base.strip_prefix(prefix) {
            return Some(r.to_string());
        }
    }
    dir.rsplit_once("/modules/").map(|(_, r)| r.to_string())
}

/// The drivers of kernel `release`: built in (`modules.builtin`) and
/// as modules (`modules.dep`), by module name (`-` as `_`).
#[derive(Debug, Default)]
pub struct Drivers {
    pub builtin: BTreeSet<String>,
    pub modules: BTreeSet<String>,
}

fn names(text: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter_map(|p| p.rsplit('/').next())
        .filter_map(|b| b.split(".ko").next())
        .filter(|m| !m.is_empty())
        .map(|m| m.replace('-', "_"))
        .collect()
}

pub fn drivers(view: &View, release: &str) -> Result<Drivers, InspectError> {
    let mut d = Drivers::default();
    for base in ["/lib/modules", "/usr/lib/modules"] {
        let read = |f: &str| view.read_file(&format!("{base}/{release}/{f}"), CONFIG_FILE * 4);
        if let Some(b) = read("modules.builtin")? {
            d.builtin = names(&b);
        }
        if let Some(b) = read("modules.dep")? {
            d.modules = names(&b);
        }
        if !d.builtin.is_empty() || !d.modules.is_empty() {
            break;
        }
    }
    Ok(d)
}

/// The module names in the initrd(s) the kernel boots with; Err (as
/// text) when one cannot be read (a compression dibr does not read).
pub fn initramfs_modules(
    view: &View,
    c: &Choice,
) -> Result<Result<BTreeSet<String>, String>, InspectError> {
    let mut all = BTreeSet::new();
    for p in &c.initrds {
        let Some(n) = view.resolve(p, true)? else {
            continue;
        };
        if n.inode.size > MAX_INITRD {
            return Ok(Err(format!(
                "{p}: {} is more than the {} dibr reads",
                limits::bytes(n.inode.size),
                limits::bytes(MAX_INITRD)
            )));
        }
        let mut data = Vec::new();
        view.copy_node(&n, &mut data)?;
        match super::initramfs::modules(&data) {
            Ok(m) => all.extend(m),
            Err(e) => return Ok(Err(format!("{p}: {e}"))),
        }
    }
    Ok(Ok(all))
}

/// qemu-guest-agent installed and started at boot: an enabled unit, a
/// sysvinit link, or (Debian, Ubuntu) the udev rule that starts the
/// service when the agent's virtio port appears.
pub fn guest_agent(view: &View) -> Result<bool, InspectError> {
    let mut installed = false;
    for p in ["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"] {
        installed |= view.exists(p)?;
    }
    if !installed {
        return Ok(false);
    }
    let units = enabled_units(view)?;
    if units
        .iter()
        .any(|u| u == "qemu-guest-agent.service" || u.starts_with("qemu-guest-agent (sysv)"))
    {
        return Ok(true);
    }
    for dir in [
        "/etc/udev/rules.d",
        "/lib/udev/rules.d",
        "/usr/lib/udev/rules.d",
    ] {
        for e in view.list_dir(dir)?.as_deref().unwrap_or_default() {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            if !name.contains("qemu-guest-agent") || !name.ends_with(".rules") {
                continue;
            }
            if let Some(t) = view.read_file(&format!("{dir}/{name}"), CONFIG_FILE)? {
                if String::from_utf8_lossy(&t).contains("qemu-guest-agent.service") {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_machines() {
        let mut h = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0".to_vec();
        assert_eq!(elf_arch(&h), Some("x86_64"));
        h[18] = 0xB7;
        assert_eq!(elf_arch(&h), Some("aarch64"));
        assert_eq!(elf_arch(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn releases_of_kernels() {
        let c = |k: &str| Choice {
            kernel: k.into(),
            initrds: vec![],
            how: String::new(),
            cmdline: None,
        };
        assert_eq!(
            kernel_release(&c("/boot/vmlinuz-6.1.0-18-amd64")).as_deref(),
            Some("6.1.0-18-amd64")
        );
        assert_eq!(
            kernel_release(&c("/usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz")).as_deref(),
            Some("6.8.5-301.fc40.x86_64")
        );
    }
}
