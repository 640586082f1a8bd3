//! `dibr vm` end to end (issue 15, "a VM a user can log into"): the
//! unprivileged CI user builds `debian vm` (or reuses the qcow2 a build by
//! the same dibr binary and element library left in the test cache), makes
//! a fresh ed25519 key, and runs `dibr vm --no-kvm --ssh-key KEY.pub
//! --ssh-port PORT IMAGE` with the console on a log file. The test waits
//! for ssh to answer, logs in as the image's default user (debian) with
//! the key, and runs `sudo systemctl is-system-running --wait` (the image
//! has sudo for cloud-init's default user, no D-Bus system bus): `running` or
//! `degraded` with nothing in `systemctl --failed`. The console must show
//! the root filesystem fsck'ed in the initramfs (no "fsck not present"),
//! dibr must have printed the ssh line and how to quit, and after a
//! poweroff over ssh dibr exits 0 having removed its seed directory.
//!
//! Slow (a Debian build, ~2–5 min, then a TCG boot of some minutes): runs
//! when `DIBR_IMAGE_TESTS=1`, else prints "skipped".

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::build::{build_cmd, stage, user_cache, USER};
use common::vm::{as_user, DibrVm};
use common::*;
use sha2::{Digest, Sha256};

const SSH_TIMEOUT: Duration = Duration::from_secs(900);

/// A digest of the dibr binary and the element library: a cached image
/// is reused only when both are the ones under test.
fn build_key(bin: &Path, elements: &Path) -> String {
    let mut h = Sha256::new();
    h.update(fs::read(bin).unwrap());
    let mut files = Vec::new();
    let mut stack = vec![elements.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        h.update(
            f.strip_prefix(elements)
                .unwrap()
                .as_os_str()
                .as_encoded_bytes(),
        );
        h.update(fs::read(&f).unwrap_or_default());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The debian vm qcow2 for this dibr and these elements: from the cache,
/// or built as the user and then cached.
fn debian_qcow2(test: &str, s: &common::build::Stage) -> PathBuf {
    let elements = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    let cache = user_cache("vm-command");
    let cached = cache.join(format!("debian-{}.qcow2", build_key(&s.bin, &elements)));
    if cached.is_file() {
        eprintln!("{test}: reusing {}", cached.display());
        return cached;
    }
    let image_cache = user_cache("image-cache");
    let (e, c) = (
        elements.display().to_string(),
        image_cache.display().to_string(),
    );
    let t0 = Instant::now();
    let o = build_cmd(
        s,
        &["-o", "debian.qcow2", "debian", "vm"],
        &[
            ("DIBR_ELEMENTS_DIR", e.as_str()),
            ("DIB_IMAGE_CACHE", c.as_str()),
            ("DIB_GRUB_TIMEOUT", "1"),
        ],
    )
    .output()
    .unwrap();
    assert!(
        o.status.success(),
        "{test}: dibr build failed\n{}",
        out_text(&o)
    );
    eprintln!(
        "{test}: dibr build -o debian.qcow2 debian vm: {:?}",
        t0.elapsed()
    );
    // Older images of other builds go; this one stays for the next run.
    for old in fs::read_dir(&cache).unwrap().flatten() {
        let _ = fs::remove_file(old.path());
    }
    let part = cache.join("debian.qcow2.part");
    fs::copy(s.out.join("debian.qcow2"), &part).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&part));
    fs::rename(&part, &cached).unwrap();
    cached
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ssh(key: &Path, port: u16, command: &str) -> Command {
    let mut c = as_user("ssh", &[]);
    c.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-i",
    ])
    .arg(key)
    .args(["-p", &port.to_string(), "debian@localhost", command]);
    c
}

fn read_log(p: &Path) -> String {
    let mut s = Vec::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_end(&mut s);
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn tail(s: &str) -> &str {
    let mut i = s.len().saturating_sub(5000);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

#[test]
fn dibr_vm_boots_debian_and_logs_in_over_ssh() {
    let test = "dibr_vm_boots_debian_and_logs_in_over_ssh";
    if !image_tests() {
        println!("skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: a Debian build and a TCG boot)");
        return;
    }
    if !require(
        test,
        true,
        &["mmdebstrap", "qemu-system-x86_64", "ssh", "ssh-keygen"],
    ) {
        return;
    }
    let _one = common::build::serial();
    let Some(s) = stage(test) else { return };
    let image = debian_qcow2(test, &s);

    // A fresh key, made by the user.
    let key = s.out.join("id_ed25519");
    run_ok(
        as_user("ssh-keygen", &[])
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "dibr-vm-test", "-f"])
            .arg(&key),
    );
    let port = free_port();
    let console = s.out.join("console.log");
    let log = fs::File::create(&console).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&console));
    let t0 = Instant::now();
    let mut vm = DibrVm(
        as_user(&s.bin, &[])
            .args(["vm", "--no-kvm", "--memory", "1536M", "--ssh-key"])
            .arg(key.with_extension("pub"))
            .args(["--ssh-port", &port.to_string()])
            .arg(&image)
            .current_dir(&s.out)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting dibr vm"),
    );
    let dibr_pid = vm.0.id();

    // ssh answers with the key once cloud-init has installed it.
    loop {
        if let Ok(Some(st)) = vm.0.try_wait() {
            panic!(
                "{test}: dibr vm exited ({st}) before ssh answered\n--- console (tail) ---\n{}",
                tail(&read_log(&console))
            );
        }
        let o = ssh(&key, port, "true").output().unwrap();
        if o.status.success() {
            break;
        }
        assert!(
            t0.elapsed() < SSH_TIMEOUT,
            "{test}: no ssh login within {SSH_TIMEOUT:?} (last: {})\n--- console (tail) ---\n{}",
            out_text(&o),
            tail(&read_log(&console))
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    eprintln!("{test}: ssh login after {:?}", t0.elapsed());

    let o = ssh(&key, port, "sudo systemctl is-system-running --wait")
        .output()
        .unwrap();
    let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let failed = ssh(&key, port, "sudo systemctl --failed --no-legend --plain")
        .output()
        .unwrap();
    let failed_text = String::from_utf8_lossy(&failed.stdout).trim().to_string();
    let mut why = String::new();
    if !failed_text.is_empty() {
        // Each failed unit's status, to say why.
        let o = ssh(&key, port, "sudo systemctl --failed --no-legend --plain | awk '{print $1}' | xargs -r sudo systemctl status --no-pager -n 20").output().unwrap();
        why = out_text(&o);
    }
    assert!(
        matches!(state.as_str(), "running" | "degraded") && failed_text.is_empty(),
        "{test}: is-system-running: {state:?}; failed units: {failed_text:?}\n{why}"
    );
    eprintln!("{test}: system {state} after {:?}", t0.elapsed());

    // Shut down from inside: qemu exits, then dibr, cleaning up.
    let _ = ssh(&key, port, "sudo systemctl poweroff").output();
    let t1 = Instant::now();
    let st = loop {
        if let Ok(Some(st)) = vm.0.try_wait() {
            break st;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(300),
            "{test}: qemu did not exit after poweroff\n{}",
            tail(&read_log(&console))
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let text = read_log(&console);
    assert!(st.success(), "{test}: dibr vm exited {st}\n{}", tail(&text));

    // What dibr said before the boot.
    for want in [
        format!("ssh -p {port} -i "),
        "-o StrictHostKeyChecking=no".to_string(),
        "debian@localhost".to_string(),
        "Ctrl-A X".to_string(),
        "TCG (--no-kvm".to_string(),
        "-snapshot".to_string(),
    ] {
        assert!(
            text.contains(&want),
            "{test}: dibr vm did not print {want:?}\n{}",
            &text[..text.len().min(3000)]
        );
    }
    // The root filesystem was checked at boot.
    assert!(
        !text.contains("fsck not present"),
        "{test}: the initramfs has no fsck:\n{}",
        text.lines()
            .filter(|l| l.contains("fsck"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // initramfs-tools: "Will now check root file system ... fsck from
    // util-linux", then e2fsck's "cloudimg-rootfs: clean, N/M files, …";
    // or systemd-fsck-root when the initramfs left it to systemd.
    let root_fsck = (text.contains("check root file system")
        && text
            .lines()
            .any(|l| l.contains(": clean, ") && l.contains(" files, ")))
        || text
            .lines()
            .any(|l| l.contains("Finished") && l.contains("systemd-fsck-root"));
    assert!(
        root_fsck,
        "{test}: no root fsck on the console (`LABEL: clean, N/M files`):\n{}",
        text.lines()
            .filter(|l| l.contains("fsck") || l.contains("clean"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The seed's directory is gone.
    let leftover: Vec<_> = fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("dibr-vm.{dibr_pid}."))
        })
        .map(|e| e.path())
        .collect();
    assert!(leftover.is_empty(), "{test}: dibr vm left {leftover:?}");
    eprintln!("{test}: done in {:?}", t0.elapsed());
}
