//! Arbitrary bytes as a root filesystem archive (tarball, OCI image layout,
//! docker save) unpacked into a scratch tree: any panic is a bug, errors
//! are fine, and nothing may appear outside the tree (symlinks resolve as
//! in a chroot).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("in.tar");
    std::fs::write(&src, data).expect("write input");
    let root = t.path().join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir outside");
    let opts = dibr::rootfs::Options {
        owners: false,
        arch: "amd64".into(),
        scratch: t.path().to_path_buf(),
    };
    let _ = dibr::rootfs::unpack(&src, &root, &opts);
    // Only the input, the tree and the (empty) outside directory remain.
    let mut names: Vec<_> = std::fs::read_dir(t.path())
        .expect("read scratch")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["in.tar", "outside", "root"], "stray files beside the tree");
    assert!(
        std::fs::read_dir(&outside).expect("read outside").next().is_none(),
        "written outside the tree"
    );
});
