//! `dibr vm IMAGE`: boot an image under qemu and say how to log in, as
//! `mkosi vm` and `debvm-run` do. This module resolves what comes from the
//! user's environment (HOME's ssh key, PATH's qemu, /dev/kvm, a free port,
//! the temporary directory); `crate::vm` writes the seed, picks the
//! firmware and makes the command line.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use clap::Args;

use super::size::parse_size;
use super::vm_dir::{self, VmDir};
use crate::vm::firmware::{self, Firmware};
use crate::vm::qemu::{Accel, DiskFormat, VmPlan};
use crate::vm::{guest, seed, VmError};

const QEMU: &str = "qemu-system-x86_64";
const OVMF_DIR: &str = "/usr/share/OVMF";
/// The default keys, in ssh's order of preference.
const DEFAULT_KEYS: &[&str] = &["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"];

#[derive(Args, Debug)]
#[command(
    after_help = "The serial console is the terminal: Ctrl-A X quits qemu, Ctrl-A H lists \
the other keys. Log in over ssh with the line printed before the boot; the image's cloud-init \
installs your key for its default user (debian on Debian) from a NoCloud seed dibr writes. \
Example: dibr vm debian.qcow2"
)]
pub struct VmArgs {
    /// The disk image to boot (raw or qcow2)
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Write to the image (default: -snapshot, changes are discarded when qemu exits)
    #[arg(long)]
    pub persistent: bool,
    /// Boot with UEFI (OVMF) even when the image has BIOS boot code
    #[arg(long)]
    pub uefi: bool,
    /// Use qemu's emulator (TCG) even when /dev/kvm is usable (slow)
    #[arg(long)]
    pub no_kvm: bool,
    /// The ssh public key to authorise (default: the first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Host port forwarded to the guest's ssh port 22, on 127.0.0.1 (default: a free port)
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// The user to log in as, in the printed ssh line (default: cloud-init's default user named in the image)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Guest memory
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_size)]
    pub memory: u64,
    /// Guest CPUs
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub cpus: u32,
    /// More qemu arguments, after `--` (e.g. -- -device virtio-balloon)
    #[arg(value_name = "QEMU_ARGS", last = true)]
    pub qemu_args: Vec<OsString>,
}

/// The seed's directory and the running qemu, for the interrupt handler.
static ACTIVE: Mutex<Option<(PathBuf, Option<u32>)>> = Mutex::new(None);

/// The run's directory, registered for the interrupt handler (which
/// removes it); when dropped, unregistered, then removed by [`VmDir`].
struct TempDir(VmDir);

impl TempDir {
    fn create() -> Result<TempDir, VmError> {
        let base = std::env::temp_dir();
        let reclaimed = vm_dir::reclaim_stale(&base);
        if reclaimed > 0 {
            eprintln!(
                "dibr: removed {reclaimed} seed director{} of `dibr vm` runs that were killed",
                if reclaimed == 1 { "y" } else { "ies" }
            );
        }
        let dir = VmDir::create(&base)?;
        if let Ok(mut a) = ACTIVE.lock() {
            *a = Some((dir.path.clone(), None));
        }
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Ok(mut a) = ACTIVE.lock() {
            *a = None;
        }
    }
}

/// From the ^C/SIGTERM handler: stop qemu and remove the seed. Returns
/// whether a VM was running.
pub fn interrupt_cleanup() -> bool {
    let Ok(mut a) = ACTIVE.try_lock() else {
        return false;
    };
    let Some((dir, pid)) = a.take() else {
        return false;
    };
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _ = std::fs::remove_dir_all(dir);
    true
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The public key file and its key line; the private key beside it, if any.
struct Key {
    public: PathBuf,
    line: String,
    private: Option<PathBuf>,
}

fn read_key(path: &Path) -> Result<Key, VmError> {
    let io = |source| VmError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    if let Some(line) = seed::public_key_line(&text) {
        let private = path
            .to_str()
            .and_then(|s| s.strip_suffix(".pub"))
            .map(PathBuf::from)
            .filter(|p| p.is_file());
        return Ok(Key {
            public: path.to_path_buf(),
            line: line.to_string(),
            private,
        });
    }
    // A private key named: its .pub beside it.
    let mut pubname = path.as_os_str().to_owned();
    pubname.push(".pub");
    let pubpath = PathBuf::from(pubname);
    if let Ok(t) = std::fs::read_to_string(&pubpath) {
        if let Some(line) = seed::public_key_line(&t) {
            return Ok(Key {
                public: pubpath,
                line: line.to_string(),
                private: Some(path.to_path_buf()),
            });
        }
    }
    Err(VmError::BadKey {
        path: path.to_path_buf(),
    })
}

fn default_key(home: Option<&Path>) -> Result<Key, VmError> {
    let dir = home.map(|h| h.join(".ssh"));
    if let Some(dir) = &dir {
        for name in DEFAULT_KEYS {
            let p = dir.join(name);
            if p.is_file() {
                return read_key(&p);
            }
        }
    }
    Err(VmError::NoKey {
        looked: DEFAULT_KEYS
            .iter()
            .map(|n| format!("~/.ssh/{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// /dev/kvm opened for reading and writing, as qemu needs it.
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn free_port() -> Result<u16, VmError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|source| VmError::Io {
        path: "127.0.0.1:0 (finding a free port for ssh)".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| VmError::Io {
            path: "127.0.0.1:0 (finding a free port for ssh)".into(),
            source,
        })
}

/// `~/…` for a path under HOME, for the printed lines.
fn tilde(p: &Path, home: Option<&Path>) -> String {
    match home.and_then(|h| p.strip_prefix(h).ok()) {
        Some(rest) => format!("~/{}", rest.display()),
        None => p.display().to_string(),
    }
}

/// The ssh command that logs in to the VM.
pub fn ssh_line(port: u16, private_key: Option<&str>, user: &str) -> String {
    let key = private_key.map(|k| format!(" -i {k}")).unwrap_or_default();
    format!(
        "ssh -p {port}{key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {user}@localhost"
    )
}

/// What `dibr vm` says before qemu starts: the VM, the seed, the login
/// line, how to quit, the qemu command line.
struct Announce<'a> {
    a: &'a VmArgs,
    plan: &'a VmPlan,
    qemu: &'a Path,
    args: &'a [std::ffi::OsString],
    key: &'a Key,
    guest: &'a crate::vm::guest::Guest,
    home: Option<&'a Path>,
    user: &'a str,
}

fn announce(n: &Announce) {
    let Announce {
        a,
        plan,
        qemu,
        args,
        key,
        guest,
        home,
        user,
    } = *n;
    let image = &plan.image;
    let format = plan.format;
    let fw_text = match &plan.firmware {
        Firmware::Bios => "BIOS (SeaBIOS)".to_string(),
        Firmware::Uefi { code, .. } => format!("UEFI ({})", code.display()),
    };
    let accel_text = match plan.accel {
        Accel::Kvm => "KVM",
        Accel::Tcg if a.no_kvm => "TCG (--no-kvm; slow: the boot takes minutes)",
        Accel::Tcg => "TCG (no usable /dev/kvm; slow: the boot takes minutes)",
    };
    eprintln!(
        "dibr: booting {} ({}, {fw_text}, {accel_text}, {} MiB, {} CPUs); {}",
        image.display(),
        format.as_str(),
        plan.memory_mib,
        plan.cpus,
        if a.persistent {
            "changes are written to the image (--persistent)"
        } else {
            "changes are discarded when qemu exits (-snapshot; --persistent keeps them)"
        }
    );
    eprintln!(
        "dibr: NoCloud seed (vfat 'cidata') authorising {}",
        tilde(&key.public, home)
    );
    if !guest.cloud_init {
        eprintln!(
            "dibr: warning: the image has no cloud-init (/usr/bin/cloud-init): nothing will install the key; log in on the console"
        );
    }
    let private = key.private.as_deref().map(|p| tilde(p, home));
    eprintln!("dibr: log in, once the boot has finished, with:");
    eprintln!("  {}", ssh_line(plan.ssh_port, private.as_deref(), user));
    if guest.default_user.is_none() && a.user.is_none() {
        eprintln!(
            "dibr: (USER: the image's cloud config names no default user; give it with --user NAME)"
        );
    }
    eprintln!("dibr: the serial console is this terminal; quit qemu with Ctrl-A X (Ctrl-A H: the other keys)");
    eprintln!(
        "dibr: {} {}",
        qemu.display(),
        args.iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Runs qemu; returns its exit code.
pub fn run(a: &VmArgs) -> Result<i32, Box<dyn std::error::Error>> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let image = &a.image;
    std::fs::metadata(image).map_err(|source| VmError::Io {
        path: image.clone(),
        source,
    })?;
    let qemu = find_on_path(QEMU).ok_or(VmError::MissingTool {
        tool: QEMU,
        package: "qemu-system-x86",
    })?;
    let key = match &a.ssh_key {
        Some(p) => read_key(p)?,
        None => default_key(home.as_deref())?,
    };
    let format = match crate::inspect::disk::Image::open(image) {
        Ok(i) if i.format == crate::inspect::disk::Format::Qcow2 => DiskFormat::Qcow2,
        Ok(_) => DiskFormat::Raw,
        Err(e) => {
            return Err(VmError::Image {
                path: image.clone(),
                detail: e.to_string(),
            }
            .into())
        }
    };
    let modes = firmware::boot_modes(image)?;
    let guest = guest::read(image)?;
    if let Some(arch) = guest.arch.filter(|a| !matches!(*a, "x86_64" | "i686")) {
        return Err(VmError::Arch {
            path: image.clone(),
            arch,
        }
        .into());
    }
    let user = a
        .user
        .clone()
        .or_else(|| guest.default_user.clone())
        .unwrap_or_else(|| "USER".into());
    let accel = if a.no_kvm || !kvm_usable() {
        Accel::Tcg
    } else {
        Accel::Kvm
    };
    let port = match a.ssh_port {
        Some(p) => p,
        None => free_port()?,
    };
    let tmp = TempDir::create()?;
    let seed_path = tmp.0.path.join("seed.img");
    seed::write_seed(&seed_path, &key.line, "dibr-vm")?;
    let fw = if firmware::wants_uefi(modes, a.uefi) {
        let (code, vars_template) = firmware::find_ovmf(Path::new(OVMF_DIR))?;
        let vars = tmp
            .0
            .path
            .join(vars_template.file_name().unwrap_or_default());
        std::fs::copy(&vars_template, &vars).map_err(|source| VmError::Io {
            path: vars_template.clone(),
            source,
        })?;
        Firmware::Uefi { code, vars }
    } else {
        Firmware::Bios
    };
    let plan = VmPlan {
        image: image.clone(),
        format,
        persistent: a.persistent,
        firmware: fw.clone(),
        accel,
        memory_mib: u32::try_from((a.memory >> 20).max(128)).unwrap_or(u32::MAX),
        cpus: a.cpus,
        ssh_port: port,
        seed: Some(seed_path),
        extra: a.qemu_args.clone(),
    };
    let args = plan.args();

    announce(&Announce {
        a,
        plan: &plan,
        qemu: &qemu,
        args: &args,
        key: &key,
        guest: &guest,
        home: home.as_deref(),
        user: &user,
    });
    let mut child = Command::new(&qemu)
        .args(&args)
        .spawn()
        .map_err(|source| VmError::Io {
            path: qemu.clone(),
            source,
        })?;
    if let Ok(mut a) = ACTIVE.lock() {
        if let Some((_, pid)) = a.as_mut() {
            *pid = Some(child.id());
        }
    }
    let st = child.wait().map_err(|source| VmError::Io {
        path: qemu.clone(),
        source,
    })?;
    drop(tmp);
    Ok(st.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: VmArgs,
    }

    #[test]
    fn options_parse_with_qemu_args_after_double_dash() {
        let t = T::try_parse_from([
            "vm",
            "--no-kvm",
            "--ssh-key",
            "k.pub",
            "--ssh-port",
            "2222",
            "--memory",
            "1G",
            "--cpus",
            "1",
            "d.qcow2",
            "--",
            "-device",
            "virtio-balloon",
        ])
        .unwrap();
        assert!(t.a.no_kvm && !t.a.persistent && !t.a.uefi);
        assert_eq!(t.a.ssh_port, Some(2222));
        assert_eq!(t.a.memory, 1 << 30);
        assert_eq!(t.a.cpus, 1);
        assert_eq!(t.a.image, PathBuf::from("d.qcow2"));
        assert_eq!(
            t.a.qemu_args,
            vec![OsString::from("-device"), "virtio-balloon".into()]
        );
        let t = T::try_parse_from(["vm", "d.raw"]).unwrap();
        assert_eq!((t.a.memory, t.a.cpus, t.a.ssh_port), (2 << 30, 2, None));
        assert!(T::try_parse_from(["vm", "--cpus", "0", "d.raw"]).is_err());
    }

    #[test]
    fn ssh_line_names_port_key_and_user() {
        assert_eq!(
            ssh_line(2222, Some("~/.ssh/id_ed25519"), "debian"),
            "ssh -p 2222 -i ~/.ssh/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null debian@localhost"
        );
        assert!(ssh_line(1, None, "u").starts_with("ssh -p 1 -o "));
    }

    #[test]
    fn no_default_key_says_how_to_make_one() {
        let e = default_key(Some(Path::new("/nonexistent-home")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("ssh-keygen -t ed25519") && e.contains("--ssh-key"),
            "{e}"
        );
        assert!(e.contains("~/.ssh/id_ed25519.pub"), "{e}");
    }
}
