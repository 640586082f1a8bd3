//! Hook assembly across elements: merged phase lists in dib-run-parts order,
//! the duplicated-hook error, environment.d order, and ELEMENTS_PATH
//! overrides reaching the hooks.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::hooks::{HookError, Hooks};
use super::path::ElementsPath;
use super::phases::Phase;
use super::resolve::resolve;
use super::run_parts::Skipped;

fn script(el: &Path, phase: &str, name: &str, mode: u32) {
    let d = el.join(phase);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(name), "#!/bin/sh\n").unwrap();
    fs::set_permissions(d.join(name), fs::Permissions::from_mode(mode)).unwrap();
}

fn element(root: &Path, name: &str) -> std::path::PathBuf {
    let p = root.join(name);
    fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn phases_merge_across_elements_in_run_parts_order() {
    let t = tempfile::tempdir().unwrap();
    let a = element(t.path(), "a");
    let b = element(t.path(), "b");
    script(&a, "install.d", "10-b", 0o755);
    script(&a, "install.d", "99", 0o755);
    script(&b, "install.d", "01-a", 0o755);
    script(&b, "install.d", "2-c", 0o755);
    script(&b, "install.d", "50-x_y", 0o755);
    script(&b, "install.d", "60-helper.sh", 0o755);
    script(&a, "install.d", "70-data", 0o644);
    fs::create_dir_all(b.join("install.d/b-source-install")).unwrap();
    script(&a, "root.d", "10-root", 0o755);
    script(&a, "tests", "10-not-a-hook", 0o755);
    let els = vec![("a".to_string(), a), ("b".to_string(), b)];
    let h = Hooks::assemble(&els).unwrap();
    let order: Vec<(&str, &str)> = h
        .targets(Phase::Install)
        .iter()
        .map(|s| (s.name.as_str(), s.element.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("01-a", "b"),
            ("2-c", "b"),
            ("10-b", "a"),
            ("50-x_y", "b"),
            ("99", "a")
        ]
    );
    let rp = h.run_parts(Phase::Install);
    assert!(rp
        .skipped
        .contains(&("60-helper.sh".to_string(), Skipped::BadName)));
    assert!(rp
        .skipped
        .contains(&("70-data".to_string(), Skipped::NotExecutable)));
    assert!(rp
        .skipped
        .contains(&("b-source-install".to_string(), Skipped::NotRegularFile)));
    assert_eq!(h.targets(Phase::Root).len(), 1);
    assert!(Phase::Root.is_run() && !Phase::Root.in_target());
    assert!(Phase::Install.in_target());
    assert!(h.targets(Phase::Finalise).is_empty());
    assert!(h.dir("tests").is_empty());
}

#[test]
fn same_hook_in_two_elements_is_an_error_naming_both() {
    let t = tempfile::tempdir().unwrap();
    let a = element(t.path(), "alpha");
    let b = element(t.path(), "beta");
    script(&a, "post-install.d", "50-foo", 0o755);
    script(&b, "post-install.d", "50-foo", 0o644);
    let els = vec![("alpha".to_string(), a), ("beta".to_string(), b)];
    let e = Hooks::assemble(&els).unwrap_err();
    assert!(matches!(e, HookError::Duplicate(_)));
    let m = e.to_string();
    assert!(m.contains("post-install.d/50-foo"), "{m}");
    assert!(m.contains("'alpha'") && m.contains("'beta'"), "{m}");
}

#[test]
fn same_subdirectory_in_two_elements_merges() {
    let t = tempfile::tempdir().unwrap();
    let a = element(t.path(), "a");
    let b = element(t.path(), "b");
    fs::create_dir_all(a.join("install.d/x-source-install")).unwrap();
    fs::create_dir_all(b.join("install.d/x-source-install")).unwrap();
    let els = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
    assert!(Hooks::assemble(&els).is_ok());
    // Both elements' files end up in the one directory (DIB's `cp -a`):
    // init-scripts/systemd of two elements, say.
    script(&a, "init-scripts/systemd", "a.service", 0o644);
    script(&b, "init-scripts/systemd", "b.service", 0o644);
    let h = Hooks::assemble(&els).unwrap();
    let s = &h.dir("init-scripts")[0];
    assert_eq!(s.name, "systemd");
    assert_eq!(s.path, a.join("init-scripts/systemd"));
    assert_eq!(s.merged, vec![b.join("init-scripts/systemd")]);
}

#[test]
fn environment_d_order() {
    let t = tempfile::tempdir().unwrap();
    let a = element(t.path(), "a");
    let b = element(t.path(), "b");
    script(&a, "environment.d", "10-a.bash", 0o644);
    script(&b, "environment.d", "9-b", 0o644);
    script(&b, "environment.d", "01-c.bash", 0o644);
    script(&b, "environment.d", "bad~", 0o644);
    let els = vec![("a".to_string(), a), ("b".to_string(), b)];
    let h = Hooks::assemble(&els).unwrap();
    let names: Vec<&str> = h
        .environment_files("/tmp/in_target.d")
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["01-c.bash", "10-a.bash", "9-b"]);
}

#[test]
fn elements_path_override_replaces_the_whole_element() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let user = root.join("user");
    let shipped = root.join("shipped");
    let os_s = element(&shipped, "os");
    fs::write(os_s.join("element-provides"), "operating-system\n").unwrap();
    script(&os_s, "root.d", "10-shipped", 0o755);
    let os_u = element(&user, "os");
    fs::write(os_u.join("element-provides"), "operating-system\n").unwrap();
    script(&os_u, "root.d", "10-user", 0o755);
    let p = ElementsPath::parse(Some(user.to_str().unwrap()), Some(shipped.as_path())).unwrap();
    let r = resolve(&["os".to_string()], &p.discover().unwrap(), "efi").unwrap();
    assert_eq!(r.elements[0].1, os_u);
    let h = Hooks::assemble(&r.elements).unwrap();
    let names: Vec<&str> = h
        .targets(Phase::Root)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["10-user"]);
}
