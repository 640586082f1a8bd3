//! The Ironic deploy ramdisk (issue 13, acceptance 2): ironic-python-agent-
//! builder from PyPI, run unchanged as the unprivileged CI user, builds
//! ironic-python-agent's ramdisk from `debian-minimal` through dibr's
//! `disk-image-create` symlink (first on PATH, where a DIB user has DIB's),
//! with DIB's element library on `ELEMENTS_PATH` as docs/moving-from-dib.md
//! says. The kernel and initramfs then boot under qemu (TCG) and the
//! console shows the ironic-python-agent service starting and its first
//! lookup attempt (there is no Ironic API to answer it).
//!
//! Offline from opendev as an offline DIB user would be: the elements'
//! `source-repositories` (ironic-python-agent, requirements, glean) point
//! at local git repositories made from the PyPI sdists with
//! `DIB_REPOLOCATION_*`, and requirements' `upper-constraints.txt` is the
//! set pip resolves for ironic-python-agent today (made once and kept in
//! the test cache, so later runs install the same versions).
//!
//! Slow (a Debian build that pip-installs ironic-python-agent, ~4 min, and
//! a TCG boot of a 330 MB initramfs, ~4 min): runs with
//! `DIBR_IMAGE_TESTS=1` (`.ci/run` sets it), else prints "skipped".

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::build::{dib_venv, stage, user_cache, USER};
use common::vm::{self, Vm};
use common::*;

/// What the test takes from PyPI, pinned: the builder and the agent.
const IPA_BUILDER: &str = "ironic-python-agent-builder==7.4.0";
const IPA: (&str, &str) = ("ironic-python-agent", "13.0.0");
/// glean: DIB's simple-init clones it (and installs it from PyPI).
const GLEAN: (&str, &str) = ("glean", "1.25.1");

const BOOT_TIMEOUT: Duration = Duration::from_secs(900);

#[test]
fn ironic_python_agent_builder_ramdisk_boots_to_its_first_lookup() {
    let test = "ironic_python_agent_builder_ramdisk_boots_to_its_first_lookup";
    if !image_tests() {
        println!("skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: a Debian build with pip installs and a TCG boot)");
        return;
    }
    if !require(
        test,
        true,
        &[
            "mmdebstrap",
            "qemu-system-x86_64",
            "git",
            "cpio",
            "sha256sum",
        ],
    ) {
        return;
    }
    let Some((py, dib_elements)) = dib_venv(test) else {
        return;
    };
    let Some(builder) = ipa_builder(test) else {
        return;
    };
    let Some(repos) = local_repos(test, &py) else {
        return;
    };
    let Some(s) = stage(test) else { return };

    // dibr's disk-image-create first on PATH.
    let bin_dir = s.bin.parent().unwrap().join("path");
    fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(&s.bin, bin_dir.join("disk-image-create")).unwrap();
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&bin_dir));
    let path = format!(
        "{}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin_dir.display()
    );
    let elements_path = format!("{}:{}", s.elements.display(), dib_elements.display());
    let dibr_elements = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    let cache = user_cache("image-cache");
    let repo = |n: &str| repos.join(n).display().to_string();
    let env: Vec<(&str, String)> = vec![
        ("PATH", path),
        ("USER", USER.into()),
        ("ELEMENTS_PATH", elements_path),
        ("DIBR_ELEMENTS_DIR", dibr_elements.display().to_string()),
        ("DIB_IMAGE_CACHE", cache.display().to_string()),
        (
            "DIB_REPOLOCATION_ironic_python_agent",
            repo("ironic-python-agent"),
        ),
        ("DIB_REPOLOCATION_requirements", repo("requirements")),
        ("DIB_REPOLOCATION_glean", repo("glean")),
        // pip inside the target trusts what the host trusts (see the
        // dibr-test-host-ca element).
        ("PIP_CERT", "/tmp/in_target.d/host-ca-bundle.crt".into()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The builder's own command line: `ironic-python-agent-builder -o NAME
    // -r RELEASE -e ELEMENT DISTRO` (its README), run as the user.
    let t0 = Instant::now();
    let o = vm::as_user(&builder, &env_ref)
        .args([
            "-o",
            "ipa",
            "-r",
            "bookworm",
            "-e",
            "dibr-test-host-ca",
            "debian-minimal",
        ])
        .current_dir(&s.out)
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(
        o.status.success(),
        "{test}: ironic-python-agent-builder failed\n{text}"
    );
    eprintln!("{test}: ironic-python-agent-builder: {:?}", t0.elapsed());
    judge_outputs(test, &s.out, &text);
    boot_to_first_lookup(test, &s.out);
}

/// What the build left: the hook-written kernel, initramfs and checksum,
/// named in dibr's summary; DIB's element library used as DIB's; a
/// cpio whose /dev has the real nodes (made by the hook from the tree).
fn judge_outputs(test: &str, out: &Path, text: &str) {
    for f in ["ipa.kernel", "ipa.initramfs", "ipa.sha256"] {
        assert!(out.join(f).is_file(), "{test}: {f} missing\n{text}");
    }
    assert!(
        text.contains("(written by the elements)") && text.contains("ipa.initramfs"),
        "{test}: the summary does not name the ramdisk\n{}",
        tail(text)
    );
    // ironic-python-agent-builder sets DIB_CHECKSUM=sha256.
    run_ok(
        Command::new("sha256sum")
            .args(["-c", "ipa.sha256"])
            .current_dir(out),
    );
    for hook in [
        "99-ramdisk-create",
        "60-ironic-python-agent-ramdisk-install",
        "40-glean",
    ] {
        assert!(
            text.contains(&format!("{hook} completed")),
            "{test}: hook {hook} did not run to completion\n{}",
            tail(text)
        );
    }
    let listing = run_ok(Command::new("sh").arg("-c").arg(format!(
        "zcat {} | cpio -itvn --quiet",
        q(out.join("ipa.initramfs"))
    )));
    let listing = String::from_utf8_lossy(&listing.stdout);
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{test}: {path} not in the initramfs"))
            .to_string()
    };
    // 99-ramdisk-create mknods dev/random only when it is missing: dibr's
    // sandbox gives outside hooks the tree's /dev nodes, so cpio saw them.
    for (dev, numbers) in [("dev/random", "1,   8"), ("dev/null", "1,   3")] {
        let l = line(dev);
        assert!(
            l.starts_with('c') && l.contains(numbers),
            "{test}: {dev} in the initramfs is not the character device {numbers}: {l}"
        );
    }
    // Installed as root of the image, not as the build user.
    let agent = line("opt/ironic-python-agent/bin/ironic-python-agent");
    let owner: Vec<&str> = agent.split_whitespace().skip(2).take(2).collect();
    assert_eq!(owner, ["0", "0"], "{test}: owner of the agent: {agent}");
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with(" usr/lib/systemd/system/ironic-python-agent.service")),
        "{test}: no ironic-python-agent.service in the initramfs"
    );
}

/// Boot the kernel and initramfs and wait for the agent's first lookup.
fn boot_to_first_lookup(test: &str, out: &Path) {
    let log = out.join("ipa-boot.log");
    let mut q = vm::as_user("qemu-system-x86_64", &[]);
    q.args([
        "-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "1", "-m", "3072",
        "-display", "none", "-monitor", "none", "-no-reboot",
        "-nic", "user,model=virtio-net-pci",
        "-append",
        // Nothing listens on the host's 6385: the lookup fails and says so.
        "console=ttyS0 panic=-1 systemd.journald.forward_to_console=1 ipa-api-url=http://10.0.2.2:6385",
    ]);
    q.arg("-kernel").arg(out.join("ipa.kernel"));
    q.arg("-initrd").arg(out.join("ipa.initramfs"));
    q.arg("-serial").arg(format!("file:{}", log.display()));
    q.stdout(Stdio::null()).stderr(Stdio::null());
    let mut v = Vm(q.spawn().expect("starting qemu"));
    let t0 = Instant::now();
    let text = vm::wait_for(
        &mut v,
        &log,
        "attempting to perform lookup with http://10.0.2.2:6385",
        "the ironic-python-agent ramdisk",
        t0,
        BOOT_TIMEOUT,
    );
    assert!(
        text.contains("Started ironic-python-agent.service"),
        "{test}: systemd did not start ironic-python-agent.service"
    );
    eprintln!(
        "{test}: booted to the agent's first lookup in {:?}",
        t0.elapsed()
    );
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// ironic-python-agent-builder from PyPI in a venv of the test cache
/// (made once; `--no-deps`: its script needs only Python, and DIB is not
/// what runs here). Its elements are found beside the script, in the
/// venv's share/ (the builder's own lookup).
fn ipa_builder(test: &str) -> Option<PathBuf> {
    let venv = test_cache().join("ipa-builder-venv");
    let script = venv.join("bin/ironic-python-agent-builder");
    if !script.exists() {
        let _ = fs::remove_dir_all(&venv);
        fs::create_dir_all(test_cache()).unwrap();
        run_ok(
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&venv),
        );
        let o = run(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--no-deps",
            IPA_BUILDER,
        ]));
        if !o.status.success() {
            let _ = fs::remove_dir_all(&venv);
            return pip_failed(test, IPA_BUILDER, &o);
        }
    }
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&venv));
    Some(script)
}

/// The local stand-ins for opendev's repositories (made once, owned by
/// the CI user so git trusts them in the build): each from its PyPI
/// sdist, tagged with its version (pbr reads it), and `requirements`
/// with an `upper-constraints.txt` of what pip resolves for the agent.
fn local_repos(test: &str, py: &Path) -> Option<PathBuf> {
    let dir = test_cache().join("ipa-repos");
    let done = dir.join(".complete");
    if done.exists() {
        return Some(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("sdist")).unwrap();
    for (name, version) in [IPA, GLEAN] {
        let spec = format!("{name}=={version}");
        let o = run(Command::new(py)
            .args([
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
            ])
            .arg(dir.join("sdist"))
            .arg(&spec));
        if !o.status.success() {
            return pip_failed(test, &spec, &o);
        }
    }
    let constraints = upper_constraints(test, py)?;
    fs::create_dir_all(dir.join("requirements")).unwrap();
    fs::write(dir.join("requirements/upper-constraints.txt"), constraints).unwrap();
    run_ok(Command::new("chown").args(["-R", USER]).arg(&dir));
    let sdist = |prefix: &str| {
        fs::read_dir(dir.join("sdist"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("{test}: no {prefix} sdist"))
    };
    let git = "git -c user.name=dibr-test -c user.email=dibr-test@localhost";
    let script = format!(
        "set -e\n\
         mk() {{ mkdir -p \"$1\"; tar -xzf \"$2\" -C \"$1\" --strip-components=1; \
           cd \"$1\"; {git} init -q -b master; {git} add -A; \
           {git} commit -q -m 'from its PyPI sdist'; {git} tag \"$3\"; cd /; }}\n\
         mk {d}/ironic-python-agent {ipa} {ipa_v}\n\
         mk {d}/glean {glean} {glean_v}\n\
         cd {d}/requirements; {git} init -q -b master; {git} add -A\n\
         {git} commit -q -m 'upper-constraints from pip'\n",
        d = q(&dir),
        ipa = q(sdist("ironic_python_agent-")),
        ipa_v = IPA.1,
        glean = q(sdist("glean-")),
        glean_v = GLEAN.1,
    );
    run_ok(vm::as_user("sh", &[]).arg("-c").arg(&script));
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&dir));
    fs::write(&done, "").unwrap();
    Some(dir)
}

/// `NAME===VERSION` lines for everything pip would install for the agent
/// (openstack/requirements' format), the agent itself left out as there.
fn upper_constraints(test: &str, py: &Path) -> Option<String> {
    let spec = format!("{}=={}", IPA.0, IPA.1);
    let o = run(Command::new(py)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--dry-run",
            "--ignore-installed",
            "--report",
            "-",
        ])
        .arg(&spec));
    if !o.status.success() {
        return pip_failed(test, &spec, &o);
    }
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut lines: Vec<String> = report["install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let m = &i["metadata"];
            (
                m["name"].as_str().unwrap().to_string(),
                m["version"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(n, _)| n != IPA.0)
        .map(|(n, v)| format!("{n}==={v}"))
        .collect();
    lines.sort();
    assert!(lines.len() > 10, "{test}: pip resolved only {lines:?}");
    Some(lines.join("\n") + "\n")
}

fn pip_failed<T>(test: &str, what: &str, o: &std::process::Output) -> Option<T> {
    assert!(!is_ci(), "{test}: pip failed for {what}\n{}", out_text(o));
    skip(test, &format!("pip failed for {what} (offline?)"));
    None
}
