//! qemu for the boot tests: commands run as the CI user (`as_user`, from
//! `user`), a VM that is killed when the test ends (passing or not), a qemu
//! command line with the options every boot test uses, and waiting for a
//! marker on the serial log.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::user::as_user;

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Killed (and reaped) when dropped.
pub struct Vm(pub Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// qemu-system-x86_64 as the CI user: q35, TCG (the user has no KVM), one
/// vCPU, serial console to `log`, OVMF when `uefi_vars` is given.
pub fn qemu(log: &Path, mem_mib: u32, uefi_vars: Option<&Path>) -> Command {
    let mut c = as_user("qemu-system-x86_64", &[]);
    c.args(["-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "1"]);
    c.arg("-m").arg(mem_mib.to_string());
    c.args(["-display", "none", "-monitor", "none", "-no-reboot"]);
    c.arg("-serial").arg(format!("file:{}", log.display()));
    if let Some(vars) = uefi_vars {
        c.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
        c.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

pub fn start(mut c: Command) -> Vm {
    Vm(c.spawn().expect("starting qemu-system-x86_64"))
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Waits until the serial log contains `marker`; returns the log. Panics
/// with the log's tail if qemu exits first or `timeout` passes.
pub fn wait_for(
    vm: &mut Vm,
    log: &Path,
    marker: &str,
    what: &str,
    t0: Instant,
    timeout: Duration,
) -> String {
    loop {
        let text = String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
        if text.contains(marker) {
            return text;
        }
        if let Ok(Some(st)) = vm.0.try_wait() {
            panic!(
                "{what}: qemu exited ({st}) before {marker:?}\n--- serial (tail) ---\n{}",
                tail(&text, 4000)
            );
        }
        if t0.elapsed() > timeout {
            panic!(
                "{what}: no {marker:?} within {timeout:?}\n--- serial (tail) ---\n{}",
                tail(&text, 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
