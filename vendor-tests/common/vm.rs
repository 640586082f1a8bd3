//! qemu for the boot tests: commands run as the CI user (`as_user`, from
//! `user`), a VM that is killed when the test ends (passing or not), a qemu
//! command line with the options every boot test uses, and waiting for a
//! marker on the serial log.

use std::fs;
use std::path::{Path, PathBuf};
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

/// A `dibr vm` run, stopped when dropped as a user's ^C stops it: SIGTERM
/// to its process group (spawn it with `process_group(0)`; dibr then stops
/// its qemu and removes its seed directory), SIGKILL to whatever of the
/// group is left after 20 s, then reaped. Nothing is sent once it exited.
pub struct DibrVm(pub Child);

impl Drop for DibrVm {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let group = self.0.id() as i32;
        // SAFETY: kill(2) on the process group the test created, whose
        // leader has not been reaped (so the id is not reused).
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // SAFETY: as above.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
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

/// What a boot test's NoCloud seed asks of cloud-init: the instance
/// (`instance-id` is `NAME-1`, `local-hostname` is `NAME`), an optional ssh
/// key for the default user, and a probe that cloud-init's `runcmd` runs
/// at the end of boot, its output written to the serial `console`
/// (`ttyS0` on q35, `ttyAMA0` on arm64's virt) where the test waits for
/// its marker lines.
pub struct Seed<'a> {
    pub name: &'a str,
    pub ssh_key: Option<&'a str>,
    /// The console device under /dev.
    pub console: &'a str,
    /// Shell run before the report (e.g. `sleep 5`: let a login prompt
    /// pass so the lines are not torn).
    pub before: &'a str,
    /// Shell commands whose output is the report, one a line (e.g.
    /// `echo DIBR-DONE`, last).
    pub lines: &'a [&'a str],
}

impl Seed<'_> {
    /// cloud-init's user-data: the probe as a script written by
    /// `write_files` (no YAML quoting of the shell) run by `runcmd`.
    pub fn user_data(&self) -> String {
        let mut u = String::from("#cloud-config\n");
        if let Some(k) = self.ssh_key {
            u += &format!("ssh_authorized_keys:\n  - {k}\n");
        }
        u += "write_files:\n  - path: /run/dibr-probe.sh\n    content: |\n";
        if !self.before.is_empty() {
            u += &format!("      {}\n", self.before);
        }
        u += "      {\n";
        for l in self.lines {
            u += &format!("        {l}\n");
        }
        u += &format!("      }} > /dev/{}\n", self.console);
        u += "runcmd:\n  - [sh, /run/dibr-probe.sh]\n";
        u
    }

    /// `dir/seed.img`: a vfat labelled CIDATA (cloud-init's NoCloud
    /// datasource) with user-data and meta-data, owned by the CI user.
    pub fn write(&self, dir: &Path) -> PathBuf {
        use super::{run_ok, tool};
        fs::write(dir.join("user-data"), self.user_data()).unwrap();
        fs::write(
            dir.join("meta-data"),
            format!("instance-id: {0}-1\nlocal-hostname: {0}\n", self.name),
        )
        .unwrap();
        let img = dir.join("seed.img");
        run_ok(
            Command::new(tool("mkfs.fat"))
                .args(["-C", "-n", "CIDATA"])
                .arg(&img)
                .arg("2048"),
        );
        run_ok(
            Command::new(tool("mcopy"))
                .arg("-i")
                .arg(&img)
                .arg(dir.join("user-data"))
                .arg(dir.join("meta-data"))
                .arg("::"),
        );
        run_ok(Command::new("chown").arg(super::user::USER).arg(&img));
        img
    }
}
