//! Fuzz bodies for tar input: the reader alone, the ext4 writer behind it
//! (every image it finishes must pass `ext4::verify`), and the rootfs
//! unpacker (nothing may land outside its tree).

use std::io::Cursor;

use super::scratch_path;
use crate::ext4::{verify, Builder, IoOptions, Options};
use crate::tarstream::TarReader;
use crate::tree::FileData;

/// Arbitrary bytes through the tar reader: iterate all entries and read
/// all data; any panic is a bug (errors are fine).
pub fn tar_reader(data: &[u8]) {
    let mut rd = TarReader::new(Cursor::new(data));
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded: every entry consumes at least one header block.
    while let Ok(Some(_entry)) = rd.next_entry() {
        while let Ok(1..) = rd.read(&mut buf) {}
    }
}

/// Arbitrary bytes as a tar archive through the whole ext4 writer: no
/// input may panic it, and any image it does finish must pass the
/// project's own consistency checker (`ext4::verify`): mkfs and verify
/// agree on what is valid.
pub fn mkfs_tar(data: &[u8]) {
    let path = scratch_path("mkfs").with_extension("img");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("scratch image");
    let _ = std::fs::remove_file(&path); // the open file is enough
    let opts = Options {
        label: *b"fuzz\0\0\0\0\0\0\0\0\0\0\0\0",
        // A small growth ceiling keeps the inode-driven virtual size small.
        max_resize_bytes: 1 << 40,
        fit_ceiling: false,
        source_date_epoch: Some(0),
        ..Default::default()
    };
    let mut rd = TarReader::new(Cursor::new(data));
    let clone = file.try_clone().expect("clone scratch image");
    let mut b = Builder::new(clone, path, opts).expect("builder");
    // A scratch image needs no durability; an fsync per input only slows
    // the fuzzer down.
    b.set_io(IoOptions {
        fsync: false,
        copy_file_range: true,
    });
    loop {
        match rd.next_entry() {
            Ok(Some(e)) => {
                if b.add(&e, &mut rd).is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(_) => return,
        }
    }
    if b.finish().is_ok() {
        if let Err(e) = verify::verify_file(&file) {
            panic!("writer produced an inconsistent image: {e}");
        }
    }
}

/// Arbitrary bytes as a root filesystem archive (tarball, OCI image
/// layout, docker save) unpacked into a scratch tree: any panic is a bug,
/// errors are fine, and nothing may appear outside the tree (symlinks
/// resolve as in a chroot).
pub fn rootfs_unpack(data: &[u8]) {
    let t = scratch_path("rootfs");
    std::fs::create_dir(&t).expect("scratch dir");
    let src = t.join("in.tar");
    std::fs::write(&src, data).expect("write input");
    let root = t.join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    let outside = t.join("outside");
    std::fs::create_dir(&outside).expect("mkdir outside");
    let opts = crate::rootfs::Options {
        owners: false,
        arch: "amd64".into(),
        scratch: t.clone(),
    };
    let _ = crate::rootfs::unpack(&src, &root, &opts);
    // Only the input, the tree and the (empty) outside directory remain.
    let mut names: Vec<_> = std::fs::read_dir(&t)
        .expect("read scratch")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    let outside_empty = std::fs::read_dir(&outside)
        .expect("read outside")
        .next()
        .is_none();
    let _ = make_writable(&t);
    let _ = std::fs::remove_dir_all(&t);
    assert_eq!(
        names,
        ["in.tar", "outside", "root"],
        "stray files beside the tree"
    );
    assert!(outside_empty, "written outside the tree");
}

/// Unpacked trees may hold read-only directories; give the owner write
/// permission so the scratch dir can be removed.
fn make_writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            let p = e.path();
            let mut perm = std::fs::metadata(&p)?.permissions();
            perm.set_mode(perm.mode() | 0o700);
            std::fs::set_permissions(&p, perm)?;
            make_writable(&p)?;
        }
    }
    Ok(())
}
