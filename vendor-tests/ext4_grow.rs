//! Growth: an image from `dibr mkfs` must grow offline with the real
//! resize2fs (e2fsprogs >= 1.47.2 for meta_bg past 256 TiB) and stay clean.
//! 300 TiB always; exactly 1 PiB only with DIBR_SLOW_TESTS=1.

mod common;
use common::*;

use std::fs;
use std::path::Path;
use std::process::Command;

/// Where the huge sparse images go: must be tmpfs/xfs/btrfs (ext4 caps a
/// file at 16 TiB). Override with DIBR_BIG_TMPDIR.
fn big_dir() -> std::path::PathBuf {
    std::env::var_os("DIBR_BIG_TMPDIR")
        .map(Into::into)
        .unwrap_or_else(|| "/dev/shm".into())
}

/// Removes the image directory on drop, also when the test fails.
struct Cleanup(Option<tempfile::TempDir>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let p = d.path().to_path_buf();
            if let Err(e) = d.close() {
                eprintln!("warning: could not remove {p:?}: {e}");
                let _ = fs::remove_dir_all(&p);
            }
        }
    }
}

fn grow_to(test: &str, blocks: u64) {
    if !require(test, false, &["resize2fs", "e2fsck", "dumpe2fs"]) {
        return;
    }
    match e2fsprogs_version("resize2fs") {
        Some(v) if v >= (1, 47, 2) => {}
        v => {
            skip(test, &format!("resize2fs {v:?} is older than 1.47.2 (meta_bg growth past 256 TiB); install e2fsprogs from bookworm-backports (.ci/run)"));
            return;
        }
    }
    let bd = big_dir();
    let work = scratch(test);
    let tree = work.path().join("tree");
    build_simple_tree(&tree);
    let guard = Cleanup(Some(
        tempfile::Builder::new()
            .prefix("dibr-grow-")
            .tempdir_in(&bd)
            .unwrap_or_else(|e| panic!("tempdir in {bd:?}: {e}")),
    ));
    let dir = guard.0.as_ref().unwrap().path().to_path_buf();
    let img = dir.join("image.ext4");
    mkfs_ok(&Src::Path(tree), &img, &Opts::default());
    e2fsck_ok(&img);
    check_superblock(&img, None, None);
    grow_checked(&img, blocks);
    drop(guard);
}

fn grow_checked(img: &Path, blocks: u64) {
    let t = std::time::Instant::now();
    run_ok(
        Command::new(tool("resize2fs"))
            .arg(img)
            .arg(blocks.to_string()),
    );
    eprintln!("resize2fs to {blocks} blocks: {:?}", t.elapsed());
    let h = dumpe2fs_h(img);
    assert_eq!(
        h.get("Block count").map(String::as_str),
        Some(blocks.to_string().as_str()),
        "block count after resize2fs"
    );
    let t = std::time::Instant::now();
    e2fsck_ok(img);
    eprintln!("e2fsck -fn after growth: {:?}", t.elapsed());
}

#[test]
fn grow_to_300_tib() {
    grow_to("grow_to_300_tib", 300u64 << 28);
}

#[test]
fn grow_to_1_pib_slow() {
    if !slow_tests() {
        println!("skipped: grow_to_1_pib_slow: set DIBR_SLOW_TESTS=1 (about 5 minutes, 2 GB RAM, 4.6 GiB on tmpfs)");
        return;
    }
    grow_to("grow_to_1_pib_slow", 274_877_906_944);
}
