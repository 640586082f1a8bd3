//! `dibr vm`: boot an image under qemu as `mkosi vm` and `debvm-run` do.
//! The pieces below the command line: the NoCloud seed carrying the
//! user's ssh key ([`seed`]), which firmware the image boots with
//! ([`firmware`]), and the qemu command line ([`qemu`]). Reading the
//! environment (HOME, PATH, /dev/kvm) is the command line's job
//! (`src/cli/vm.rs`); everything here takes it as arguments.

pub mod firmware;
pub mod guest;
pub mod qemu;
pub mod seed;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read the image to pick its firmware: {detail}")]
    Image { path: PathBuf, detail: String },
    #[error("writing the NoCloud seed {path}: {source}")]
    Seed {
        path: PathBuf,
        source: crate::fat::FatError,
    },
    #[error("no UEFI firmware for this UEFI-only image (looked for {looked}): install the Debian package `ovmf` (apt-get install ovmf)")]
    NoOvmf { looked: String },
    #[error("{tool} not found on PATH: install the Debian package `{package}` (apt-get install {package})")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{path}: not an ssh public key (expected one line `TYPE BASE64 [COMMENT]`, as ssh-keygen writes in KEY.pub)")]
    BadKey { path: PathBuf },
    /// `dibr vm` runs qemu-system-x86_64; an image of another
    /// architecture needs its own machine and firmware.
    #[error("{path}: the image is {arch}; dibr vm boots x86-64 images only. Boot it with qemu-system-{arch} (arm64: qemu-system-aarch64 -M virt -cpu max -m 2048 with AAVMF from qemu-efi-aarch64: -drive if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd and a copy of AAVMF_VARS.fd)")]
    Arch { path: PathBuf, arch: &'static str },
    #[error("no ssh public key: none of {looked} exists; make one with `ssh-keygen -t ed25519` (then run dibr vm again), or name one with --ssh-key FILE")]
    NoKey { looked: String },
}
