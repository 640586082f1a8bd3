//! Which files of a hook directory run, and in which order
//! (DIB's `diskimage_builder/lib/dib-run-parts`).
//!
//! dib-run-parts selects with
//! `find DIR -maxdepth 1 -xtype f -executable -printf '%f\n' | grep -E '^[0-9A-Za-z_-]+$' | LANG=C sort -n`:
//! regular files (symlinks followed), executable, whose name has only
//! letters, digits, `_` and `-` (so `foo.sh` never runs), ordered by GNU
//! `sort -n` in the C locale: by the leading number (a name without one
//! counts as 0; a leading `-` makes it negative), ties broken bytewise on
//! the whole name. `environment.d` files are found with
//! `find DIR/../environment.d -maxdepth 1 -xtype f | grep -E '/[0-9A-Za-z_.-]+$' | LANG=C sort -n`:
//! executable or not, dots allowed, and — since the sort sees full paths
//! starting with `/`, whose numeric value is 0 — effectively sorted
//! bytewise, so `10-b` comes before `9-a` there.

use std::cmp::Ordering;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Why a file in a hook directory does not run (for a debug log; DIB prints
/// the last two with `DIB_DEBUG_TRACE>0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// A directory, device, broken symlink… (`-xtype f` fails).
    NotRegularFile,
    /// No execute bit ("Ignoring non-executable files").
    NotExecutable,
    /// The name has characters outside `[0-9A-Za-z_-]`, e.g. a dot
    /// ("Ignoring non-conforming filenames").
    BadName,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Skipped::NotRegularFile => "not a regular file",
            Skipped::NotExecutable => "not executable (chmod +x it to run it)",
            Skipped::BadName => {
                "name has characters other than letters, digits, '_' and '-' (e.g. a '.sh' suffix)"
            }
        })
    }
}

/// The outcome of selecting a hook directory's targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunParts {
    /// Names to run, in order.
    pub targets: Vec<String>,
    /// Names not run, with the reason, in directory-listing order.
    pub skipped: Vec<(String, Skipped)>,
}

/// dib-run-parts' default `RUN_PARTS_REGEX`, `^[0-9A-Za-z_-]+$`.
pub fn target_name_allowed(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The environment.d file-name rule, `[0-9A-Za-z_.-]+`.
pub fn env_name_allowed(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Whether the file at `path` (named `name`) would run: `Ok` or why not.
pub fn classify(name: &str, path: &Path) -> Result<(), Skipped> {
    let meta = std::fs::metadata(path).map_err(|_| Skipped::NotRegularFile)?;
    if !meta.is_file() {
        return Err(Skipped::NotRegularFile);
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Skipped::NotExecutable);
    }
    if !target_name_allowed(name) {
        return Err(Skipped::BadName);
    }
    Ok(())
}

/// Select and order the targets of one directory, as dib-run-parts does.
pub fn select(dir: &Path) -> io::Result<RunParts> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(name) = e.file_name().to_str() {
            entries.push((name.to_owned(), e.path()));
        }
    }
    Ok(select_from(
        entries.iter().map(|(n, p)| (n.as_str(), p.as_path())),
    ))
}

/// Select and order targets from `(name, path)` pairs (a merged hook
/// directory need not exist on disk).
pub fn select_from<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Path)>) -> RunParts {
    let mut r = RunParts::default();
    for (name, path) in entries {
        match classify(name, path) {
            Ok(()) => r.targets.push(name.to_owned()),
            Err(why) => r.skipped.push((name.to_owned(), why)),
        }
    }
    sort_n(&mut r.targets);
    r
}

/// The environment.d files of `(name, path)` pairs in the order
/// dib-run-parts sources them. `dir` is the directory as dib-run-parts sees
/// it (the sort runs on full paths).
pub fn environment_files<'a>(
    dir: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Vec<String> {
    let mut full: Vec<(String, String)> = entries
        .into_iter()
        .filter(|(n, p)| env_name_allowed(n) && p.is_file())
        .map(|(n, _)| (format!("{dir}/{n}"), n.to_owned()))
        .collect();
    full.sort_by(|a, b| compare_sort_n(&a.0, &b.0));
    full.into_iter().map(|(_, n)| n).collect()
}

/// Sort like `LANG=C sort -n`.
pub fn sort_n(names: &mut [String]) {
    names.sort_by(|a, b| compare_sort_n(a, b));
}

/// GNU `sort -n` line comparison in the C locale: numeric value of the
/// leading number (blanks skipped, optional `-`, digits, optional `.`
/// fraction; none means 0), then the whole lines bytewise.
pub fn compare_sort_n(a: &str, b: &str) -> Ordering {
    numeric_key(a)
        .cmp_value(&numeric_key(b))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

struct NumKey<'a> {
    negative: bool,
    /// Integer digits without leading zeros.
    int: &'a [u8],
    /// Fraction digits without trailing zeros.
    frac: &'a [u8],
}

impl NumKey<'_> {
    fn is_zero(&self) -> bool {
        self.int.is_empty() && self.frac.is_empty()
    }

    fn cmp_magnitude(&self, o: &NumKey) -> Ordering {
        self.int
            .len()
            .cmp(&o.int.len())
            .then_with(|| self.int.cmp(o.int))
            .then_with(|| self.frac.cmp(o.frac))
    }

    fn cmp_value(&self, o: &NumKey) -> Ordering {
        let sa = !self.is_zero() && self.negative;
        let sb = !o.is_zero() && o.negative;
        match (sa, sb) {
            (false, false) => self.cmp_magnitude(o),
            (true, true) => o.cmp_magnitude(self),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }
}

fn numeric_key(s: &str) -> NumKey<'_> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    let negative = i < b.len() && b[i] == b'-';
    if negative {
        i += 1;
    }
    while i < b.len() && b[i] == b'0' {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int = &b[int_start..i];
    let mut frac: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        let fs = i + 1;
        let mut fe = fs;
        while fe < b.len() && b[fe].is_ascii_digit() {
            fe += 1;
        }
        let mut end = fe;
        while end > fs && b[end - 1] == b'0' {
            end -= 1;
        }
        frac = &b[fs..end];
    }
    NumKey {
        negative,
        int,
        frac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sorted(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        sort_n(&mut v);
        v
    }

    #[test]
    fn sort_n_is_numeric_then_bytewise() {
        assert_eq!(
            sorted(&["99", "50-x_y", "2-c", "10-b", "01-a"]),
            ["01-a", "2-c", "10-b", "50-x_y", "99"]
        );
        // Names without a number are 0: before 1, after negative numbers;
        // equal numbers tie-break bytewise on the whole name.
        assert_eq!(
            sorted(&["zz", "1-a", "AA", "-5-neg", "00-b", "0-a", "100", "020"]),
            ["-5-neg", "0-a", "00-b", "AA", "zz", "1-a", "020", "100"]
        );
        // Same number, different zero padding: bytewise, '0' < '1'.
        assert_eq!(sorted(&["1-a", "01-a", "001-a"]), ["001-a", "01-a", "1-a"]);
        // Long numbers do not overflow.
        assert_eq!(
            sorted(&["99999999999999999999999-x", "100000000000000000000000-y"]),
            ["99999999999999999999999-x", "100000000000000000000000-y"]
        );
        // Fractions (possible in environment.d names).
        assert_eq!(
            sorted(&["1.5-a", "1.10-b", "1-c"]),
            ["1-c", "1.10-b", "1.5-a"]
        );
        // Negative numbers order reversed by magnitude; -0 is 0.
        assert_eq!(sorted(&["-1", "-10", "-0", "0"]), ["-10", "-1", "-0", "0"]);
    }

    #[test]
    fn names() {
        for ok in ["01-a", "10-b", "2-c", "50-x_y", "99", "a", "-"] {
            assert!(target_name_allowed(ok), "{ok}");
        }
        for bad in ["", "foo.sh", "a b", "x~", "é", ".hidden"] {
            assert!(!target_name_allowed(bad), "{bad}");
        }
        assert!(env_name_allowed("10-foo.bash"));
        assert!(!env_name_allowed("foo~bar"));
    }

    #[test]
    fn select_filters_and_orders() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let mk = |n: &str, mode: u32| {
            fs::write(d.join(n), "#!/bin/sh\n").unwrap();
            fs::set_permissions(d.join(n), fs::Permissions::from_mode(mode)).unwrap();
        };
        for n in ["99", "50-x_y", "2-c", "10-b", "01-a"] {
            mk(n, 0o755);
        }
        mk("20-script.sh", 0o755);
        mk("30-not-exec", 0o644);
        fs::create_dir(d.join("40-dir")).unwrap();
        std::os::unix::fs::symlink("01-a", d.join("05-link")).unwrap();
        std::os::unix::fs::symlink("missing", d.join("06-broken")).unwrap();
        let r = select(d).unwrap();
        assert_eq!(
            r.targets,
            ["01-a", "2-c", "05-link", "10-b", "50-x_y", "99"]
        );
        let mut sk = r.skipped.clone();
        sk.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            sk,
            [
                ("06-broken".to_string(), Skipped::NotRegularFile),
                ("20-script.sh".to_string(), Skipped::BadName),
                ("30-not-exec".to_string(), Skipped::NotExecutable),
                ("40-dir".to_string(), Skipped::NotRegularFile),
            ]
        );
    }

    #[test]
    fn environment_d_is_bytewise_on_full_paths() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for n in ["9-a", "10-b.bash", "01-c", "bad~name", "x.sh"] {
            fs::write(d.join(n), "X=1\n").unwrap();
        }
        let paths: Vec<(String, std::path::PathBuf)> =
            ["9-a", "10-b.bash", "01-c", "bad~name", "x.sh"]
                .iter()
                .map(|n| (n.to_string(), d.join(n)))
                .collect();
        let got = environment_files(
            "/tmp/hooks/environment.d",
            paths.iter().map(|(n, p)| (n.as_str(), p.as_path())),
        );
        assert_eq!(got, ["01-c", "10-b.bash", "9-a", "x.sh"]);
    }
}
