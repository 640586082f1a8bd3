//! The phase cache (issue 18, item 1; docs/phase-cache.md): as the CI
//! user, with the tiny offline tree of `dibr-test-cache` (on
//! `dibr-test-os`), so that every rule is tried in seconds. A hit must
//! skip exactly the phases up to its boundary, put back what the skipped
//! hooks left beside the hooks, and give outputs byte-identical (with
//! SOURCE_DATE_EPOCH) to a cold build; every input that can change the
//! tree up to a boundary must make the build miss it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::build::*;
use common::*;

const EL: &str = "dibr-test-cache";

/// A stage with its own image cache, owned by the CI user.
struct Cache {
    s: Stage,
    dir: PathBuf,
    n: std::sync::atomic::AtomicU32,
}

fn setup(test: &str) -> Option<Cache> {
    let s = stage(test)?;
    let dir = s.out.parent().unwrap().join("cache");
    fs::create_dir(&dir).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&dir));
    Some(Cache {
        s,
        dir,
        n: std::sync::atomic::AtomicU32::new(0),
    })
}

/// One build's output text and its output directory.
struct Built {
    text: String,
    out: PathBuf,
}

impl Built {
    fn ran(&self, phase: &str) -> bool {
        self.text.contains(&format!("{EL}: {phase} ran"))
    }
    fn tar(&self) -> Vec<u8> {
        fs::read(self.out.join("img.tar")).unwrap()
    }
}

impl Cache {
    /// `dibr build -v -n -t tar -o img ARGS… ELEMENTS…` in a fresh output
    /// directory, with the phase cache on; `ok` is the expected outcome.
    fn try_build(&self, args: &[&str], elements: &[&str], env: &[(&str, &str)]) -> (bool, Built) {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let out = self.s.out.join(format!("b{n}"));
        fs::create_dir(&out).unwrap();
        run_ok(Command::new("chown").arg(USER).arg(&out));
        let cache = self.dir.display().to_string();
        let mut all: Vec<&str> = vec!["-v", "-n"];
        if !args.contains(&"-o") {
            all.extend(["-o", "img"]);
        }
        if !args.contains(&"-t") {
            all.extend(["-t", "tar"]);
        }
        all.extend_from_slice(args);
        all.extend_from_slice(elements);
        // Every entry stored, however quick the tiny tree's phases (the
        // default rule is `cheap_phases_are_not_stored`'s).
        let mut e: Vec<(&str, &str)> = vec![
            ("DIBR_PHASE_CACHE", "on"),
            ("DIBR_PHASE_CACHE_MIN_SECONDS", "0"),
            ("DIB_IMAGE_CACHE", cache.as_str()),
            ("SOURCE_DATE_EPOCH", "1700000000"),
        ];
        e.extend_from_slice(env);
        let o = build_cmd(&self.s, &all, &e)
            .current_dir(&out)
            .output()
            .unwrap();
        let text = out_text(&o);
        (o.status.success(), Built { text, out })
    }

    fn build(&self, args: &[&str], elements: &[&str], env: &[(&str, &str)]) -> Built {
        let (ok, b) = self.try_build(args, elements, env);
        assert!(ok, "build {args:?} {elements:?} {env:?} failed\n{}", b.text);
        b
    }

    fn default(&self) -> Built {
        self.build(&[], &[EL], &[])
    }

    /// The entries' files (`NAME.tar`, `.key`, `.lock`, `.work`).
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir.join("phases"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn tars(&self) -> Vec<PathBuf> {
        self.files()
            .iter()
            .filter(|n| n.ends_with(".tar"))
            .map(|n| self.dir.join("phases").join(n))
            .collect()
    }

    /// Append a comment to one of the element's hooks in the stage.
    fn touch_hook(&self, element: &str, rel: &str) {
        let p = self.s.elements.join(element).join(rel);
        let mut t = fs::read_to_string(&p).unwrap();
        t.push_str(&format!(
            "# changed {}\n",
            self.n.load(std::sync::atomic::Ordering::SeqCst)
        ));
        fs::write(&p, t).unwrap();
    }
}

fn all_ran(b: &Built) -> bool {
    ["extra-data.d", "install.d", "post-install.d", "finalise.d"]
        .iter()
        .all(|p| b.ran(p))
}

/// Writes a one-hook element `NAME` with `HOOK` (`PHASE.d/FILE`)
/// running `script` under bash, readable and runnable by the CI user.
fn one_hook_element(elements: &Path, name: &str, hook: &str, script: &str) {
    let p = elements.join(name).join(hook);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, format!("#!/bin/bash\nset -eu\n{script}\n")).unwrap();
    run_ok(
        Command::new("chmod")
            .args(["-R", "a+rX,a+x"])
            .arg(elements.join(name)),
    );
}

/// Age every entry by `hours` (their mtime is their creation time).
fn age_entries(c: &Cache, hours: u32) {
    for t in c.tars() {
        run_ok(
            Command::new("touch")
                .arg("-d")
                .arg(format!("{hours} hours ago"))
                .arg(&t),
        );
    }
}

#[test]
fn hit_skips_to_finalise_and_is_byte_identical_to_a_cold_build() {
    let test = "hit_skips_to_finalise_and_is_byte_identical_to_a_cold_build";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    let raw = ["-t", "tar,raw"];
    let cold = c.build(&raw, &[EL], &[]);
    assert!(
        all_ran(&cold),
        "{test}: cold build skipped a phase\n{}",
        cold.text
    );
    assert!(
        cold.text
            .contains("dibr: phase cache: every phase runs (install.d runs: no entry yet)")
            && cold.text.contains("stored the tree after install.d")
            && cold.text.contains("stored the tree after post-install.d")
            && cold.text.contains("stored the tree after finalise.d"),
        "{test}: cold build did not say it stores the three boundaries\n{}",
        cold.text
    );
    let warm = c.build(&raw, &[EL], &[]);
    assert!(
        !warm.ran("extra-data.d")
            && !warm.ran("install.d")
            && !warm.ran("post-install.d")
            && !warm.ran("finalise.d"),
        "{test}: warm build ran a cached phase\n{}",
        warm.text
    );
    assert!(
        warm.ran("cleanup.d")
            && warm.text.contains("restoring the tree after finalise.d")
            && warm.text.contains("skipping root.d, extra-data.d, pre-install.d, install.d, -p packages, post-install.d, first-boot.d install, post-root.d, block-device.d, /etc/fstab, pre-finalise.d, finalise.d")
            && warm.text.contains("/etc/fstab, arch amd64 and dibr are unchanged")
            && warm.text.contains("hooks left in the work directory)"),
        "{test}: warm build did not say what it skipped, or did not restore the hook record\n{}",
        warm.text
    );
    let nocache = c.build(&["--no-cache", "-t", "tar,raw"], &[EL], &[]);
    assert!(all_ran(&nocache), "{test}: --no-cache skipped a phase");
    for name in ["img.tar", "img.raw"] {
        let a = fs::read(cold.out.join(name)).unwrap();
        assert!(
            a == fs::read(warm.out.join(name)).unwrap(),
            "{test}: {name} from the cache hit differs from the cold build's"
        );
        assert!(
            a == fs::read(nocache.out.join(name)).unwrap(),
            "{test}: {name} of --no-cache differs from the cold build's"
        );
    }
    // What the hooks made, as the hit restored it (the byte comparison
    // above says it equals the cold build's; this says it is there).
    let m = read_tar(&warm.out.join("img.tar"));
    let owned = &m["cache-owned"];
    assert_eq!((owned.uid, owned.gid), (0, 7), "{test}: owner lost");
    assert!(
        m.contains_key("cache-owned-link")
            && m.contains_key("cache-final")
            && m.contains_key("cache-cleanup")
    );
    assert!(
        m.contains_key("etc/fstab"),
        "{test}: the restored tree has no /etc/fstab"
    );
    // A build with another layout (here: none, a tar only) writes another
    // /etc/fstab (none): the entry after finalise.d is not used, the one
    // after post-install.d is.
    let tar_only = c.build(&["-t", "tar"], &[EL], &[]);
    assert!(
        tar_only
            .text
            .contains("restoring the tree after post-install.d")
            && tar_only.text.contains(
                "finalise.d runs: since the last entry, /etc/fstab (block-device layout) changed"
            )
            && tar_only.ran("finalise.d"),
        "{test}: a changed /etc/fstab did not rebuild from post-root.d\n{}",
        tar_only.text
    );
    // Only complete entries and their side files; nothing half-written.
    for f in c.files() {
        assert!(
            !f.starts_with('.')
                && [".tar", ".key", ".lock", ".work"]
                    .iter()
                    .any(|x| f.ends_with(x)),
            "{test}: stray file {f} in the phase cache"
        );
    }
}

#[test]
fn element_change_invalidates_from_the_first_phase_it_has_a_hook_in() {
    let test = "element_change_invalidates_from_the_first_phase_it_has_a_hook_in";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    c.default();
    // Nothing changed: the entry after finalise.d; cleanup.d still runs.
    let b = c.default();
    assert!(
        b.text.contains("restoring the tree after finalise.d")
            && !b.ran("finalise.d")
            && b.ran("cleanup.d"),
        "{test}: an unchanged build did not restore the entry after finalise.d\n{}",
        b.text
    );
    // A cleanup.d change: nothing cached depends on it.
    c.touch_hook(EL, "cleanup.d/10-test-cache-cleanup");
    let b = c.default();
    assert!(
        b.text.contains("restoring the tree after finalise.d") && b.ran("cleanup.d"),
        "{test}: a cleanup.d change invalidated the cache\n{}",
        b.text
    );
    // A finalise.d change: the entry after post-install.d stays valid.
    c.touch_hook(EL, "finalise.d/10-test-cache-final");
    let b = c.default();
    assert!(
        b.text.contains("restoring the tree after post-install.d")
            && b.text
                .contains("finalise.d runs: since the last entry, element dibr-test-cache changed")
            && b.ran("finalise.d")
            && !b.ran("post-install.d"),
        "{test}: a finalise.d change was not rebuilt from post-root.d\n{}",
        b.text
    );
    // A post-install.d change: install.d's entry stays valid.
    c.touch_hook(EL, "post-install.d/10-test-cache-post");
    let b = c.default();
    assert!(
        b.text.contains("restoring the tree after install.d")
            && b.text.contains(
                "post-install.d runs: since the last entry, element dibr-test-cache changed"
            )
            && !b.ran("install.d")
            && b.ran("post-install.d"),
        "{test}: a post-install.d change was not rebuilt from post-install.d\n{}",
        b.text
    );
    // A new element with a post-install.d hook only.
    one_hook_element(
        &c.s.elements,
        "dibr-test-late",
        "post-install.d/50-late",
        "echo late > /late",
    );
    let els = [EL, "dibr-test-late"];
    let b = c.build(&[], &els, &[]);
    assert!(
        b.text.contains("restoring the tree after install.d")
            && b.text.contains("element dibr-test-late added")
            && b.ran("post-install.d")
            && !b.ran("install.d"),
        "{test}: a new post-install.d element did not rebuild from post-install.d only\n{}",
        b.text
    );
    let cold = c.build(&["--no-cache"], &els, &[]);
    assert!(
        b.tar() == cold.tar(),
        "{test}: +1 element from the cache differs from a cold build"
    );
    assert!(read_tar(&b.out.join("img.tar")).contains_key("late"));
    // An install.d change: every phase runs.
    c.touch_hook(EL, "install.d/10-test-cache-install");
    let b = c.default();
    assert!(
        all_ran(&b)
            && b.text
                .contains("install.d runs: since the last entry, element dibr-test-cache changed"),
        "{test}: an install.d change did not rebuild everything\n{}",
        b.text
    );
}

#[test]
fn environment_mirror_packages_bootstrap_and_arch_changes_invalidate() {
    let test = "environment_mirror_packages_bootstrap_and_arch_changes_invalidate";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    c.default();
    let mirror = [("DIB_DISTRIBUTION_MIRROR", "http://mirror.example/debian")];
    let b = c.build(&[], &[EL], &mirror);
    assert!(
        all_ran(&b) && b.text.contains("hook environment changed"),
        "{test}: a mirror change did not invalidate\n{}",
        b.text
    );
    let b = c.build(&[], &[EL], &mirror);
    assert!(
        !b.ran("install.d"),
        "{test}: same mirror again missed\n{}",
        b.text
    );
    // A value a hook records in the tree: a miss, and the new value.
    let b = c.build(&[], &[EL], &[("DIBR_TEST_VALUE", "other")]);
    assert!(
        all_ran(&b),
        "{test}: an environment change did not invalidate"
    );
    let mut ar = tar::Archive::new(fs::File::open(b.out.join("img.tar")).unwrap());
    let value = ar
        .entries()
        .unwrap()
        .flatten()
        .find(|e| e.path().is_ok_and(|p| p == Path::new("cache-final")))
        .map(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            s
        });
    assert_eq!(
        value.as_deref(),
        Some("other\n"),
        "{test}: the new value missing"
    );
    // Per-run variables do not count (docs/phase-cache.md lists them).
    let b = c.build(
        &[],
        &[EL],
        &[
            ("TERM", "dumb"),
            ("DIB_CHECKSUM", "1"),
            ("PWD", "/srv/nodepool/builds"),
        ],
    );
    assert!(
        !b.ran("install.d"),
        "{test}: TERM, DIB_CHECKSUM or PWD invalidated the cache\n{}",
        b.text
    );
    // -p packages.
    let b = c.build(&["-p", "foo"], &[EL], &[]);
    assert!(
        all_ran(&b) && b.text.contains("-p packages changed"),
        "{test}: -p did not invalidate\n{}",
        b.text
    );
    assert!(read_tar(&b.out.join("img.tar")).contains_key("cache-packages"));
    let b = c.build(&["-p", "foo"], &[EL], &[]);
    assert!(!b.ran("install.d"), "{test}: the same -p again missed");
    // A bootstrap tarball of this architecture appears (or is refreshed).
    let boot = c.dir.join("debootstrap");
    fs::create_dir_all(&boot).unwrap();
    fs::write(boot.join("debian-trixie-amd64-0123456789abcdef.tar"), b"x").unwrap();
    let b = c.default();
    assert!(
        all_ran(&b) && b.text.contains("bootstrap tarball changed"),
        "{test}: a new bootstrap tarball did not invalidate\n{}",
        b.text
    );
    // Another architecture's does not count.
    fs::write(boot.join("debian-trixie-arm64-0123456789abcdef.tar"), b"x").unwrap();
    let b = c.default();
    assert!(
        !b.ran("install.d"),
        "{test}: an arm64 tarball invalidated amd64"
    );
    // The architecture (the test tree is the host's binaries whatever
    // -a says; dibr checks qemu-user's binfmt registration first).
    if Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        let b = c.build(&["-a", "arm64"], &[EL], &[]);
        assert!(
            all_ran(&b) && b.text.contains("architecture changed"),
            "{test}: -a arm64 did not invalidate\n{}",
            b.text
        );
    } else {
        skip(
            test,
            "(the -a arm64 part) no qemu-aarch64 binfmt registration",
        );
    }
}

#[test]
fn age_limit_offline_and_settings() {
    let test = "age_limit_offline_and_settings";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    c.default();
    age_entries(&c, 25);
    let b = c.default();
    assert!(
        all_ran(&b)
            && b.text
                .contains("old, older than 24.0 h (DIBR_PHASE_CACHE_HOURS"),
        "{test}: a 25 h old entry was used\n{}",
        b.text
    );
    age_entries(&c, 25);
    let b = c.build(&[], &[EL], &[("DIBR_PHASE_CACHE_HOURS", "48")]);
    assert!(
        !b.ran("install.d"),
        "{test}: DIBR_PHASE_CACHE_HOURS=48 not honoured"
    );
    let b = c.build(&[], &[EL], &[("DIB_OFFLINE", "1")]);
    assert!(
        !b.ran("install.d")
            && b.text
                .contains("warning: phase cache: using the entry after finalise.d although it is"),
        "{test}: DIB_OFFLINE did not use the old entry with a warning\n{}",
        b.text
    );
    let (ok, b) = c.try_build(&[], &[EL], &[("DIBR_PHASE_CACHE_HOURS", "soon")]);
    assert!(
        !ok && b.text.contains("DIBR_PHASE_CACHE_HOURS=\"soon\""),
        "{test}: a bad DIBR_PHASE_CACHE_HOURS was not refused by name\n{}",
        b.text
    );
}

#[test]
fn no_cache_and_refresh_cache() {
    let test = "no_cache_and_refresh_cache";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    let b = c.build(&["--no-cache"], &[EL], &[]);
    assert!(all_ran(&b) && b.text.contains("phase cache: off (--no-cache)"));
    assert!(
        c.tars().is_empty(),
        "{test}: --no-cache stored {:?}",
        c.files()
    );
    let b = c.build(&[], &[EL], &[("DIBR_PHASE_CACHE", "off")]);
    assert!(
        all_ran(&b) && c.tars().is_empty(),
        "{test}: DIBR_PHASE_CACHE=off stored"
    );
    c.default();
    assert_eq!(c.tars().len(), 3, "{test}: {:?}", c.files());
    age_entries(&c, 1);
    let before: Vec<_> = c
        .tars()
        .iter()
        .map(|t| fs::metadata(t).unwrap().modified().unwrap())
        .collect();
    let b = c.build(&["--refresh-cache"], &[EL], &[]);
    assert!(
        all_ran(&b)
            && b.text
                .contains("--refresh-cache: every phase runs and the entries are replaced"),
        "{test}: --refresh-cache\n{}",
        b.text
    );
    let after: Vec<_> = c
        .tars()
        .iter()
        .map(|t| fs::metadata(t).unwrap().modified().unwrap())
        .collect();
    assert!(
        before.iter().zip(&after).all(|(a, b)| b > a),
        "{test}: --refresh-cache did not replace the entries"
    );
    let b = c.default();
    assert!(!b.ran("install.d"), "{test}: no hit after --refresh-cache");
    let (ok, b) = c.try_build(&["--no-cache", "--refresh-cache"], &[EL], &[]);
    assert!(
        !ok && b.text.contains("--no-cache"),
        "{test}: both options accepted\n{}",
        b.text
    );
}

#[test]
fn concurrent_builds_share_the_cache_safely() {
    let test = "concurrent_builds_share_the_cache_safely";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    let (a, b) = std::thread::scope(|sc| {
        let h = sc.spawn(|| c.try_build(&[], &[EL], &[]));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let b = c.try_build(&[], &[EL], &[]);
        (h.join().unwrap(), b)
    });
    assert!(
        a.0 && b.0,
        "{test}: a concurrent build failed\n{}\n{}",
        a.1.text,
        b.1.text
    );
    assert!(a.1.tar() == b.1.tar(), "{test}: concurrent builds differ");
    let w = c.default();
    assert!(
        !w.ran("install.d"),
        "{test}: no hit after concurrent builds\n{}",
        w.text
    );
    assert!(
        w.tar() == a.1.tar(),
        "{test}: the hit differs from the concurrent builds"
    );
    assert_eq!(c.tars().len(), 3, "{test}: entries {:?}", c.files());
    assert!(
        c.files().iter().all(|f| !f.starts_with('.')),
        "{test}: temporary files left: {:?}",
        c.files()
    );
}

#[test]
fn size_cap_evicts_the_least_recently_used() {
    let test = "size_cap_evicts_the_least_recently_used";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    // Each entry of the test tree is about 8 MiB: 12 MiB hold one.
    let cap = [("DIBR_PHASE_CACHE_GIB", "0.012")];
    let b = c.build(&[], &[EL], &cap);
    assert!(
        b.text.contains("phase cache: evicted install-") && b.text.contains("least recently used"),
        "{test}: nothing evicted\n{}",
        b.text
    );
    let tars = c.tars();
    assert_eq!(tars.len(), 1, "{test}: {:?}", c.files());
    assert!(tars[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("finalise-"));
    // The survivor is the newest: a hit still.
    let b = c.build(&[], &[EL], &cap);
    assert!(
        !b.ran("install.d"),
        "{test}: the kept entry missed\n{}",
        b.text
    );
    // New inputs push it out; the first inputs then miss.
    c.build(&[], &[EL], &[cap[0], ("DIBR_TEST_VALUE", "2")]);
    let b = c.build(&[], &[EL], &cap);
    assert!(all_ran(&b), "{test}: an evicted entry was used\n{}", b.text);
    let total: u64 = c
        .tars()
        .iter()
        .map(|t| fs::metadata(t).unwrap().len())
        .sum();
    assert!(
        total <= 12_884_902,
        "{test}: {total} bytes over the cap: {:?}",
        c.files()
    );
}

/// `IMAGE_NAME` (the `-o` path) is keyed only from the first phase whose
/// element files name it: nodepool names every build anew
/// (`…/ubuntu-noble-0000001234`), and with no element reading the name
/// its builds must hit; an element that writes the name into the tree in
/// finalise.d (as DIB's `dpkg` names its manifest) keys it from there.
#[test]
fn image_name_is_keyed_from_the_first_phase_that_names_it() {
    let test = "image_name_is_keyed_from_the_first_phase_that_names_it";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    let tar = |b: &Built, name: &str| fs::read(b.out.join(format!("{name}.tar"))).unwrap();
    c.build(&["-o", "nodepool-0001"], &[EL], &[]);
    let b = c.build(&["-o", "nodepool-0002"], &[EL], &[]);
    assert!(
        b.text.contains("restoring the tree after finalise.d") && !b.ran("install.d"),
        "{test}: a new -o name missed though no element names IMAGE_NAME\n{}",
        b.text
    );
    let cold = c.build(&["-o", "nodepool-0002", "--no-cache"], &[EL], &[]);
    assert!(
        tar(&b, "nodepool-0002") == tar(&cold, "nodepool-0002"),
        "{test}: the renamed build from the cache differs from a cold build"
    );

    // An element that writes the name into the tree in finalise.d.
    one_hook_element(
        &c.s.elements,
        "dibr-test-named",
        "finalise.d/10-name",
        "basename \"$IMAGE_NAME\" > /image-name",
    );
    let els = [EL, "dibr-test-named"];
    c.build(&["-o", "nodepool-0003"], &els, &[]);
    let b = c.build(&["-o", "nodepool-0004"], &els, &[]);
    assert!(
        b.text.contains("restoring the tree after post-install.d")
            && b.text.contains(
                "finalise.d runs: since the last entry, IMAGE_NAME (-o) changed, which dibr-test-named/finalise.d/10-name names"
            )
            && b.ran("finalise.d")
            && !b.ran("install.d"),
        "{test}: a new -o name did not rerun the finalise.d that names it\n{}",
        b.text
    );
    let o = Command::new("tar")
        .args(["-xOf"])
        .arg(b.out.join("nodepool-0004.tar"))
        .args(["--wildcards", "*image-name"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "nodepool-0004\n",
        "{test}: the tree holds another build's name ({})",
        out_text(&o)
    );
    let cold = c.build(&["-o", "nodepool-0004", "--no-cache"], &els, &[]);
    assert!(
        tar(&b, "nodepool-0004") == tar(&cold, "nodepool-0004"),
        "{test}: the renamed build from the cache differs from a cold build"
    );
    // The same name again: the finalise.d entry is valid.
    let b = c.build(&["-o", "nodepool-0004"], &els, &[]);
    assert!(
        b.text.contains("restoring the tree after finalise.d"),
        "{test}: the same -o name missed\n{}",
        b.text
    );
}

/// An entry is stored only when the phases it saves took at least
/// `DIBR_PHASE_CACHE_MIN_SECONDS` (default 5) since the entry below it:
/// the tiny tree's phases take milliseconds, so by default nothing is
/// stored; a slow install.d is, and the quick phases after it are not.
#[test]
fn cheap_phases_are_not_stored() {
    let test = "cheap_phases_are_not_stored";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    let b = c.build(&[], &[EL], &[("DIBR_PHASE_CACHE_MIN_SECONDS", "")]);
    assert!(
        b.text.contains("not storing the tree after install.d")
            && b.text.contains("DIBR_PHASE_CACHE_MIN_SECONDS=5")
            && c.tars().is_empty(),
        "{test}: the default stored quick phases: {:?}\n{}",
        c.files(),
        b.text
    );
    let slow = [
        ("DIBR_PHASE_CACHE_MIN_SECONDS", "1"),
        ("DIBR_TEST_INSTALL_SECONDS", "1.5"),
    ];
    let b = c.build(&[], &[EL], &slow);
    assert!(
        b.text.contains("stored the tree after install.d")
            && b.text.contains("not storing the tree after post-install.d")
            && b.text.contains("not storing the tree after finalise.d"),
        "{test}: a slow install.d and quick later phases\n{}",
        b.text
    );
    let names = c.files();
    assert!(
        c.tars().len() == 1
            && names
                .iter()
                .any(|n| n.starts_with("install-") && n.ends_with(".tar")),
        "{test}: {names:?}"
    );
    let b = c.build(&[], &[EL], &slow);
    assert!(
        b.text.contains("restoring the tree after install.d")
            && !b.ran("install.d")
            && b.ran("post-install.d")
            && b.ran("finalise.d"),
        "{test}: the install.d entry was not used\n{}",
        b.text
    );
    // --refresh-cache with a minimum the slow install.d does not reach
    // (the minimum is not keyed): the old entry of that key must not
    // outlive the refresh.
    let b = c.build(
        &["--refresh-cache"],
        &[EL],
        &[slow[1], ("DIBR_PHASE_CACHE_MIN_SECONDS", "60")],
    );
    assert!(
        all_ran(&b)
            && b.text.contains("not storing the tree after install.d")
            && c.tars().is_empty(),
        "{test}: the refreshed key's old entry was kept: {:?}\n{}",
        c.files(),
        b.text
    );
}

/// A `debian vm` build as the CI user with the phase cache on, in `dir`
/// under the stage's output directory; its text and wall time.
fn debian_build(s: &Stage, cache: &Path, dir: &str, args: &[&str]) -> (String, f64) {
    let out = s.out.join(dir);
    fs::create_dir(&out).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&out));
    let elements = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    let (elements_s, cache_s) = (elements.display().to_string(), cache.display().to_string());
    let mut all = vec!["-t", "qcow2", "-o", "debian"];
    all.extend_from_slice(args);
    let t0 = std::time::Instant::now();
    let o = build_cmd(
        s,
        &all,
        &[
            ("DIBR_PHASE_CACHE", "on"),
            ("DIBR_ELEMENTS_DIR", elements_s.as_str()),
            ("DIB_IMAGE_CACHE", cache_s.as_str()),
            ("SOURCE_DATE_EPOCH", "1700000000"),
        ],
    )
    .current_dir(&out)
    .output()
    .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let text = out_text(&o);
    assert!(o.status.success(), "dibr build {all:?} failed\n{text}");
    (text, secs)
}

/// Issue 18, acceptance 1 on a real Debian: a warm rebuild of `debian vm`
/// and one with a new post-install.d element, each byte-identical to a
/// cold build of the same inputs, as qcow2 (the default type). The wall
/// times are printed, not asserted (the ≤ 15 s and ≤ 25 s targets depend
/// on the machine's load: the warm build restores the tree after
/// finalise.d and compresses the qcow2; the +1 build runs post-install.d
/// and finalise.d — the initramfs — again).
#[test]
fn debian_vm_warm_rebuilds_equal_cold_builds() {
    let test = "debian_vm_warm_rebuilds_equal_cold_builds";
    if !image_tests() {
        println!("skipped: {test}: set DIBR_IMAGE_TESTS=1 (slow: three real Debian builds)");
        return;
    }
    if !require(test, true, &["mmdebstrap", "cmp"]) {
        return;
    }
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    // Its own phases/, the shared bootstrap tarballs and apt cache.
    let cache = user_cache("phase-cache-debian");
    let _ = fs::remove_dir_all(cache.join("phases"));
    let shared = user_cache("image-cache");
    for d in ["debootstrap", "apt", "debian-minimal"] {
        let target = shared.join(d);
        fs::create_dir_all(&target).unwrap();
        run_ok(Command::new("chown").arg(USER).arg(&target));
        if fs::symlink_metadata(cache.join(d)).is_err() {
            std::os::unix::fs::symlink(&target, cache.join(d)).unwrap();
        }
    }
    let (cold_text, cold) = debian_build(&s, &cache, "cold", &["debian", "vm"]);
    assert!(
        cold_text.contains("stored the tree after install.d")
            && cold_text.contains("stored the tree after finalise.d"),
        "{test}\n{cold_text}"
    );
    let (warm_text, warm) = debian_build(&s, &cache, "warm", &["debian", "vm"]);
    assert!(
        warm_text.contains("restoring the tree after finalise.d")
            && !warm_text.contains("install.d done")
            && !warm_text.contains("finalise.d done"),
        "{test}: the warm build did not skip to the end of finalise.d\n{warm_text}"
    );
    let image = |d: &str| s.out.join(d).join("debian.qcow2");
    run_ok(Command::new("cmp").arg(image("cold")).arg(image("warm")));
    one_hook_element(
        &s.elements,
        "dibr-test-late",
        "post-install.d/50-late",
        "echo late > /etc/dibr-late",
    );
    let els = ["debian", "vm", "dibr-test-late"];
    let (plus_text, plus) = debian_build(&s, &cache, "plus", &els);
    assert!(
        plus_text.contains("restoring the tree after install.d")
            && plus_text.contains("element dibr-test-late added"),
        "{test}: the +1 element build did not restore install.d's entry\n{plus_text}"
    );
    let mut no_cache = vec!["--no-cache"];
    no_cache.extend(els);
    let (_, plus_cold) = debian_build(&s, &cache, "plus-cold", &no_cache);
    run_ok(
        Command::new("cmp")
            .arg(image("plus"))
            .arg(image("plus-cold")),
    );
    eprintln!(
        "{test}: cold {cold:.1}s, warm {warm:.1}s ({:.1}x), +1 post-install.d element {plus:.1}s, its cold build {plus_cold:.1}s ({:.1}x); outputs byte-identical",
        cold / warm,
        plus_cold / plus
    );
    assert!(
        warm < cold && plus < plus_cold,
        "{test}: the cache made nothing faster"
    );
}

/// Entries are not fsynced (a cache is not precious): one cut short, as a
/// crash can leave it, has another length than its `.key` records and is
/// not used; the next entry down is, and the image is the same.
#[test]
fn a_damaged_entry_is_not_used() {
    let test = "a_damaged_entry_is_not_used";
    let _serial = serial();
    let Some(c) = setup(test) else { return };
    let first = c.default();
    let fin = c
        .tars()
        .into_iter()
        .find(|t| {
            t.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("finalise-")
        })
        .unwrap_or_else(|| panic!("{test}: no finalise.d entry: {:?}", c.files()));
    let len = fs::metadata(&fin).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&fin)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let b = c.default();
    assert!(
        b.text.contains("finalise.d runs: its entry is damaged")
            && b.text.contains("restoring the tree after post-install.d")
            && b.ran("finalise.d"),
        "{test}: a truncated entry was used or not named\n{}",
        b.text
    );
    assert!(b.tar() == first.tar(), "{test}: the image differs");
    let again = c.default();
    assert!(
        again.text.contains("restoring the tree after finalise.d"),
        "{test}: the damaged entry was not replaced\n{}",
        again.text
    );
}
