//! Environment: CI, root, tools, skipping.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub fn is_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// `DIBR_IMAGE_TESTS=1`: the slow tests that build real images (network,
/// minutes; `.ci/run` sets it).
pub fn image_tests() -> bool {
    std::env::var("DIBR_IMAGE_TESTS").as_deref() == Ok("1")
}

/// `DIBR_TEST_CACHE` (default /var/tmp/dibr-test-cache): downloads,
/// bootstraps and fixtures kept between runs.
pub fn test_cache() -> PathBuf {
    PathBuf::from(
        std::env::var("DIBR_TEST_CACHE").unwrap_or_else(|_| "/var/tmp/dibr-test-cache".into()),
    )
}

/// `DIBR_RELEASE_TESTS=1`: the releases besides the defaults (a Debian
/// bookworm and an Ubuntu noble cloud image, each built and booted; about
/// 10 minutes each on 2 cores), with `DIBR_IMAGE_TESTS=1`.
pub fn release_tests() -> bool {
    std::env::var("DIBR_RELEASE_TESTS").as_deref() == Ok("1")
}

pub fn slow_tests() -> bool {
    std::env::var("DIBR_SLOW_TESTS").as_deref() == Ok("1")
}

pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Search PATH plus the sbin directories (tests may run with a user PATH).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter().map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Resolve a tool to a full path so it works whatever PATH cargo was given.
pub fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| PathBuf::from(name))
}

/// A prerequisite is missing: outside CI print "skipped: why" and return;
/// in CI (CI=true) that is a failure.
pub fn skip(test: &str, why: &str) {
    if is_ci() {
        panic!(
            "{test}: prerequisite missing in CI (CI=true makes this a failure, not a skip): {why}"
        );
    }
    println!("skipped: {test}: {why}");
    eprintln!("skipped: {test}: {why}");
}

/// Returns false (after printing/panicking via [`skip`]) if any prerequisite
/// is missing.
pub fn require(test: &str, need_root: bool, tools: &[&str]) -> bool {
    if need_root && !is_root() {
        skip(test, "needs root (mknod/chown/setcap/loop mount)");
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        skip(
            test,
            &format!(
                "missing tools: {} (see .ci/run for the packages)",
                missing.join(", ")
            ),
        );
        return false;
    }
    true
}
