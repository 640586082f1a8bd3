//! The `openstack image create` command line that uploads an output
//! with its properties (python-openstackclient's options). `min_disk`
//! and `min_ram` are image attributes (`--min-disk`, `--min-ram`);
//! `os_hash_algo` and `os_hash_value` are not passed: Glance computes
//! them on upload (they are read-only) and they can be compared after.

use std::path::Path;

use serde_json::Value;

use super::{side_file, GlanceError, Properties};

/// Keys given as options, not `--property`.
const NOT_PROPERTIES: &[&str] = &[
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "os_hash_algo",
    "os_hash_value",
];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The arguments, `openstack` first.
pub fn argv(p: &Properties, file: &Path, name: &str) -> Vec<String> {
    let mut a: Vec<String> = ["openstack", "image", "create"].map(String::from).to_vec();
    let mut opt = |o: &str, k: &str| {
        if let Some(v) = p.get(k) {
            a.extend([o.to_string(), text(v)]);
        }
    };
    opt("--disk-format", "disk_format");
    opt("--container-format", "container_format");
    opt("--min-disk", "min_disk");
    opt("--min-ram", "min_ram");
    for (k, v) in p {
        if !NOT_PROPERTIES.contains(&k.as_str()) {
            a.extend(["--property".to_string(), format!("{k}={}", text(v))]);
        }
    }
    a.extend([
        "--file".to_string(),
        file.display().to_string(),
        name.to_string(),
    ]);
    a
}

/// A word as the shell reads it back: bare when safe, else single-quoted.
pub fn quote(w: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !w.is_empty() && w.chars().all(safe) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The command line for a shell.
pub fn command_line(p: &Properties, file: &Path, name: &str) -> String {
    argv(p, file, name)
        .iter()
        .map(|w| quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Glance image name of an output: its file name without the
/// extension (`NAME.qcow2` → `NAME`).
pub fn image_name(output: &Path) -> String {
    output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The command line for a finished disk output, from the
/// `NAME.<type>.glance.json` written beside it (the build summary's).
pub fn command_for_output(output: &Path) -> Result<String, GlanceError> {
    let path = side_file(output);
    let bad = |detail: String| GlanceError::SideFile {
        path: path.clone(),
        detail,
    };
    let t = std::fs::read_to_string(&path).map_err(|source| GlanceError::Read {
        path: path.clone(),
        source,
    })?;
    let p: Properties = serde_json::from_str(&t).map_err(|e| bad(e.to_string()))?;
    if !p.contains_key("disk_format") {
        return Err(bad("no disk_format".into()));
    }
    Ok(command_line(&p, output, &image_name(output)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_properties_and_quoting() {
        let mut p = Properties::new();
        for (k, v) in [
            ("disk_format", Value::from("qcow2")),
            ("container_format", "bare".into()),
            ("min_disk", 7.into()),
            ("min_ram", 512.into()),
            ("os_hash_value", "ab".into()),
            ("os_distro", "debian".into()),
            ("dibr_elements", "vm debian".into()),
        ] {
            p.insert(k.into(), v);
        }
        assert_eq!(
            command_line(&p, Path::new("out/my img.qcow2"), "my img"),
            "openstack image create --disk-format qcow2 --container-format bare \
             --min-disk 7 --min-ram 512 --property 'dibr_elements=vm debian' \
             --property os_distro=debian --file 'out/my img.qcow2' 'my img'"
        );
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
