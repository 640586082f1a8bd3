//! A NoCloud seed (cloud-init's `NoCloud` datasource): a FAT volume
//! labelled `cidata` holding `meta-data` and `user-data`, written by
//! dibr's own FAT32 writer — no cloud-localds, genisoimage or mtools, no
//! root. The user-data authorises one ssh public key for the image's
//! default user (cloud-init's `ssh_authorized_keys`).

use std::fs::OpenOptions;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::VmError;
use crate::fat::{self, FatEntry, FatOptions, Layout};

/// The key types ssh-keygen writes (`ssh-ed25519`, `ecdsa-sha2-nistp256`,
/// `ssh-rsa`, the `sk-` security-key types).
fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") || t.starts_with("sk-")
}

/// The key line of an OpenSSH public key file (`TYPE BASE64 [COMMENT]`),
/// or None when the text is not one (a private key, an empty file).
pub fn public_key_line(text: &str) -> Option<&str> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let mut words = line.split_whitespace();
    let (t, b64) = (words.next()?, words.next()?);
    let b64_ok = b64
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
    (is_key_type(t) && b64_ok && b64.len() >= 16).then_some(line)
}

/// `#cloud-config` authorising `key` for the default user.
pub fn user_data(key: &str) -> String {
    // The key is quoted as a YAML double-quoted scalar: a comment may
    // hold any character.
    let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
    format!(
        "#cloud-config\n\
         # Written by `dibr vm`: log in as the image's default user with this key.\n\
         ssh_authorized_keys:\n  - {quoted}\n"
    )
}

/// The instance id changes with the user-data, so that cloud-init applies
/// a new key to a persistent image (`--persistent`) instead of keeping
/// the first boot's.
pub fn instance_id(user_data: &str) -> String {
    let d = Sha256::digest(user_data.as_bytes());
    let hex: String = d[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("dibr-vm-{hex}")
}

pub fn meta_data(instance_id: &str, hostname: &str) -> String {
    format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
}

/// Writes the seed volume to a new file at `path` (sparse: its size is
/// FAT32's minimum, a few KiB of it written). Returns the instance id.
pub fn write_seed(path: &Path, key: &str, hostname: &str) -> Result<String, VmError> {
    let ud = user_data(key);
    let id = instance_id(&ud);
    let md = meta_data(&id, hostname);
    let file = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .open(path)
        .map_err(|source| VmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let size = Layout::min_size().div_ceil(1 << 20) * (1 << 20);
    let opts = FatOptions {
        label: "cidata".into(),
        volume_id_seed: u64::from_le_bytes(
            Sha256::digest(id.as_bytes())[..8]
                .try_into()
                .unwrap_or_default(),
        ),
        ..FatOptions::default()
    };
    let entries = [
        FatEntry::bytes("meta-data", md.as_bytes()),
        FatEntry::bytes("user-data", ud.as_bytes()),
    ];
    fat::write_fat32(&file, 0, size, &entries, &opts).map_err(|source| VmError::Seed {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0eP7hQ0v3a5J7lLq7y7mZ2bq2JXq2l0m0zq9wqW1m9 me@host";

    #[test]
    fn public_key_lines() {
        assert_eq!(public_key_line(&format!("{KEY}\n")), Some(KEY));
        assert_eq!(
            public_key_line("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAA="),
            Some("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAA=")
        );
        assert_eq!(public_key_line(""), None);
        assert_eq!(
            public_key_line("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"),
            None
        );
        assert_eq!(public_key_line(&format!("{KEY}\n{KEY}\n")), None);
        assert_eq!(public_key_line("ssh-ed25519 not*base64!!!!!!!!!!"), None);
    }

    #[test]
    fn user_data_is_cloud_config_with_the_key() {
        let ud = user_data(KEY);
        assert!(ud.starts_with("#cloud-config\n"));
        let v: serde_json::Value = serde_saphyr::from_str(&ud).unwrap();
        assert_eq!(v["ssh_authorized_keys"][0], KEY);
        // Another key, another instance.
        assert_ne!(
            instance_id(&ud),
            instance_id(&user_data("ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB x"))
        );
        assert_eq!(instance_id(&ud), instance_id(&user_data(KEY)));
    }

    fn tool(name: &str) -> Option<String> {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| format!("{d}/{name}"))
            .find(|p| Path::new(p).exists())
    }

    /// The volume as other tools read it: fsck.vfat finds nothing to fix,
    /// mtools lists the label and both files and gives their bytes back.
    #[test]
    fn seed_reads_back_with_dosfstools_and_mtools() {
        let dir = Path::new("/tmp").join(format!("dibr-seed-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("seed.img");
        let id = write_seed(&img, KEY, "dibr-vm").unwrap();
        assert!(id.starts_with("dibr-vm-"));
        // A second write does not replace an existing file.
        assert!(write_seed(&img, KEY, "dibr-vm").is_err());
        let ud = user_data(KEY);
        let md = meta_data(&id, "dibr-vm");
        match tool("fsck.vfat") {
            Some(fsck) => {
                let o = Command::new(fsck).arg("-n").arg(&img).output().unwrap();
                assert!(
                    o.status.success(),
                    "fsck.vfat -n: {}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            None => eprintln!("skipped: fsck.vfat check: no dosfstools"),
        }
        match (tool("mdir"), tool("mtype")) {
            (Some(mdir), Some(mtype)) => {
                let o = Command::new(mdir)
                    .arg("-i")
                    .arg(&img)
                    .arg("::")
                    .output()
                    .unwrap();
                let listing = String::from_utf8_lossy(&o.stdout);
                assert!(o.status.success(), "mdir: {listing}");
                assert!(listing.contains("CIDATA"), "label: {listing}");
                for (name, want) in [("user-data", &ud), ("meta-data", &md)] {
                    assert!(listing.contains(name), "{name}: {listing}");
                    let o = Command::new(&mtype)
                        .arg("-i")
                        .arg(&img)
                        .arg(format!("::{name}"))
                        .output()
                        .unwrap();
                    assert_eq!(String::from_utf8_lossy(&o.stdout), *want.as_str());
                }
            }
            _ => eprintln!("skipped: mtools check: no mtools"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
