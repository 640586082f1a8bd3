//! `dibr check` and `dibr get-kernel` on hostile images (issue 14, part
//! 4: readers with budgets). Each reproducer of the issue is rebuilt here
//! as an image (`dibr mkfs` from a tree the test writes; `debugfs` for an
//! i_size no tree can have; bytes poked for a corrupt superblock), and
//! each run of dibr on it is measured: it must end in under 5 s with at
//! most 256 MB of RSS (`/usr/bin/time -f %M`), with a clear message naming
//! the file and the limit, or with the right item FAILed and the others
//! judged as on the good image.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;

const TOOLS: &[&str] = &["debugfs", "time", "timeout"];
const KVER: &str = "6.1.0-13-test";
/// The bounds for every run on a hostile image.
const MAX_SECS: f64 = 5.0;
const MAX_RSS_KB: u64 = 256 * 1024;
/// Past this a run is killed (so a regression fails the test rather than
/// hanging it); `/usr/bin/time` still reports the RSS it reached.
const KILL_AFTER: &str = "60";
const MIB: usize = 1 << 20;

/// Random bytes behind an x86-64 bzImage header (`HdrS`, boot protocol
/// 2.15, `XLF_KERNEL_64`), which `check` reads for the kernel's format.
fn kernel_bytes() -> Vec<u8> {
    let mut k = prng_bytes(61, 300_000);
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
    k
}
fn initrd_bytes() -> Vec<u8> {
    prng_bytes(62, 200_000)
}

/// A small tree `dibr check` passes: cloud-init (growpart, datasources),
/// sshd enabled, no host keys, an empty machine-id, a kernel and initrd
/// and, with `grub`, a grub.cfg naming them with console=ttyS0.
fn base_tree(root: &Path, grub: bool) {
    let w = |p: &str, d: &[u8]| write_file(&root.join(p.trim_start_matches('/')), d);
    let ln = |target: &str, p: &str| {
        let p = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    };
    w(&format!("/boot/vmlinuz-{KVER}"), &kernel_bytes());
    w(&format!("/boot/initrd.img-{KVER}"), &initrd_bytes());
    if grub {
        w(
            "/boot/grub/grub.cfg",
            format!(
                "set default=\"0\"\nmenuentry 'Test' {{\n\tlinux /boot/vmlinuz-{KVER} root=LABEL=cloudimg-rootfs ro console=ttyS0\n\tinitrd /boot/initrd.img-{KVER}\n}}\n"
            )
            .as_bytes(),
        );
    }
    w("/etc/machine-id", b"");
    w("/etc/hostname", b"cloud\n");
    w("/usr/bin/cloud-init", b"#!/bin/sh\n");
    w(
        "/etc/cloud/cloud.cfg",
        b"cloud_init_modules:\n - growpart\n - resizefs\n - [ssh, always]\n",
    );
    w(
        "/etc/cloud/cloud.cfg.d/90_dpkg.cfg",
        b"datasource_list: [ ConfigDrive, OpenStack, None ]\n",
    );
    w("/lib/systemd/system/cloud-init.service", b"[Unit]\n");
    ln(
        "/lib/systemd/system/cloud-init.service",
        "/etc/systemd/system/cloud-init.target.wants/cloud-init.service",
    );
    w("/usr/bin/growpart", b"#!/bin/sh\n");
    w("/usr/sbin/sshd", b"\x7fELF");
    w("/lib/systemd/system/ssh.service", b"[Unit]\n");
    ln(
        "/lib/systemd/system/ssh.service",
        "/etc/systemd/system/multi-user.target.wants/ssh.service",
    );
    w("/etc/udev/rules.d/70-persistent-net.rules", b"");
    w(
        "/etc/netplan/50-cloud-init.yaml",
        b"network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n",
    );
}

/// `tree` as a whole-disk ext4 image labelled as DIB's root.
fn image_of(tree: &Path, img: &Path) {
    run_ok(
        Command::new(dibr_bin())
            .args(["mkfs", "-L", "cloudimg-rootfs", "--from"])
            .arg(tree)
            .arg("-o")
            .arg(img),
    );
}

/// `n` files `dir/<prefix>NNNNN<suffix>` of `content`, hard links to one
/// file (a new one every 50 000 links: the host's limit is 65 000).
fn hard_links(dir: &Path, prefix: &str, suffix: &str, n: usize, content: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    let mut first = PathBuf::new();
    for i in 0..n {
        let p = dir.join(format!("{prefix}{i:05}{suffix}"));
        if i % 50_000 == 0 {
            fs::write(&p, content).unwrap();
            first = p;
        } else {
            fs::hard_link(&first, p).unwrap();
        }
    }
}

/// Exactly `size` bytes: `head`, then comment lines.
fn padded(head: &str, size: usize) -> Vec<u8> {
    let mut v = head.as_bytes().to_vec();
    while v.len() < size {
        let line = b"# padding padding padding padding padding padding padding\n";
        let k = line.len().min(size - v.len());
        v.extend_from_slice(&line[..k]);
    }
    v
}

/// One dibr run, measured.
struct Run {
    code: Option<i32>,
    text: String,
}

/// Runs dibr under `/usr/bin/time` (its maximum RSS: `timeout`'s rusage
/// includes the child it waited for), requires the bounds (under
/// 5 s, at most 256 MB RSS, exit 0 or 1 rather than a signal) and reports
/// the figures.
fn measured(test: &str, args: &[&OsStr]) -> Run {
    let work = scratch("time");
    let stats = work.path().join("stats");
    let t0 = Instant::now();
    let o = run(Command::new(tool("time"))
        .args(["-f", "%M", "-o"])
        .arg(&stats)
        .arg(tool("timeout"))
        .args(["-s", "KILL", KILL_AFTER])
        .arg(dibr_bin())
        .args(args));
    let secs = t0.elapsed().as_secs_f64();
    let stats = fs::read_to_string(&stats).unwrap();
    let text = out_text(&o);
    let what: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    assert!(
        !stats.contains("signal") && matches!(o.status.code(), Some(0 | 1)),
        "{test}: dibr {what:?} was killed (after {secs:.1} s; {KILL_AFTER} s is the limit): {stats}\n{text}"
    );
    let rss_kb: u64 = stats
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{test}: /usr/bin/time said {stats:?}"));
    eprintln!(
        "{test}: dibr {}: exit {:?}, {secs:.2} s, {:.1} MB max RSS",
        what.join(" "),
        o.status.code(),
        rss_kb as f64 / 1024.0
    );
    assert!(
        secs < MAX_SECS,
        "{test}: dibr {what:?} took {secs:.2} s\n{text}"
    );
    assert!(
        rss_kb <= MAX_RSS_KB,
        "{test}: dibr {what:?} used {rss_kb} KiB\n{text}"
    );
    Run {
        code: o.status.code(),
        text,
    }
}

fn check(test: &str, img: &Path) -> Run {
    measured(test, &["check".as_ref(), img.as_os_str()])
}

fn get_kernel(test: &str, img: &Path, prefix: &Path, extra: &[&str]) -> Run {
    let mut a: Vec<&OsStr> = vec![
        "get-kernel".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        prefix.as_os_str(),
    ];
    a.extend(extra.iter().map(OsStr::new));
    measured(test, &a)
}

/// Every item line of check's output: item → (status, detail).
fn items(out: &str) -> BTreeMap<String, (String, String)> {
    out.lines()
        .filter_map(|l| {
            let (st, rest) = l.split_once(' ')?;
            if !matches!(st, "PASS" | "FAIL" | "WARN") {
                return None;
            }
            let (item, detail) = rest.split_once(": ")?;
            Some((item.to_string(), (st.to_string(), detail.to_string())))
        })
        .collect()
}

/// The hostile image's check: exit 1, `item` FAILed with every word of
/// `words` in its detail, every other item as on the good image (but
/// serial-console, judged from the kernel's command line, fails with the
/// kernel item).
fn only_item_fails(test: &str, good: &Run, bad: &Run, item: &str, words: &[&str]) {
    assert_eq!(
        bad.code,
        Some(1),
        "{test}: check did not fail\n{}",
        bad.text
    );
    let (g, b) = (items(&good.text), items(&bad.text));
    let (st, detail) = b
        .get(item)
        .unwrap_or_else(|| panic!("{test}: no {item} item\n{}", bad.text));
    assert_eq!(st, "FAIL", "{test}: {item}\n{}", bad.text);
    eprintln!("{test}: FAIL {item}: {detail}");
    for w in words {
        assert!(detail.contains(w), "{test}: {item}: no {w:?} in: {detail}");
    }
    for (name, (gst, _)) in &g {
        if name == item || (item == "kernel" && name == "serial-console") {
            continue;
        }
        let bst = b.get(name).map(|(s, _)| s.as_str());
        assert_eq!(
            bst,
            Some(gst.as_str()),
            "{test}: {name} changed from {gst}\n{}",
            bad.text
        );
    }
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    PathBuf::from(format!("{}.{ext}", prefix.display()))
}

/// A failed get-kernel: exit 1, every word in its message, nothing written.
fn refused(test: &str, r: &Run, prefix: &Path, words: &[&str]) {
    assert_eq!(r.code, Some(1), "{test}: get-kernel\n{}", r.text);
    eprintln!(
        "{test}: {}",
        r.text
            .lines()
            .filter(|l| l.contains("rror"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    for w in words {
        assert!(r.text.contains(w), "{test}: no {w:?} in\n{}", r.text);
    }
    for ext in ["vmlinuz", "initrd"] {
        assert!(
            !with_ext(prefix, ext).exists(),
            "{test}: {ext} written\n{}",
            r.text
        );
    }
}

/// The good image, checked: the baseline the hostile ones are compared to.
fn good_check(test: &str, dir: &Path, grub: bool) -> Run {
    let tree = dir.join(format!("good-{grub}"));
    base_tree(&tree, grub);
    let img = dir.join(format!("good-{grub}.img"));
    image_of(&tree, &img);
    let r = check(test, &img);
    assert_eq!(r.code, Some(0), "{test}: the good image\n{}", r.text);
    fs::remove_dir_all(&tree).unwrap();
    r
}

#[test]
fn grub_cfg_nested_20000_deep() {
    let test = "grub_cfg_nested_20000_deep";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let good = good_check(test, dir, true);
    let tree = dir.join("tree");
    base_tree(&tree, true);
    // 20 000 nested blocks, 80 KB: the stack overflow.
    let deep = "x {\n".repeat(20_000) + &"}\n".repeat(20_000);
    let cfg = tree.join("boot/grub/grub.cfg");
    let cfg_text = deep + &fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, cfg_text).unwrap();
    let img = dir.join("deep.img");
    image_of(&tree, &img);
    let r = check(test, &img);
    only_item_fails(
        test,
        &good,
        &r,
        "kernel",
        &["/boot/grub/grub.cfg", "line 65", "nested more than 64 deep"],
    );
    let prefix = dir.join("k");
    let r = get_kernel(test, &img, &prefix, &[]);
    refused(
        test,
        &r,
        &prefix,
        &["/boot/grub/grub.cfg", "nested more than 64 deep"],
    );
}

#[test]
fn hard_links_meet_the_read_budget() {
    let test = "hard_links_meet_the_read_budget";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let good = good_check(test, dir, true);
    let budget = ["more would pass the limit of 64 MiB for file contents read"];

    // 3 000 BLS entries, hard links to one 4 MiB file (~12 GB read before).
    let tree = dir.join("bls");
    base_tree(&tree, true);
    fs::write(tree.join("boot/grub/grub.cfg"), "insmod blscfg\nblscfg\n").unwrap();
    let entry = padded(
        &format!("title Test\nlinux /boot/vmlinuz-{KVER}\ninitrd /boot/initrd.img-{KVER}\noptions ro console=ttyS0\n"),
        4 * MIB,
    );
    hard_links(
        &tree.join("boot/loader/entries"),
        "e",
        ".conf",
        3000,
        &entry,
    );
    let img = dir.join("bls.img");
    image_of(&tree, &img);
    fs::remove_dir_all(&tree).unwrap();
    let r = check(test, &img);
    only_item_fails(
        test,
        &good,
        &r,
        "kernel",
        &[&["/boot/loader/entries/e000"][..], &budget[..]].concat(),
    );
    let prefix = dir.join("bls-k");
    let r = get_kernel(test, &img, &prefix, &[]);
    refused(
        test,
        &r,
        &prefix,
        &[&["/boot/loader/entries/e000"][..], &budget[..]].concat(),
    );
    // A budget large enough for them all is a choice the user can make.
    let r = get_kernel(test, &img, &prefix, &["--read-budget", "100M"]);
    refused(test, &r, &prefix, &["limit of 100 MiB"]);

    // 300 netplan files, hard links to one 4 MiB file (check past 5.5 GB).
    let tree = dir.join("netplan");
    base_tree(&tree, true);
    let yaml = padded("network:\n  version: 2\n", 4 * MIB);
    hard_links(&tree.join("etc/netplan"), "6", ".yaml", 300, &yaml);
    let img = dir.join("netplan.img");
    image_of(&tree, &img);
    fs::remove_dir_all(&tree).unwrap();
    let r = check(test, &img);
    only_item_fails(
        test,
        &good,
        &r,
        "no-mac-address",
        &[&["/etc/netplan/6"][..], &budget[..]].concat(),
    );

    // 2 000 cloud.cfg.d files, hard links to one 4 MiB file (> 60 s).
    let tree = dir.join("cloudcfg");
    base_tree(&tree, true);
    let cfg = padded("datasource_list: [ OpenStack ]\n", 4 * MIB);
    hard_links(&tree.join("etc/cloud/cloud.cfg.d"), "9", ".cfg", 2000, &cfg);
    let img = dir.join("cloudcfg.img");
    image_of(&tree, &img);
    fs::remove_dir_all(&tree).unwrap();
    let r = check(test, &img);
    only_item_fails(
        test,
        &good,
        &r,
        "cloud-init-datasource",
        &[&["/etc/cloud/cloud.cfg.d/9"][..], &budget[..]].concat(),
    );
}

#[test]
fn get_kernel_output_is_bounded() {
    let test = "get_kernel_output_is_bounded";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let initrd = format!("/boot/initrd.img-{KVER}");
    let prefix = dir.join("k");

    // A sparse initrd: 1 TiB (past --max-output), then 1 GiB (under it,
    // but all holes).
    for (size, words) in [
        (1u64 << 40, &["1 TiB", "2 GiB limit", "--max-output"][..]),
        (1 << 30, &["1 GiB long", "refused as sparse"][..]),
    ] {
        let tree = dir.join("sparse");
        base_tree(&tree, true);
        let f = fs::OpenOptions::new()
            .append(true)
            .open(tree.join(&initrd[1..]))
            .unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let img = dir.join("sparse.img");
        image_of(&tree, &img);
        fs::remove_dir_all(&tree).unwrap();
        let r = get_kernel(test, &img, &prefix, &[]);
        refused(test, &r, &prefix, &[&[initrd.as_str()][..], words].concat());
        fs::remove_file(img).unwrap();
    }

    // An i_size of 2^63 (set by debugfs: no tree has it).
    let tree = dir.join("isize");
    base_tree(&tree, true);
    let img = dir.join("isize.img");
    image_of(&tree, &img);
    run_ok(
        Command::new(tool("debugfs"))
            .args(["-w", "-R", &format!("sif {initrd} size 0x8000000000000000")])
            .arg(&img),
    );
    let stat = run_ok(
        Command::new(tool("debugfs"))
            .args(["-R", &format!("stat {initrd}")])
            .arg(&img),
    );
    assert!(
        out_text(&stat).contains("Size: 9223372036854775808"),
        "{test}: debugfs did not set the size\n{}",
        out_text(&stat)
    );
    let r = get_kernel(test, &img, &prefix, &[]);
    refused(
        test,
        &r,
        &prefix,
        &[initrd.as_str(), "9223372036854775808 bytes", "2 GiB limit"],
    );

    // An initrd line naming a 1 MiB file 200 000 times: a 2 MB line.
    let tree = dir.join("many");
    base_tree(&tree, true);
    write_file(&tree.join("boot/one"), &prng_bytes(63, MIB));
    let img = dir.join("many.img");
    let cfg = |n: usize| {
        format!(
            "menuentry 'Many' {{\n\tlinux /boot/vmlinuz-{KVER} ro console=ttyS0\n\tinitrd{}\n}}\n",
            " /boot/one".repeat(n)
        )
    };
    for (n, words) in [
        (
            200_000,
            &["line 3: 2000007 bytes long", "64 KiB limit for one line"][..],
        ),
        (40, &["names 40 initrds, more than the limit of 32"][..]),
    ] {
        fs::write(tree.join("boot/grub/grub.cfg"), cfg(n)).unwrap();
        let _ = fs::remove_file(&img);
        image_of(&tree, &img);
        let r = get_kernel(test, &img, &prefix, &[]);
        refused(
            test,
            &r,
            &prefix,
            &[&["/boot/grub/grub.cfg"][..], words].concat(),
        );
        let r = check(test, &img);
        assert!(
            items(&r.text)
                .get("kernel")
                .is_some_and(|(s, d)| s == "FAIL" && words.iter().all(|w| d.contains(w))),
            "{test}: check\n{}",
            r.text
        );
    }

    // Three of them: 3 MiB, past --max-output 2M together, not alone;
    // under --max-output 3M they come out whole.
    let cfg = format!(
        "menuentry 'Three' {{\n\tlinux /boot/vmlinuz-{KVER} ro console=ttyS0\n\tinitrd /boot/one /boot/one /boot/one\n}}\n"
    );
    fs::write(tree.join("boot/grub/grub.cfg"), cfg).unwrap();
    fs::remove_file(&img).unwrap();
    image_of(&tree, &img);
    let r = get_kernel(test, &img, &prefix, &["--max-output", "2M"]);
    refused(
        test,
        &r,
        &prefix,
        &["/boot/one + /boot/one + /boot/one", "3 MiB", "2 MiB limit"],
    );
    let r = get_kernel(test, &img, &prefix, &["--max-output", "3M"]);
    assert_eq!(r.code, Some(0), "{test}\n{}", r.text);
    assert!(fs::read(with_ext(&prefix, "vmlinuz")).unwrap() == kernel_bytes());
    assert!(fs::read(with_ext(&prefix, "initrd")).unwrap() == prng_bytes(63, MIB).repeat(3));
}

#[test]
fn boot_with_100000_entries() {
    let test = "boot_with_100000_entries";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    base_tree(&tree, false);
    // Every one a kernel candidate (vmlinuz-5.0.N, older than KVER).
    hard_links(&tree.join("boot"), "vmlinuz-5.0.", "", 100_000, b"old");
    let img = dir.join("boot.img");
    image_of(&tree, &img);
    fs::remove_dir_all(&tree).unwrap();
    let prefix = dir.join("k");
    let r = get_kernel(test, &img, &prefix, &[]);
    assert_eq!(r.code, Some(0), "{test}\n{}", r.text);
    assert!(
        r.text.contains(&format!("newest kernel in /boot ({KVER})")),
        "{test}\n{}",
        r.text
    );
    assert!(fs::read(with_ext(&prefix, "vmlinuz")).unwrap() == kernel_bytes());
    assert!(fs::read(with_ext(&prefix, "initrd")).unwrap() == initrd_bytes());
    let r = check(test, &img);
    assert_eq!(r.code, Some(0), "{test}\n{}", r.text);
    // A directory budget too small for it is named.
    let r = measured(
        test,
        &[
            "check".as_ref(),
            img.as_os_str(),
            "--dir-budget".as_ref(),
            "1M".as_ref(),
        ],
    );
    assert!(
        items(&r.text)
            .get("kernel")
            .is_some_and(|(s, d)| s == "FAIL"
                && d.contains("/boot")
                && d.contains("limit of 1 MiB for directory listings kept")),
        "{test}\n{}",
        r.text
    );
}

#[test]
fn one_bad_item_fails_alone() {
    let test = "one_bad_item_fails_alone";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let good = good_check(test, dir, false);

    // A looping /boot/vmlinuz-1 is passed over (the real kernel is still
    // found); a looping /etc/netplan fails no-mac-address alone.
    let tree = dir.join("loop");
    base_tree(&tree, false);
    symlink("vmlinuz-1", tree.join("boot/vmlinuz-1")).unwrap();
    fs::remove_dir_all(tree.join("etc/netplan")).unwrap();
    symlink("netplan", tree.join("etc/netplan")).unwrap();
    let img = dir.join("loop.img");
    image_of(&tree, &img);
    let r = check(test, &img);
    only_item_fails(
        test,
        &good,
        &r,
        "no-mac-address",
        &["/etc/netplan", "more than 40 symbolic links"],
    );
    let k = &items(&r.text)["kernel"];
    assert!(
        k.0 == "PASS" && k.1.contains("/boot/vmlinuz-1") && k.1.contains("passed over"),
        "{test}: {k:?}"
    );
    let prefix = dir.join("k");
    let r = get_kernel(test, &img, &prefix, &[]);
    assert_eq!(r.code, Some(0), "{test}\n{}", r.text);
    assert!(fs::read(with_ext(&prefix, "vmlinuz")).unwrap() == kernel_bytes());

    // A cloud.cfg that cannot be parsed, and one that expands 9^16
    // aliases ("billion laughs"): cloud-init-datasource FAILs, naming it.
    let mut bomb = vec!["a: &a [x, x, x, x, x, x, x, x, x]".to_string()];
    for (prev, n) in "abcdefghijklmno".chars().zip("bcdefghijklmnop".chars()) {
        bomb.push(format!(
            "{n}: &{n} [{}]",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    bomb.push("datasource_list: [ OpenStack ]".into());
    for (name, cfg, words) in [
        (
            "badcfg",
            "cloud_init_modules:\n - growpart\n - resizefs\n datasource_list: [ : {\n".to_string(),
            &["/etc/cloud/cloud.cfg: "][..],
        ),
        (
            "bomb",
            bomb.join("\n") + "\n",
            &["/etc/cloud/cloud.cfg: ", "budget"][..],
        ),
    ] {
        let tree = dir.join(name);
        base_tree(&tree, false);
        fs::write(tree.join("etc/cloud/cloud.cfg"), cfg).unwrap();
        fs::remove_file(tree.join("etc/cloud/cloud.cfg.d/90_dpkg.cfg")).unwrap();
        let img = dir.join(format!("{name}.img"));
        image_of(&tree, &img);
        let r = check(test, &img);
        let it = items(&r.text);
        let ds = &it["cloud-init-datasource"];
        assert!(
            ds.0 == "FAIL" && words.iter().all(|w| ds.1.contains(w)),
            "{test}: {name}: {ds:?}\n{}",
            r.text
        );
        eprintln!("{test}: {name}: FAIL cloud-init-datasource: {}", ds.1);
    }

    // A corrupt superblock (s_log_block_size 20) is named as one, on the
    // whole disk and in an MBR partition (`dibr assemble --layout mbr`).
    let whole = dir.join("loop.img");
    let tree = dir.join("part");
    base_tree(&tree, false);
    run_ok(
        Command::new(dibr_bin())
            .args([
                "assemble", "-t", "raw", "--layout", "mbr", "-o", "part", "--from",
            ])
            .arg(&tree)
            .current_dir(dir)
            .env_remove("DIB_BLOCK_DEVICE_CONFIG")
            .env_remove("DIB_IMAGE_SIZE"),
    );
    let part = dir.join("part.raw");
    let mbr = fs::read(&part).unwrap()[..512].to_vec();
    let lba = u32::from_le_bytes(mbr[446 + 8..446 + 12].try_into().unwrap()) as usize;
    for (img, start, volume) in [
        (&whole, 0, "whole disk (ext4, unreadable: "),
        (&part, lba * 512, "partition 1 (ext4, unreadable: "),
    ] {
        let mut bytes = fs::read(img).unwrap();
        let at = start + 1024 + 0x18;
        bytes[at..at + 4].copy_from_slice(&20u32.to_le_bytes());
        let bad = dir.join("corrupt.img");
        fs::write(&bad, bytes).unwrap();
        for args in [&["check"][..], &["get-kernel", "-o", "x"][..]] {
            let mut a: Vec<&OsStr> = vec![OsStr::new(args[0]), bad.as_os_str()];
            a.extend(args[1..].iter().map(OsStr::new));
            let r = measured(test, &a);
            assert_eq!(r.code, Some(1), "{test}\n{}", r.text);
            assert!(
                r.text.contains(volume)
                    && r.text
                        .contains("corrupt superblock (block size above 64 KiB)")
                    && !r.text.contains("unknown filesystem"),
                "{test}: {args:?}\n{}",
                r.text
            );
        }
    }
}
