//! disk-image-create's root-filesystem options (issue 13, item 1):
//! `--image-size` below what the 1 PiB growth ceiling needs lowers the
//! ceiling (and says so), a size no ceiling fits is refused with the
//! smallest one that works, `--mkfs-options` (-i, -N, -m, -J), and
//! `--max-online-resize`, `--mkfs-journal-size`, `--image-extra-size`.
//! Judged by e2fsprogs: `e2fsck -fn`, `dumpe2fs -h` (inode count, inodes
//! per group, reserved blocks, journal size) and `resize2fs` growing the
//! result. dibr writes meta_bg without resize_inode, so the inode count
//! (32 bits) is the only limit on growth: the ceiling a build prints is
//! `floor((2^32-1) / inodes per group)` groups of 128 MiB.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const MIB: u64 = 1 << 20;
const GROUP: u64 = 128 * MIB;
const TOOLS: &[&str] = &["e2fsck", "dumpe2fs", "resize2fs", "tar", "truncate"];
/// The root filesystem on the whole disk, no partition table: the raw
/// output is the ext4 image itself.
const WHOLE_DISK: &str = "- local_loop:\n    name: image0\n    mkfs:\n      name: mkfs_root\n      mount:\n        mount_point: /\n        fstab:\n          options: \"defaults\"\n          fsck-passno: 1\n";

/// A tree of `files` empty files (many inodes) and `data_mib` MiB of
/// file data, as a tarball.
fn tree_tar(dir: &Path, name: &str, files: usize, data_mib: usize) -> PathBuf {
    let root = dir.join(name);
    for i in 0..files {
        let d = root.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&d).unwrap();
        }
        fs::write(d.join(format!("f{i}")), b"").unwrap();
    }
    fs::create_dir_all(&root).unwrap();
    if data_mib > 0 {
        let chunk: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8 + 1).collect();
        let mut data = Vec::with_capacity(data_mib * MIB as usize);
        for _ in 0..data_mib {
            data.extend_from_slice(&chunk);
        }
        fs::write(root.join("data.bin"), data).unwrap();
    }
    let tar = dir.join(format!("{name}.tar"));
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    fs::remove_dir_all(&root).unwrap();
    tar
}

fn assemble(dir: &Path, tar: &Path, name: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(dibr_bin())
        .args(["assemble", "-t", "raw", "--from"])
        .arg(tar)
        .args(["-o", name])
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("DIB_BLOCK_DEVICE_CONFIG", WHOLE_DISK)
        .env_remove("DIB_IMAGE_SIZE")
        .env_remove("DIB_JOURNAL_SIZE")
        .env_remove("DIB_IMAGE_EXTRA_SIZE")
        .env_remove("MAX_ONLINE_RESIZE")
        .output()
        .unwrap();
    (o.status.success(), out_text(&o))
}

fn assemble_ok(dir: &Path, tar: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    let (ok, text) = assemble(dir, tar, name, args);
    assert!(ok, "assemble {args:?} failed\n{text}");
    let raw = dir.join(format!("{name}.raw"));
    e2fsck_ok(&raw);
    (raw, text)
}

fn num(m: &std::collections::BTreeMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .unwrap_or_else(|| panic!("dumpe2fs has no {k:?}: {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k}: {:?}", m[k]))
}

/// The growth ceiling of a filesystem with `ipg` inodes per group, as
/// the build line prints it.
fn ceiling_text(ipg: u64) -> String {
    dibr::units::human((u32::MAX as u64 / ipg) * GROUP)
}

/// The build's ceiling line.
fn ceiling_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.contains("root ext4") && l.contains("virtual"))
        .unwrap_or_else(|| panic!("no root ext4 line in\n{text}"))
}

/// Grow a copy with resize2fs (offline) to `bytes` and check it.
fn grows_to(img: &Path, bytes: u64) {
    let copy = img.with_extension("grown");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(img)
            .arg(&copy),
    );
    run_ok(
        Command::new("truncate")
            .arg(format!("-s{bytes}"))
            .arg(&copy),
    );
    run_ok(Command::new(tool("resize2fs")).arg("-f").arg(&copy));
    e2fsck_ok(&copy);
    let d = dumpe2fs_h(&copy);
    assert_eq!(num(&d, "Block count") * 4096, bytes, "resize2fs grew it");
    fs::remove_file(copy).unwrap();
}

#[test]
fn image_size_too_small_for_1pib_lowers_the_ceiling() {
    let test = "image_size_too_small_for_1pib_lowers_the_ceiling";
    if !require(test, false, TOOLS) {
        return;
    }
    let t = scratch(test);
    let dir = t.path();
    let tar = tree_tar(dir, "tree", 40_000, 200);

    // Sized after the tree, the 1 PiB ceiling keeps 496 inodes per group:
    // 40000 inodes take 81 sparse groups.
    let (raw, text) = assemble_ok(dir, &tar, "auto", &[]);
    let line = ceiling_line(&text);
    let d = dumpe2fs_h(&raw);
    assert_eq!(num(&d, "Inodes per group"), 496, "{line}");
    assert_eq!(num(&d, "Block count").div_ceil(32768), 81, "{line}");
    assert!(
        line.contains(&format!("can grow online to {}", ceiling_text(496)))
            && line.contains("--max-online-resize"),
        "{line}"
    );
    fs::remove_file(&raw).unwrap();

    // 1 GiB holds the data but not 81 groups: the ceiling comes down.
    let (raw, text) = assemble_ok(dir, &tar, "fixed", &["--image-size", "1"]);
    let line = ceiling_line(&text);
    let d = dumpe2fs_h(&raw);
    let ipg = num(&d, "Inodes per group");
    assert_eq!(num(&d, "Block count") * 4096, 1 << 30);
    assert!(ipg > 496 && ipg * 8 >= 40_000, "ipg {ipg}");
    assert!(
        line.contains(&format!(
            "growth ceiling lowered from {} to {}",
            ceiling_text(496),
            ceiling_text(ipg)
        )),
        "ceiling for {ipg} inodes per group: {}\n{line}",
        ceiling_text(ipg)
    );
    grows_to(&raw, 3 << 30);
}

#[test]
fn too_small_at_any_ceiling_names_the_smallest_size() {
    let test = "too_small_at_any_ceiling_names_the_smallest_size";
    if !require(test, false, TOOLS) {
        return;
    }
    let t = scratch(test);
    let dir = t.path();
    // 70000 inodes need 3 groups even at 32768 inodes per group.
    let tar = tree_tar(dir, "tree", 70_000, 0);
    let (ok, text) = assemble(dir, &tar, "small", &["--image-size", "200M"]);
    assert!(!ok, "200M fits?\n{text}");
    assert!(
        !dir.join("small.raw").exists(),
        "a refused build leaves nothing"
    );
    let key = "the smallest --image-size that holds it is ";
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no smallest size in\n{text}"));
    let mib: u64 = text[at + key.len()..]
        .split('M')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable size in\n{text}"));
    assert!(mib > 256 && mib <= 384, "{mib} MiB\n{text}");
    let (raw, text) = assemble_ok(dir, &tar, "smallest", &["--image-size", &format!("{mib}M")]);
    let d = dumpe2fs_h(&raw);
    assert!(num(&d, "Inode count") >= 70_000, "{text}");
    let (ok, text) = assemble(
        dir,
        &tar,
        "below",
        &["--image-size", &format!("{}M", mib - 1)],
    );
    assert!(
        !ok,
        "{}M is smaller than the smallest size, yet fits\n{text}",
        mib - 1
    );

    // Data that fits but leaves no room for the journal: still the exact
    // smallest size (the journal is the last thing before the tables).
    let tar = tree_tar(dir, "data", 2_000, 180);
    let (ok, text) = assemble(dir, &tar, "journal", &["--image-size", "200M"]);
    assert!(!ok && text.contains("journal"), "{text}");
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no smallest size in\n{text}"));
    let mib: u64 = text[at + key.len()..]
        .split('M')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assemble_ok(dir, &tar, "journal", &["--image-size", &format!("{mib}M")]);
    let (ok, text) = assemble(
        dir,
        &tar,
        "journal1",
        &["--image-size", &format!("{}M", mib - 1)],
    );
    assert!(!ok, "{}M fits\n{text}", mib - 1);
}

#[test]
fn mkfs_options_set_inode_density_reserve_and_journal() {
    let test = "mkfs_options_set_inode_density_reserve_and_journal";
    if !require(test, false, TOOLS) {
        return;
    }
    let t = scratch(test);
    let dir = t.path();
    let tar = tree_tar(dir, "tree", 500, 4);

    // DIB's own default, -i 4096: one inode per 4 KiB, as mke2fs.
    let (raw, _) = assemble_ok(
        dir,
        &tar,
        "i4096",
        &["--image-size", "1", "--mkfs-options", "-i 4096"],
    );
    let d = dumpe2fs_h(&raw);
    assert_eq!(num(&d, "Inode count"), (1 << 30) / 4096);
    assert_eq!(num(&d, "Inodes per group"), 32768);

    let (raw, text) = assemble_ok(
        dir,
        &tar,
        "n",
        &[
            "--image-size",
            "1",
            "--mkfs-options=-N 100000 -m 1 -J size=16 -O ^resize_inode -F",
        ],
    );
    let d = dumpe2fs_h(&raw);
    let inodes = num(&d, "Inode count");
    assert!((100_000..100_000 + 8 * 16).contains(&inodes), "{inodes}");
    let blocks = num(&d, "Block count");
    assert_eq!(num(&d, "Reserved block count"), blocks / 100);
    assert_eq!(
        d.get("Total journal size").map(String::as_str),
        Some("16M"),
        "{text}"
    );

    for (opts, named) in [
        ("-O ^metadata_csum", "^metadata_csum"),
        ("-I 512", "-I 512"),
        ("-E stride=8", "stride"),
        ("-i 1024", "-i 1024"),
    ] {
        let (ok, text) = assemble(dir, &tar, "bad", &["--mkfs-options", opts]);
        assert!(
            !ok && text.contains(named) && text.contains("--mkfs-options"),
            "{opts}\n{text}"
        );
        assert!(!dir.join("bad.raw").exists());
    }
}

#[test]
fn max_online_resize_journal_and_extra_size() {
    let test = "max_online_resize_journal_and_extra_size";
    if !require(test, false, TOOLS) {
        return;
    }
    let t = scratch(test);
    let dir = t.path();
    let tar = tree_tar(dir, "tree", 70_000, 0);
    let (raw, _) = assemble_ok(dir, &tar, "default", &[]);
    let d = dumpe2fs_h(&raw);
    let default_blocks = num(&d, "Block count");
    assert_eq!(num(&d, "Inodes per group"), 496);
    fs::remove_file(&raw).unwrap();

    // DIB's unit: 4 KiB blocks; 4194304 = 16 GiB, below what 32768
    // inodes per group allow, so the groups are as dense as ext4 has them.
    let (raw, text) = assemble_ok(
        dir,
        &tar,
        "resize",
        &[
            "--max-online-resize",
            "4194304",
            "--mkfs-journal-size",
            "32",
        ],
    );
    let d = dumpe2fs_h(&raw);
    let line = ceiling_line(&text);
    assert_eq!(num(&d, "Inodes per group"), 32768, "{line}");
    assert!(num(&d, "Block count") * 10 < default_blocks, "{line}");
    assert!(
        line.contains(&format!("can grow online to {}", ceiling_text(32768))),
        "{line}"
    );
    assert_eq!(d.get("Total journal size").map(String::as_str), Some("32M"));
    grows_to(&raw, 2 << 30);
    let small_blocks = num(&d, "Block count");

    // DIB_IMAGE_EXTRA_SIZE (GiB) adds free space to the computed size.
    let o = Command::new(dibr_bin())
        .args(["assemble", "-t", "raw", "--from"])
        .arg(&tar)
        .args(["-o", "extra", "--max-online-resize", "4194304"])
        .current_dir(dir)
        .env("DIB_BLOCK_DEVICE_CONFIG", WHOLE_DISK)
        .env("DIB_IMAGE_EXTRA_SIZE", "0.5")
        .env("DIB_JOURNAL_SIZE", "32")
        .env_remove("DIB_IMAGE_SIZE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    let extra = dir.join("extra.raw");
    e2fsck_ok(&extra);
    let d = dumpe2fs_h(&extra);
    // At least 0.5 GiB free, and no more than that on top of the smallest
    // size (which already had some slack: its last group's floor).
    let free = num(&d, "Free blocks");
    let blocks = num(&d, "Block count");
    assert!(
        free >= 131_072 && blocks <= small_blocks + 131_072,
        "0.5 GiB extra: {free} blocks free, {blocks} blocks (without: {small_blocks})"
    );
    assert_eq!(d.get("Total journal size").map(String::as_str), Some("32M"));

    // A ceiling asked for is a demand: a size too small for it is refused.
    let (ok, text) = assemble(
        dir,
        &tar,
        "demand",
        &["--image-size", "0.5", "--max-online-resize", "274877906944"],
    );
    assert!(!ok && text.contains("--max-online-resize"), "{text}");
}

/// `dibr build` passes the same options to its assembler: a build of a
/// tree with many inodes and a small --image-size lowers the ceiling.
#[test]
fn build_lowers_the_ceiling_for_a_small_image_size() {
    let test = "build_lowers_the_ceiling_for_a_small_image_size";
    let _serial = common::build::serial();
    if !require(test, true, TOOLS) {
        return;
    }
    let Some(s) = common::build::stage(test) else {
        return;
    };
    let el = s.elements.join("dibr-test-inodes/post-root.d");
    fs::create_dir_all(&el).unwrap();
    let hook = el.join("10-many-files");
    fs::write(
        &hook,
        "#!/bin/bash\nset -eu\nfor d in $(seq 0 39); do mkdir -p \"$TARGET_ROOT/many/$d\"; (cd \"$TARGET_ROOT/many/$d\" && touch $(seq -f f%g 0 999)); done\n",
    )
    .unwrap();
    run_ok(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(s.elements.join("dibr-test-inodes")),
    );
    run_ok(Command::new("chmod").arg("a+x").arg(&hook));
    let o = common::build::build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "raw",
            "--image-size",
            "0.25",
            "-o",
            "img",
            "dibr-test-os",
            "dibr-test-inodes",
        ],
        &[("DIB_BLOCK_DEVICE_CONFIG", WHOLE_DISK)],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    let raw = s.out.join("img.raw");
    e2fsck_ok(&raw);
    let d = dumpe2fs_h(&raw);
    let ipg = num(&d, "Inodes per group");
    assert!(ipg * 2 >= 40_000 && ipg <= 32768, "{ipg}");
    assert!(
        ceiling_line(&text).contains(&format!(
            "growth ceiling lowered from {} to {}",
            ceiling_text(496),
            ceiling_text(ipg)
        )),
        "{text}"
    );
}

/// Values that start with `-` parse as values: DIB's `--mkfs-options
/// "-i 4096"` and a block-device YAML list (`- local_loop: …`).
#[test]
fn values_starting_with_a_dash_parse() {
    let test = "values_starting_with_a_dash_parse";
    if !require(test, false, TOOLS) {
        return;
    }
    let t = scratch(test);
    let dir = t.path();
    let tar = tree_tar(dir, "tree", 10, 1);
    let o = Command::new(dibr_bin())
        .args(["assemble", "-t", "raw", "--from"])
        .arg(&tar)
        .args([
            "-o",
            "dash",
            "--image-size",
            "0.25",
            "--block-device-config",
            WHOLE_DISK,
        ])
        .args(["--mkfs-options", "-i 8192"])
        .current_dir(dir)
        .env_remove("DIB_BLOCK_DEVICE_CONFIG")
        .env_remove("DIB_IMAGE_SIZE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    let raw = dir.join("dash.raw");
    e2fsck_ok(&raw);
    assert_eq!(num(&dumpe2fs_h(&raw), "Inode count"), (256 * MIB) / 8192);
}

/// Called by DIB's names, dibr's help shows them (DIB's `show_options`).
#[test]
fn dib_names_show_their_name_in_help() {
    let test = "dib_names_show_their_name_in_help";
    let t = scratch(test);
    for name in [
        "disk-image-create",
        "ramdisk-image-create",
        "element-info",
        "disk-image-get-kernel",
    ] {
        let link = t.path().join(name);
        std::os::unix::fs::symlink(dibr_bin(), &link).unwrap();
        let o = Command::new(&link).arg("--help").output().unwrap();
        let text = out_text(&o);
        assert!(o.status.success(), "{name} --help\n{text}");
        assert!(
            text.contains(&format!("Usage: {name} ")),
            "{name} --help\n{text}"
        );
    }
    // --docker-target names the docker output (issue 17): a name Docker
    // would refuse is refused up front, naming the option.
    let o = Command::new(t.path().join("disk-image-create"))
        .args(["--docker-target", "Me/Img:1", "-t", "docker", "vm"])
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(
        !o.status.success() && text.contains("--docker-target"),
        "{text}"
    );
}

/// `--logfile` (DIB's outfilter.py: timestamped lines, terminal quiet),
/// `--install-type` (DIB_DEFAULT_INSTALLTYPE for the hooks) and `-c`
/// (the caller's environment, ELEMENTS_PATH included, is gone).
#[test]
fn build_logfile_install_type_and_clear_env() {
    let test = "build_logfile_install_type_and_clear_env";
    let _serial = common::build::serial();
    if !require(test, true, &["tar"]) {
        return;
    }
    let Some(s) = common::build::stage(test) else {
        return;
    };
    let el = s.elements.join("dibr-test-envdump/post-root.d");
    fs::create_dir_all(&el).unwrap();
    let hook = el.join("10-env");
    fs::write(
        &hook,
        "#!/bin/bash\necho \"installtype=$DIB_DEFAULT_INSTALLTYPE marker=${DIB_MARKER:-unset}\" > \"$TARGET_ROOT/hook-env\"\necho hook-output-line\n",
    )
    .unwrap();
    run_ok(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(s.elements.join("dibr-test-envdump")),
    );
    run_ok(Command::new("chmod").arg("a+x").arg(&hook));
    let args = [
        "-n",
        "-t",
        "tar",
        "-o",
        "img",
        "--logfile",
        "build.log",
        "--install-type",
        "package",
    ];
    let o = common::build::build_cmd(
        &s,
        &[&args[..], &["dibr-test-os", "dibr-test-envdump"]].concat(),
        &[("DIB_MARKER", "visible")],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    assert!(text.contains("Output logs going to: build.log"), "{text}");
    assert!(
        !text.contains("hook-output-line") && !text.contains("dibr: "),
        "terminal not quiet\n{text}"
    );
    let log = fs::read_to_string(s.out.join("build.log")).unwrap();
    assert!(log.lines().count() > 5, "{log}");
    for l in log.lines() {
        let b = l.as_bytes();
        assert!(
            b.len() >= 26 && b[4] == b'-' && b[10] == b' ' && b[19] == b'.' && &l[23..26] == " | ",
            "not an outfilter.py line: {l:?}"
        );
    }
    assert!(log.contains(" | hook-output-line"), "{log}");
    // Extracted as the tar reads it: the member's exact spelling is the
    // capture's business.
    let x = dir_for_extract(&s.out);
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(s.out.join("img.tar"))
            .arg("-C")
            .arg(&x),
    );
    assert_eq!(
        fs::read_to_string(x.join("hook-env")).unwrap().trim(),
        "installtype=package marker=visible"
    );

    // -c: DIB's `exec -c`; ELEMENTS_PATH goes with the rest, so the test
    // elements are not found, and the error reaches the log.
    let o = common::build::build_cmd(
        &s,
        &[
            "-c",
            "-n",
            "-t",
            "tar",
            "-o",
            "c",
            "--logfile",
            "c.log",
            "dibr-test-os",
        ],
        &[("DIB_MARKER", "visible")],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("Re-execing to clear environment."), "{text}");
    assert!(text.contains("dibr-test-os"), "{text}");
    let log = fs::read_to_string(s.out.join("c.log")).unwrap();
    assert!(
        log.contains(" | dibr: error: ") && log.contains("dibr-test-os"),
        "{log}"
    );
}

fn dir_for_extract(out: &Path) -> PathBuf {
    let x = out.join("extracted");
    fs::create_dir_all(&x).unwrap();
    x
}

/// A test element whose hooks print `lines` (and the last one fails with
/// `fail`), in post-root.d.
fn noisy_element(s: &common::build::Stage, name: &str, hooks: &[(&str, &str)]) {
    let d = s.elements.join(name).join("post-root.d");
    fs::create_dir_all(&d).unwrap();
    for (hook, body) in hooks {
        let p = d.join(hook);
        fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
    }
    run_ok(
        Command::new("chmod")
            .args(["-R", "a+rX,a+x"])
            .arg(s.elements.join(name)),
    );
}

/// dibr build's default terminal: a line per phase (with its hooks), the
/// summary; the hooks' output only in the build log the summary names.
/// A failing hook's whole output is shown, and only that hook's.
#[test]
fn build_output_is_compact_and_a_failing_hook_is_shown_whole() {
    let test = "build_output_is_compact_and_a_failing_hook_is_shown_whole";
    let _serial = common::build::serial();
    if !require(test, true, &["tar"]) {
        return;
    }
    let Some(s) = common::build::stage(test) else {
        return;
    };
    noisy_element(
        &s,
        "dibr-test-noisy",
        &[(
            "10-talk",
            "for i in $(seq 1 200); do echo hook-output-line-$i; done",
        )],
    );
    let o = common::build::build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "tar",
            "-o",
            "img",
            "dibr-test-os",
            "dibr-test-noisy",
        ],
        &[],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    assert!(
        !text.contains("hook-output-line"),
        "{test}: hook output on the terminal\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("dibr: post-root.d done in") && l.ends_with("(1 hook)")),
        "{test}: no phase line\n{text}"
    );
    assert!(
        text.lines().count() < 30,
        "{test}: {} lines\n{text}",
        text.lines().count()
    );
    let log = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("build log: "))
        .unwrap_or_else(|| panic!("{test}: the summary names no build log\n{text}"));
    let log_text = fs::read_to_string(log).unwrap();
    assert!(
        log_text.contains(" | hook-output-line-200")
            && log_text.contains(" | dibr: build finished"),
        "{test}: the build log lacks the hook's output or dibr's lines\n{log_text}"
    );
    assert!(
        text.contains("img.tar: ")
            && text
                .lines()
                .last()
                .is_some_and(|l| l.contains("build log: ")),
        "{test}: no summary at the end\n{text}"
    );

    // A failing hook: its 300 lines on the terminal, not the hook before.
    noisy_element(
        &s,
        "dibr-test-failing",
        &[
            ("10-fine", "echo earlier-hook-line"),
            (
                "20-fail",
                "for i in $(seq 1 300); do echo failing-hook-line-$i; done; echo to-stderr >&2; exit 3",
            ),
        ],
    );
    let o = common::build::build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "tar",
            "-o",
            "bad",
            "dibr-test-os",
            "dibr-test-failing",
        ],
        &[],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(
        !o.status.success(),
        "{test}: the failing build succeeded\n{text}"
    );
    assert!(
        text.contains("post-root.d failed in 20-fail")
            && (1..=300).all(|i| text.contains(&format!("| failing-hook-line-{i}\n")))
            && text.contains("| to-stderr"),
        "{test}: the failing hook's output is not shown whole\n{text}"
    );
    assert!(
        !text.contains("earlier-hook-line"),
        "{test}: an earlier hook's output shown\n{text}"
    );
    assert!(
        !s.out.join("bad.tar").exists(),
        "{test}: an output of a failed build"
    );
}
