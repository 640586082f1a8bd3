//! Package-name mapping per distribution (DIB's `elements/pkg-map/bin/pkg-map`).
//!
//! An element's `pkg-map` file is JSON with up to four sections, most
//! specific winning: `release.<distro>.<release>`, `distro.<distro>`,
//! `family.<family>` (family derived from `DISTRO_NAME`), `default`. A name
//! mapped to the empty string is dropped; a name with no mapping is an
//! error unless `missing_ok`, in which case it passes through unchanged. A
//! mapped value may hold several space-separated packages (the shell
//! callers word-split it); it is returned as written.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Mapping failed.
#[derive(Debug, thiserror::Error)]
pub enum PkgMapError {
    #[error("cannot read pkg-map {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("Unable to parse pkg-map {origin}: {detail}; it must be a JSON object")]
    Parse { origin: String, detail: String },
    #[error("{origin} has no valid mapping for package {package}; add it to the pkg-map (\"default\" section) or allow missing mappings")]
    NoMapping { origin: String, package: String },
}

/// The family pkg-map's `family` section is keyed by.
pub fn os_family(distro: &str) -> Option<&'static str> {
    match distro {
        "fedora" | "rhel" | "rhel7" | "rhel8" | "rhel9" | "centos" | "centos7" | "almalinux"
        | "rocky" | "openeuler" => Some("redhat"),
        "debian" | "ubuntu" => Some("debian"),
        "opensuse" | "sles" => Some("suse"),
        "gentoo" => Some("gentoo"),
        _ => None,
    }
}

/// One element's parsed `pkg-map`.
#[derive(Debug, Clone, PartialEq)]
pub struct PkgMap {
    origin: String,
    doc: serde_json::Map<String, Value>,
}

impl PkgMap {
    /// Parse `text`; `origin` (the element or file) names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<PkgMap, PkgMapError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(doc)) => Ok(PkgMap {
                origin: origin.to_owned(),
                doc,
            }),
            Ok(_) => Err(PkgMapError::Parse {
                origin: origin.to_owned(),
                detail: "top level is not an object".into(),
            }),
            Err(e) => Err(PkgMapError::Parse {
                origin: origin.to_owned(),
                detail: e.to_string(),
            }),
        }
    }

    /// Read an element's `pkg-map` file.
    pub fn load(file: &Path) -> Result<PkgMap, PkgMapError> {
        let text = std::fs::read_to_string(file).map_err(|source| PkgMapError::Read {
            file: file.display().to_string(),
            source,
        })?;
        PkgMap::parse(&text, &file.display().to_string())
    }

    /// The effective name table for `distro` / `release`.
    pub fn table(&self, distro: &str, release: Option<&str>) -> BTreeMap<String, String> {
        let mut t = BTreeMap::new();
        let mut merge = |v: Option<&Value>| {
            if let Some(Value::Object(m)) = v {
                for (k, v) in m {
                    // Non-string values (null, numbers) act like "" in DIB's
                    // truthiness test when falsy; keep strings only, and
                    // treat anything else as "drop".
                    let s = v.as_str().unwrap_or_default().to_owned();
                    t.insert(k.clone(), s);
                }
            }
        };
        merge(self.doc.get("default"));
        if let (Some(fam), Some(Value::Object(f))) = (os_family(distro), self.doc.get("family")) {
            merge(f.get(fam));
        }
        if let Some(Value::Object(d)) = self.doc.get("distro") {
            merge(d.get(distro));
        }
        if let (Some(rel), Some(Value::Object(r))) = (release, self.doc.get("release")) {
            if let Some(Value::Object(rd)) = r.get(distro) {
                merge(rd.get(rel));
            }
        }
        t
    }

    /// Map `names` for `distro` / `release`.
    pub fn map(
        &self,
        names: &[&str],
        distro: &str,
        release: Option<&str>,
        missing_ok: bool,
    ) -> Result<Vec<String>, PkgMapError> {
        let t = self.table(distro, release);
        let mut out = Vec::new();
        for &n in names {
            match t.get(n) {
                Some(m) if !m.is_empty() => out.push(m.clone()),
                Some(_) => {} // mapped to "": dropped
                None if missing_ok => out.push(n.to_owned()),
                None => {
                    return Err(PkgMapError::NoMapping {
                        origin: self.origin.clone(),
                        package: n.to_owned(),
                    })
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"{
      "release": {"fedora": {"23": {"nova_package": "openstack-compute-foo"}}},
      "distro": {"fedora": {"nova_package": "openstack-compute", "glance_package": "openstack-image"}},
      "family": {"redhat": {"nova_package": "openstack-nova", "glance_package": "openstack-glance"},
                 "suse": {"nova_package": ""}},
      "default": {"nova_package": "nova", "glance_package": "glance"}
    }"#;

    #[test]
    fn most_specific_wins() {
        let m = PkgMap::parse(MAP, "test").unwrap();
        let names = ["nova_package", "glance_package"];
        assert_eq!(
            m.map(&names, "fedora", Some("23"), false).unwrap(),
            ["openstack-compute-foo", "openstack-image"]
        );
        assert_eq!(
            m.map(&names, "fedora", Some("24"), false).unwrap(),
            ["openstack-compute", "openstack-image"]
        );
        assert_eq!(
            m.map(&names, "centos", None, false).unwrap(),
            ["openstack-nova", "openstack-glance"]
        );
        assert_eq!(
            m.map(&names, "ubuntu", None, false).unwrap(),
            ["nova", "glance"]
        );
        // Empty string drops the package.
        assert_eq!(m.map(&names, "opensuse", None, false).unwrap(), ["glance"]);
    }

    #[test]
    fn missing_mapping() {
        let m = PkgMap::parse(MAP, "elem").unwrap();
        let e = m.map(&["vim"], "ubuntu", None, false).unwrap_err();
        assert!(
            e.to_string().contains("no valid mapping for package vim"),
            "{e}"
        );
        assert_eq!(m.map(&["vim"], "ubuntu", None, true).unwrap(), ["vim"]);
        assert!(PkgMap::parse("[1]", "x").is_err());
        assert!(PkgMap::parse("{", "x").is_err());
    }
}
