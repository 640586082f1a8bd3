//! The qemu-system-x86_64 command line for `dibr vm`, from resolved
//! choices (no environment is read here): q35, KVM or TCG, the image as a
//! virtio disk (`-snapshot` unless persistent), the seed as a read-only
//! second disk, user networking with ssh forwarded from 127.0.0.1, the
//! serial console on the terminal (`-nographic`: Ctrl-A X quits).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::firmware::Firmware;

/// KVM, or qemu's emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// The image's format as qemu names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// Everything the command line is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmPlan {
    pub image: PathBuf,
    pub format: DiskFormat,
    /// Write to the image (no `-snapshot`).
    pub persistent: bool,
    pub firmware: Firmware,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Host port forwarded to the guest's port 22 (on 127.0.0.1).
    pub ssh_port: u16,
    /// The NoCloud seed, if any.
    pub seed: Option<PathBuf>,
    /// Given after `--`, appended as they are.
    pub extra: Vec<OsString>,
}

/// A `-drive file=…` value: qemu's option syntax doubles commas in values.
fn drive(file: &Path, rest: &str) -> OsString {
    let mut s = OsString::from("file=");
    s.push(file.as_os_str().to_string_lossy().replace(',', ",,"));
    s.push(",");
    s.push(rest);
    s
}

impl VmPlan {
    /// qemu-system-x86_64's arguments (without the program name).
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(OsString::from));
        match self.accel {
            Accel::Kvm => push(&["-machine", "q35,accel=kvm", "-cpu", "host"]),
            Accel::Tcg => push(&["-machine", "q35,accel=tcg", "-cpu", "max"]),
        }
        push(&["-m", &self.memory_mib.to_string()]);
        push(&["-smp", &self.cpus.to_string()]);
        push(&["-nographic"]);
        if let Firmware::Uefi { code, vars } = &self.firmware {
            a.push("-drive".into());
            a.push(drive(code, "if=pflash,format=raw,unit=0,readonly=on"));
            a.push("-drive".into());
            a.push(drive(vars, "if=pflash,format=raw,unit=1"));
        }
        a.push("-drive".into());
        a.push(drive(
            &self.image,
            &format!("format={},if=virtio,discard=unmap", self.format.as_str()),
        ));
        if !self.persistent {
            a.push("-snapshot".into());
        }
        if let Some(seed) = &self.seed {
            a.push("-drive".into());
            a.push(drive(seed, "format=raw,if=virtio,readonly=on"));
        }
        a.push("-netdev".into());
        a.push(format!("user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22", self.ssh_port).into());
        a.push("-device".into());
        a.push("virtio-net-pci,netdev=net0".into());
        a.push("-device".into());
        a.push("virtio-rng-pci".into());
        a.extend(self.extra.iter().cloned());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> VmPlan {
        VmPlan {
            image: "/img/debian.qcow2".into(),
            format: DiskFormat::Qcow2,
            persistent: false,
            firmware: Firmware::Bios,
            accel: Accel::Tcg,
            memory_mib: 2048,
            cpus: 2,
            ssh_port: 2222,
            seed: Some("/tmp/s/seed.img".into()),
            extra: Vec::new(),
        }
    }

    fn line(p: &VmPlan) -> String {
        p.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn default_is_snapshot_tcg_bios_with_seed_and_ssh_forward() {
        assert_eq!(
            line(&plan()),
            "-machine q35,accel=tcg -cpu max -m 2048 -smp 2 -nographic \
             -drive file=/img/debian.qcow2,format=qcow2,if=virtio,discard=unmap -snapshot \
             -drive file=/tmp/s/seed.img,format=raw,if=virtio,readonly=on \
             -netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=net0 \
             -device virtio-rng-pci"
        );
    }

    #[test]
    fn kvm_uefi_persistent_raw_and_extra_args() {
        let mut p = plan();
        p.accel = Accel::Kvm;
        p.persistent = true;
        p.format = DiskFormat::Raw;
        p.image = "/a,b/d.raw".into();
        p.firmware = Firmware::Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/tmp/s/OVMF_VARS_4M.fd".into(),
        };
        p.seed = None;
        p.extra = vec!["-device".into(), "virtio-balloon".into()];
        let l = line(&p);
        assert!(l.starts_with("-machine q35,accel=kvm -cpu host "), "{l}");
        assert!(
            l.contains(
                "-drive file=/usr/share/OVMF/OVMF_CODE_4M.fd,if=pflash,format=raw,unit=0,readonly=on \
                 -drive file=/tmp/s/OVMF_VARS_4M.fd,if=pflash,format=raw,unit=1"
            ),
            "{l}"
        );
        // A comma in a path is doubled, as qemu's option parser wants.
        assert!(l.contains("file=/a,,b/d.raw,format=raw,"), "{l}");
        assert!(!l.contains("-snapshot"), "{l}");
        assert!(!l.contains("readonly=on -netdev"), "no seed: {l}");
        assert!(
            l.ends_with("-device virtio-rng-pci -device virtio-balloon"),
            "{l}"
        );
    }
}
