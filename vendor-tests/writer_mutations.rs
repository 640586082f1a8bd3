//! The fuzz target's property in the default suite (stable toolchain, no
//! cargo-fuzz): deterministic mutations of real GNU tar archives go through
//! the whole ext4 writer; nothing may panic, and every image the writer
//! finishes must pass dibr's own consistency checker.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use dibr::ext4::{verify, Builder, Options};
use dibr::tarstream::TarReader;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn base_archive(dir: &Path, format: &[&str]) -> Vec<u8> {
    let t = dir.join("tree");
    std::fs::create_dir_all(t.join("d/e")).unwrap();
    std::fs::write(t.join("small"), b"hello").unwrap();
    std::fs::write(t.join("d/block"), vec![7u8; 4097]).unwrap();
    std::fs::write(t.join("d/e/zero"), b"").unwrap();
    std::os::unix::fs::symlink("small", t.join("link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(100), t.join("longlink")).unwrap();
    std::fs::hard_link(t.join("small"), t.join("d/hard")).unwrap();
    for i in 0..150 {
        std::fs::write(t.join(format!("d/file-{i:03}")), format!("{i}")).unwrap();
    }
    let f = std::fs::File::create(t.join("sparse")).unwrap();
    f.set_len(3 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"island", 1 << 20).unwrap();
    let _ = Command::new("setfattr")
        .args(["-n", "user.k", "-v", "v"])
        .arg(t.join("small"))
        .status();
    let out = dir.join("a.tar");
    let st = Command::new("tar")
        .args(format)
        .args(["--sparse", "--numeric-owner", "-C"])
        .arg(&t)
        .arg("-cf")
        .arg(&out)
        .arg(".")
        .status()
        .expect("GNU tar runs");
    assert!(st.success());
    std::fs::read(out).unwrap()
}

/// Recompute ustar header checksums so mutations get past the first check.
fn fix_checksums(buf: &mut [u8]) {
    for blk in buf.chunks_exact_mut(512) {
        if &blk[257..262] == b"ustar" {
            blk[148..156].fill(b' ');
            let sum: u32 = blk.iter().map(|&b| b as u32).sum();
            let s = format!("{sum:06o}\0 ");
            blk[148..156].copy_from_slice(s.as_bytes());
        }
    }
}

/// Returns true when an image was finished (and verified).
fn run_writer(data: &[u8], img: &Path) -> bool {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(img)
        .unwrap();
    let opts = Options {
        label: [0; 16],
        uuid: None,
        size_blocks: None,
        extra_blocks: 0,
        max_resize_bytes: 1 << 40,
        fit_ceiling: false,
        density: Default::default(),
        reserved_per_mille: 50,
        journal_blocks: None,
        source_date_epoch: Some(0),
    };
    let mut rd = TarReader::new(Cursor::new(data));
    let mut b = Builder::new(file.try_clone().unwrap(), img.to_path_buf(), opts).unwrap();
    loop {
        match rd.next_entry() {
            Ok(Some(e)) => {
                if b.add(&e, &mut rd).is_err() {
                    return false;
                }
            }
            Ok(None) => break,
            Err(_) => return false,
        }
    }
    if b.finish().is_err() {
        return false;
    }
    if let Err(e) = verify::verify_file(&file) {
        panic!("writer produced an inconsistent image: {e}");
    }
    true
}

#[test]
fn mutated_archives_give_consistent_images_or_errors() {
    if Command::new("tar").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "GNU tar missing in CI");
        println!("skipped: no GNU tar");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("m.img");
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut finished = 0;
    for (k, format) in [&["--format=pax"][..], &["--format=gnu"][..]]
        .iter()
        .enumerate()
    {
        let sub = dir.path().join(format!("f{k}"));
        std::fs::create_dir_all(&sub).unwrap();
        let base = base_archive(&sub, format);
        assert!(run_writer(&base, &img), "the unmutated archive must build");
        for i in 0..400 {
            let mut m = base.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(m.len());
                m[at] = rng.next() as u8;
            }
            if rng.below(5) == 0 {
                let cut = rng.below(m.len());
                m.truncate(cut);
            }
            if i % 2 == 0 {
                fix_checksums(&mut m);
            }
            finished += run_writer(&m, &img) as u32;
        }
    }
    // Many mutations hit file data or names and still build: the property
    // must have been exercised, not just the error paths.
    println!("{finished} of 800 mutated archives produced verified images");
    assert!(finished >= 100, "only {finished} mutated archives built");
}
