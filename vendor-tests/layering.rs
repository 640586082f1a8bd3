//! The layering rules of issue 12, checked on the source text:
//! - the environment (`std::env`) is read only by the command line, the
//!   settings module, the build pipeline (which also puts the hooks'
//!   environment together, `src/build/env.rs`) and `main.rs`; test code
//!   may read it anywhere;
//! - the format tier (`src/formats/`) imports no pipeline stage, whether
//!   as `crate::stage`, inside a `crate::{…}` group or by climbing out with
//!   `super::`;
//! - no function is longer than [`MAX_FN_LINES`] lines unless a comment
//!   just above it, starting `long-fn:`, says why.
//!
//! A new `std::env` or `crate::<stage>` in the wrong place fails here with
//! the file and line; move the read up into `src/settings.rs` and hand the
//! value down as an option instead.
//!
//! The source is read through a small lexer that blanks comments and the
//! contents of string and character literals (keeping line numbers), so
//! prose and messages that name `std::env` do not count; the items under a
//! `#[cfg(test)]` (inline `mod tests { … }` and `mod tests;` files alike)
//! are test code.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Where reading the environment belongs.
const ENV_ALLOWED: &[&str] = &[
    "src/main.rs",
    "src/settings.rs",
    "src/cli/",
    // The pipeline, and the hook environment it builds (build/env.rs).
    "src/build/",
];

/// Code that is test code without a `#[cfg(test)]`, and why.
const TEST_HELPERS: &[(&str, &str)] = &[(
    "src/fuzz_harness/",
    "the fuzz targets' harness (#[doc(hidden)], built for fuzz/ and tests)",
)];

/// The format tier: writers and readers that know no pipeline stage.
const FORMATS: &str = "src/formats/";

/// The top-level modules that are pipeline stages (the formats are
/// re-exported at the top too, as `crate::ext4` and so on: those are fine).
const STAGES: &[&str] = &[
    "cli",
    "build",
    "assemble",
    "capture",
    "elements",
    "sandbox",
    "inspect",
    "settings",
    "progress",
    "fuzz_harness",
];

/// Issue 12's "no function over ~120 lines".
const MAX_FN_LINES: usize = 120;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with comments and the insides of string and char literals
/// replaced by spaces; newlines are kept, so line numbers still hold.
fn blank_non_code(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        let prev = if i > 0 { c[i - 1] } else { '\0' };
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(0) == 'r' && (at(1) == '#' || at(1) == '"') && !is_ident(prev)
            || at(0) == 'r' && prev == 'b' && (at(1) == '#' || at(1) == '"')
        {
            // Raw string: r"…", r#"…"#, br"…".
            let mut hashes = 0;
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            out.push('r');
            out.push_str(&"#".repeat(hashes));
            out.push('"');
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (0..hashes).all(|h| c.get(i + 1 + h) == Some(&'#')) {
                    out.push('"');
                    out.push_str(&"#".repeat(hashes));
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(0) == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if at(0) == '\'' && (at(1) == '\\' || at(2) == '\'') {
            // A char literal ('x', '\n', '\u{…}'); otherwise a lifetime.
            out.push('\'');
            i += 1;
            if c[i] == '\\' {
                out.push_str("  ");
                i += 2;
            }
            while i < c.len() && c[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The line index just past the item that starts at or after line `from`
/// (an item ending with `;` before any `{`, or a braced block).
fn item_end(lines: &[&str], from: usize) -> usize {
    let mut depth = 0i64;
    let mut opened = false;
    for (k, l) in lines.iter().enumerate().skip(from) {
        for ch in l.chars() {
            match ch {
                ';' if !opened => return k + 1,
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return k + 1;
        }
    }
    lines.len()
}

/// One source file, lexed.
struct Source {
    /// Relative to the crate, e.g. `src/formats/ext4/mod.rs`.
    rel: String,
    /// Code only (see [`blank_non_code`]), one entry a line.
    code: Vec<String>,
    /// The original lines, for the messages and the `long-fn:` notes.
    text: Vec<String>,
    /// Per line: inside a `#[cfg(test)]` item.
    test: Vec<bool>,
    /// Files of the `#[cfg(test)] mod name;` declarations in this one.
    test_mods: Vec<PathBuf>,
}

fn lex(root: &Path, file: &Path) -> Source {
    let rel = file
        .strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let raw = fs::read_to_string(file).unwrap();
    let blanked = blank_non_code(&raw);
    let code: Vec<&str> = blanked.split('\n').collect();
    let mut test = vec![false; code.len()];
    let mut test_mods = Vec::new();
    // Where `mod name;` finds its file: beside a mod.rs/lib.rs/main.rs, in
    // a folder named after any other file.
    let dir = match file.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().unwrap().to_path_buf(),
        _ => file.with_extension(""),
    };
    let whole_file = code
        .iter()
        .any(|l| l.trim_start().starts_with("#![cfg(test)]"));
    let mut i = 0;
    while i < code.len() {
        if code[i].trim_start().starts_with("#[cfg(test)]") {
            let end = item_end(&code, i + 1);
            let item: String = code[i + 1..end].join(" ");
            let words: Vec<&str> = item
                .split(|ch: char| !is_ident(ch) && ch != ';')
                .filter(|w| !w.is_empty())
                .collect();
            if let Some(p) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(p + 1) {
                    if item.trim_end().ends_with(';') {
                        let name = name.trim_end_matches(';');
                        test_mods.push(dir.join(format!("{name}.rs")));
                        test_mods.push(dir.join(name).join("mod.rs"));
                    }
                }
            }
            test[i..end].iter_mut().for_each(|t| *t = true);
            i = end;
        } else {
            test[i] = whole_file;
            i += 1;
        }
    }
    Source {
        rel,
        code: code.iter().map(|l| l.to_string()).collect(),
        text: raw.split('\n').map(str::to_string).collect(),
        test,
        test_mods,
    }
}

/// Every file under src/, lexed, with whole test files marked as test.
fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut all: Vec<Source> = files.iter().map(|f| lex(root, f)).collect();
    // Files declared under #[cfg(test)], and everything below them.
    let test_files: BTreeSet<String> = all
        .iter()
        .flat_map(|s| s.test_mods.iter())
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    let test_dirs: Vec<String> = test_files
        .iter()
        .map(|f| format!("{}/", f.trim_end_matches(".rs").trim_end_matches("/mod")))
        .collect();
    for s in &mut all {
        let helper = TEST_HELPERS.iter().any(|(p, _)| s.rel.starts_with(p));
        if helper || test_files.contains(&s.rel) || test_dirs.iter().any(|d| s.rel.starts_with(d)) {
            s.test.iter_mut().for_each(|t| *t = true);
        }
    }
    assert!(all.len() > 50, "src/ not found: {}", root.display());
    all
}

fn under(path: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| path.starts_with(p))
}

/// `std::env`, or `env` taken from a `use std::{…}` group, on a code line.
fn reads_env(line: &str) -> bool {
    if line.contains("std::env") {
        return true;
    }
    let Some(at) = line.find("std::{") else {
        return false;
    };
    line[at..]
        .split(|ch: char| !is_ident(ch))
        .any(|w| w == "env")
}

#[test]
fn environment_is_read_only_above_the_stages() {
    let mut wrong = Vec::new();
    for s in sources() {
        if under(&s.rel, ENV_ALLOWED) {
            continue;
        }
        for (n, l) in s.code.iter().enumerate() {
            if !s.test[n] && reads_env(l) {
                wrong.push(format!("{}:{}: {}", s.rel, n + 1, s.text[n].trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "std::env below the command line (read it in src/settings.rs and pass it down):\n{}",
        wrong.join("\n")
    );
}

/// The module path of a file under src/ (`src/formats/boot/mkimage.rs` →
/// formats, boot, mkimage; a mod.rs is its folder; lib.rs the root).
fn module_path(rel: &str) -> Vec<String> {
    let p = rel.trim_start_matches("src/").trim_end_matches(".rs");
    let mut segs: Vec<String> = p.split('/').map(str::to_string).collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The top-level modules a file's code names, with the byte offset of
/// each: `crate::x`, each name of a `crate::{x, y::z}` group (which may
/// span lines), and `super::…::x` chains that climb to the root from
/// `module`.
fn top_level_names(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded = code[..at]
            .chars()
            .last()
            .is_some_and(|ch| is_ident(ch) || ch == ':');
        if !preceded {
            let rest = &code[at + "crate::".len()..];
            names.extend(first_segments(rest).into_iter().map(|n| (at, n)));
        }
    }
    for (at, _) in code.match_indices("super::") {
        let preceded = code[..at]
            .chars()
            .last()
            .is_some_and(|ch| is_ident(ch) || ch == ':');
        if preceded {
            continue; // inside a chain already counted from its start
        }
        let mut k = at;
        let mut ups = 0;
        while code[k..].starts_with("super::") {
            ups += 1;
            k += "super::".len();
        }
        if ups >= module.len() {
            names.extend(first_segments(&code[k..]).into_iter().map(|n| (at, n)));
        }
    }
    names
}

/// The first path segment of `s`, or each top-level entry of a `{…}` group.
fn first_segments(s: &str) -> Vec<String> {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut out = Vec::new();
        let mut cur = String::new();
        for ch in inner.chars() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(ch);
        }
        out.push(cur);
        return out
            .iter()
            .filter_map(|e| e.trim().split("::").next().map(|w| w.trim().to_string()))
            .filter(|w| !w.is_empty())
            .collect();
    }
    let w: String = s.chars().take_while(|&ch| is_ident(ch)).collect();
    if w.is_empty() {
        Vec::new()
    } else {
        vec![w]
    }
}

#[test]
fn formats_import_no_stage() {
    let mut wrong = BTreeSet::new();
    for s in sources().iter().filter(|s| s.rel.starts_with(FORMATS)) {
        let code = s.code.join("\n");
        for (at, name) in top_level_names(&code, &module_path(&s.rel)) {
            if STAGES.contains(&name.as_str()) {
                let n = code[..at].matches('\n').count();
                wrong.insert(format!(
                    "{}:{}: {} ({name})",
                    s.rel,
                    n + 1,
                    s.text[n].trim()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "format modules reaching up into pipeline stages:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_function_is_longer_than_a_screenful_or_two() {
    let mut long = Vec::new();
    for s in sources() {
        let lines: Vec<&str> = s.code.iter().map(String::as_str).collect();
        for (n, l) in lines.iter().enumerate() {
            let words: Vec<&str> = l.split(|ch: char| !is_ident(ch)).collect();
            let Some(p) = words.iter().position(|w| *w == "fn") else {
                continue;
            };
            if words.get(p + 1).is_none_or(|w| w.is_empty()) {
                continue; // `fn(` as a type
            }
            let end = item_end(&lines, n);
            let len = end - n;
            if len <= MAX_FN_LINES {
                continue;
            }
            let noted = s.text[..n]
                .iter()
                .rev()
                .take_while(|t| {
                    let t = t.trim_start();
                    t.starts_with("//") || t.starts_with("#[")
                })
                .any(|t| {
                    t.trim_start()
                        .trim_start_matches('/')
                        .trim()
                        .starts_with("long-fn:")
                });
            if !noted {
                long.push(format!(
                    "{}:{}: {} lines: {}",
                    s.rel,
                    n + 1,
                    len,
                    s.text[n].trim()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into named steps, or say why in a `// long-fn:` comment above):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_lexer_sees_code_only() {
    let src = "let a = \"std::env\"; // std::env\nlet b = '{'; /* std::env\n */ std::env::var(\"X\");\nlet r = r#\"std::env \"x\" \"#; fn f<'a>() {}\n";
    let out = blank_non_code(src);
    let lines: Vec<&str> = out.split('\n').collect();
    assert_eq!(lines.len(), src.split('\n').count());
    assert!(!reads_env(lines[0]), "{}", lines[0]);
    assert!(
        !lines[1].contains('{') && !lines[1].contains("std::env"),
        "{}",
        lines[1]
    );
    assert!(reads_env(lines[2]), "{}", lines[2]);
    assert!(
        !reads_env(lines[3]) && lines[3].contains("fn f<'a>() {}"),
        "{}",
        lines[3]
    );
    assert!(reads_env("use std::{env, fs};"));
    let m = module_path("src/formats/boot/mkimage.rs");
    let names = |code: &str| -> Vec<String> {
        top_level_names(code, &m)
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    };
    assert_eq!(
        names("use super::super::super::cli::x;\nuse crate::{\n    ext4,\n    build::{y, z},\n};"),
        ["ext4", "build", "cli"]
    );
    assert!(names("use super::super::collect::X;").is_empty());
}
