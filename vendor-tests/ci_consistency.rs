//! .ci/run must run exactly the test command README.md's "## Testing"
//! section names (first fenced block), as a line of its own.

use std::fs;
use std::path::Path;

fn readme_test_command() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = format!(
        "\n{}",
        fs::read_to_string(root.join("README.md")).expect("README.md")
    );
    let section = readme
        .split("\n## Testing")
        .nth(1)
        .expect("README.md has a '## Testing' section");
    let section = section.split("\n## ").next().unwrap();
    let block = section
        .split("```")
        .nth(1)
        .expect("a fenced block in ## Testing");
    let cmd: Vec<&str> = block
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        cmd.len(),
        1,
        "the first fenced block in ## Testing should hold exactly the one test command: {cmd:?}"
    );
    cmd[0].to_string()
}

#[test]
fn ci_run_uses_readme_test_command() {
    let cmd = readme_test_command();
    let ci =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == cmd),
        ".ci/run does not run the README command verbatim: {cmd:?}"
    );
    assert!(
        ci.contains("set -euo pipefail"),
        ".ci/run must use set -euo pipefail"
    );
}
