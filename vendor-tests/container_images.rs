//! `-t docker` and `-t oci` (issue 17): image archives of the captured
//! tree, judged by the real loaders. As the CI user, `dibr build -t
//! docker,oci,tar --docker-target …` of the test OS with `dibr-test-hooks`
//! (which chowns 0:42, setcaps and makes a setuid file) twice with
//! `SOURCE_DATE_EPOCH`: the archives are byte-identical. As root,
//! `podman load` of each archive names the image as asked, and `podman
//! run` of it finds the test OS's /etc/os-release, /f42 owned 0:42, /suid
//! 4755 and cap_net_raw on /capbin (`getcap`); `docker load` of both too
//! when a Docker daemon already answers (the OCI archive carries Docker
//! 25's `manifest.json` beside `index.json`). `dibr assemble -t raw,docker` gives the
//! image of the tree the disk got (the generated fstab), named after the
//! image by default; a bad `--docker-target` is refused naming it.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::build::{build_cmd, serial, stage};
use common::*;

const EPOCH: &str = "1700000000";
const REF: &str = "dibr-vt/images:t1";
const QUIRK_CONF: &str = "/etc/containers/containers.conf.d/90-dibr-ci-ulimits.conf";
const QUIRK_TEXT: &str =
    "# Written by dibr's test suite: this machine's root lacks CAP_SYS_RESOURCE,\n\
# so Podman cannot raise nofile/nproc to its defaults (a CI machine quirk).\n\
[containers]\ndefault_ulimits = [\"nofile=10000:10000\", \"nproc=10000:10000\"]\n";

/// `ENGINE run --rm IMAGE ARGS…`'s output; fails the test on an error.
/// Podman's rlimit quirk of the CI machine (see containers.rs) is
/// written once when a run fails with it.
fn run_in(engine: &str, image: &str, args: &[&str]) -> String {
    let go = || {
        run(Command::new(engine)
            .args(["run", "--rm", "--network", "none", image])
            .args(args))
    };
    let mut o = go();
    if !o.status.success() && engine == "podman" && out_text(&o).contains("error setting rlimit") {
        fs::create_dir_all(Path::new(QUIRK_CONF).parent().unwrap()).unwrap();
        fs::write(QUIRK_CONF, QUIRK_TEXT).unwrap();
        o = go();
    }
    assert!(
        o.status.success(),
        "{engine} run {image} {args:?}\n{}",
        out_text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Load `archive` with `engine`, check the name it got and what runs in it.
fn load_and_check(test: &str, engine: &str, archive: &Path, want_name: &str) {
    let _ = run(Command::new(engine).args(["rmi", "-f", want_name]));
    let o = run(Command::new(engine).args(["load", "-i"]).arg(archive));
    let text = out_text(&o);
    assert!(
        o.status.success(),
        "{test}: {engine} load {archive:?}\n{text}"
    );
    assert!(
        text.contains(&format!("Loaded image: {want_name}"))
            || text.contains(&format!("Loaded image: localhost/{want_name}")),
        "{test}: {engine} load did not name the image {want_name}\n{text}"
    );
    let os = run_in(engine, want_name, &["cat", "/etc/os-release"]);
    assert!(
        os.contains("dibr test os"),
        "{test}: {engine}: os-release {os:?}"
    );
    let st = run_in(
        engine,
        want_name,
        &["stat", "-c", "%u:%g %a", "/f42", "/suid"],
    );
    assert_eq!(st, "0:42 644\n0:0 4755\n", "{test}: {engine}: owners/modes");
    let cap = run_in(engine, want_name, &["getcap", "/capbin"]);
    assert!(
        cap.contains("cap_net_raw=ep"),
        "{test}: {engine}: capability lost: {cap:?}"
    );
    println!("{test}: {engine} load {} ok", archive.display());
    let _ = run(Command::new(engine).args(["rmi", "-f", want_name]));
}

fn docker_answers() -> bool {
    which("docker").is_some()
        && Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
}

#[test]
fn docker_and_oci_archives_load_run_and_reproduce() {
    let test = "docker_and_oci_archives_load_run_and_reproduce";
    let _serial = serial();
    if !require(test, true, &["podman", "tar"]) {
        return;
    }
    let Some(s) = stage(test) else { return };
    for name in ["a", "b"] {
        let o = build_cmd(
            &s,
            &[
                "-n",
                "-t",
                "docker,oci,tar",
                "--docker-target",
                REF,
                "-o",
                name,
                "dibr-test-os",
                "dibr-test-hooks",
            ],
            &[("SOURCE_DATE_EPOCH", EPOCH)],
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{test}: build failed\n{}", out_text(&o));
    }
    for ext in ["docker.tar", "oci.tar"] {
        assert_eq!(
            sha256_file(&s.out.join(format!("a.{ext}"))),
            sha256_file(&s.out.join(format!("b.{ext}"))),
            "{test}: two builds' {ext} differ"
        );
    }
    load_and_check(test, "podman", &s.out.join("a.docker.tar"), REF);
    load_and_check(test, "podman", &s.out.join("a.oci.tar"), REF);
    if docker_answers() {
        load_and_check(test, "docker", &s.out.join("a.docker.tar"), REF);
        load_and_check(test, "docker", &s.out.join("a.oci.tar"), REF);
    } else {
        println!("{test}: no Docker daemon answers `docker info`: docker load not tried");
    }

    // The assembler's: the tree the disk got, the image name's reference.
    let o = run(Command::new(dibr_bin())
        .args([
            "assemble",
            "--from",
            "a.tar",
            "-o",
            "asm",
            "-t",
            "raw,docker",
        ])
        .args(["--layout", "gpt"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("DIB_BLOCK_DEVICE_CONFIG")
        .current_dir(&s.out));
    assert!(o.status.success(), "{test}: assemble\n{}", out_text(&o));
    let asm = "asm:latest";
    let _ = run(Command::new("podman").args(["rmi", "-f", asm]));
    run_ok(
        Command::new("podman")
            .args(["load", "-i"])
            .arg(s.out.join("asm.docker.tar")),
    );
    let fstab = run_in("podman", asm, &["cat", "/etc/fstab"]);
    assert!(
        fstab.contains("LABEL=cloudimg-rootfs / ext4"),
        "{test}: assembled image's fstab {fstab:?}"
    );
    let _ = run(Command::new("podman").args(["rmi", "-f", asm]));

    // A reference Docker would refuse is refused, naming it.
    let o = build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "docker",
            "--docker-target",
            "Bad/Name",
            "-o",
            "c",
            "dibr-test-os",
        ],
        &[],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(
        !o.status.success() && text.contains("--docker-target") && text.contains("Bad/Name"),
        "{test}: bad --docker-target not refused\n{text}"
    );
    assert!(!s.out.join("c.docker.tar").exists());
}
