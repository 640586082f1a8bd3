//! `os_distro` and `os_version` from the image's os-release, in
//! libosinfo's vocabulary: the `<distro>` and `<version>` of the
//! osinfo-db entry (`/usr/share/osinfo/os/*/*.xml`) for that release, so
//! that `os_distro` + `os_version` is its short-id for most distributions
//! (debian + 12 = `debian12`, ubuntu + 24.04 = `ubuntu24.04`; CentOS
//! Stream is `centos` + `9`, short-id `centos-stream9`).
//!
//! osinfo-db's granularity differs by distribution: Debian, CentOS,
//! Rocky and AlmaLinux entries are per major release, RHEL, Alpine,
//! openSUSE Leap and Ubuntu per minor release, Fedora per release; Debian
//! without a VERSION_ID (testing, sid) is `testing`, Arch has no version.

/// The distribution and version, as Glance's `os_distro`/`os_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Os {
    pub distro: String,
    /// None: a rolling release without versions (Arch).
    pub version: Option<String>,
}

/// The value of `key` in an os-release file (quotes removed).
pub fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        if k != key {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

/// The first `n` dot-separated parts of a version ("9.4" → "9").
fn parts(v: &str, n: usize) -> String {
    v.split('.').take(n).collect::<Vec<_>>().join(".")
}

/// libosinfo's names for an os-release; None when it has no ID.
pub fn from_os_release(text: &str) -> Option<Os> {
    let id = field(text, "ID")?.to_ascii_lowercase();
    let version = field(text, "VERSION_ID").filter(|v| !v.is_empty());
    let os = |d: &str, v: Option<String>| {
        Some(Os {
            distro: d.to_string(),
            version: v,
        })
    };
    match id.as_str() {
        "debian" => os(
            "debian",
            Some(version.map_or_else(|| "testing".into(), |v| parts(&v, 1))),
        ),
        "centos" | "rocky" | "almalinux" => os(&id, version.map(|v| parts(&v, 1))),
        "rhel" | "alpine" => os(
            if id == "alpine" {
                "alpinelinux"
            } else {
                "rhel"
            },
            version.map(|v| parts(&v, 2)),
        ),
        "opensuse-leap" => os("opensuse", version),
        "opensuse-tumbleweed" => os("opensuse", Some("tumbleweed".into())),
        "arch" => os("archlinux", None),
        "" => None,
        _ => os(&id, version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> (String, Option<String>) {
        let o = from_os_release(text).unwrap();
        (o.distro, o.version)
    }

    #[test]
    fn distributions_in_libosinfo_terms() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            of("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"),
            ("debian".into(), s("12"))
        );
        assert_eq!(
            of("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\n"),
            ("debian".into(), s("testing"))
        );
        assert_eq!(
            of("NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n"),
            ("ubuntu".into(), s("24.04"))
        );
        assert_eq!(
            of("ID=\"rocky\"\nVERSION_ID=\"9.4\"\n"),
            ("rocky".into(), s("9"))
        );
        assert_eq!(
            of("ID=\"rhel\"\nVERSION_ID=\"9.4\"\n"),
            ("rhel".into(), s("9.4"))
        );
        assert_eq!(
            of("ID=alpine\nVERSION_ID=3.19.1\n"),
            ("alpinelinux".into(), s("3.19"))
        );
        assert_eq!(of("ID=fedora\nVERSION_ID=40\n"), ("fedora".into(), s("40")));
        assert_eq!(of("ID=arch\n"), ("archlinux".into(), None));
        assert_eq!(from_os_release("NAME=x\n"), None);
    }
}
