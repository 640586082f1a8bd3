//! Which kernel and initrd the image boots: GRUB's default entry when the
//! image has a grub.cfg (or BLS entries), else the newest
//! /boot/vmlinuz-* with its initrd, else the /vmlinuz and /initrd.img
//! symlinks Debian and Ubuntu keep.

use super::grub::{self, BootEntry};
use super::view::View;
use super::InspectError;
use crate::boot::collect::version_cmp;

const GRUB_CFGS: &[&str] = &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
const SMALL: u64 = 4 << 20;

/// The chosen kernel and initrd(s), as resolved paths in the image.
#[derive(Clone, Debug)]
pub struct Choice {
    pub kernel: String,
    /// Loaded one after the other; their concatenation is the initrd.
    pub initrds: Vec<String>,
    /// How they were found (for the user).
    pub how: String,
    /// The kernel command line, when a boot loader config gives one.
    pub cmdline: Option<String>,
}

/// GRUB's default entry: the grub.cfg it came from and the entry.
pub fn grub_entry(view: &View) -> Result<Option<(String, BootEntry)>, InspectError> {
    for cfg_path in GRUB_CFGS {
        let Some(cfg) = view.read_file(cfg_path, SMALL)? else {
            continue;
        };
        let cfg = String::from_utf8_lossy(&cfg).into_owned();
        let dir = cfg_path.rsplit_once('/').map(|(d, _)| d).unwrap_or("/");
        let env = view
            .read_file(&format!("{dir}/grubenv"), SMALL)?
            .map(|e| String::from_utf8_lossy(&e).into_owned());
        if let Some(e) = grub::default_entry(&cfg, env.as_deref()) {
            return Ok(Some((cfg_path.to_string(), e)));
        }
        if grub::uses_bls(&cfg) {
            let mut entries = Vec::new();
            for d in view.list_dir("/boot/loader/entries")?.unwrap_or_default() {
                let name = String::from_utf8_lossy(&d.name).into_owned();
                if let Some(t) = view.read_file(&format!("/boot/loader/entries/{name}"), SMALL)? {
                    entries.push((name, String::from_utf8_lossy(&t).into_owned()));
                }
            }
            if let Some(e) = grub::bls_default(&entries, env.as_deref()) {
                return Ok(Some((format!("{cfg_path} (blscfg)"), e)));
            }
        }
    }
    Ok(None)
}

/// Resolves a GRUB path: relative to the filesystem holding grub.cfg
/// (a separate /boot: `/vmlinuz-X` is `/boot/vmlinuz-X`), then as is.
fn grub_path(view: &View, cfg: &str, p: &str) -> Result<Option<String>, InspectError> {
    let cfg_file = cfg.split(' ').next().unwrap_or(cfg);
    let base = match view.resolve(cfg_file, true)? {
        Some(n) => view.mount_point(n.fs).to_string(),
        None => "/".into(),
    };
    let mut tries = Vec::new();
    if base != "/" {
        tries.push(format!("{base}{p}"));
    }
    tries.push(p.to_string());
    for t in tries {
        if let Some(n) = view.resolve(&t, true)? {
            if n.inode.is_file() {
                return Ok(Some(n.path));
            }
        }
    }
    Ok(None)
}

fn regular(view: &View, p: &str) -> Result<Option<String>, InspectError> {
    Ok(view
        .resolve(p, true)?
        .filter(|n| n.inode.is_file())
        .map(|n| n.path))
}

/// Picks the kernel and initrd the image boots.
pub fn choose(view: &View) -> Result<Choice, InspectError> {
    let mut notes = Vec::new();
    if let Some((cfg, e)) = grub_entry(view)? {
        match grub_path(view, &cfg, &e.kernel)? {
            Some(k) => {
                let mut initrds = Vec::new();
                let mut missing = Vec::new();
                for i in &e.initrds {
                    match grub_path(view, &cfg, i)? {
                        Some(p) => initrds.push(p),
                        None => missing.push(i.clone()),
                    }
                }
                if missing.is_empty() {
                    return Ok(Choice {
                        kernel: k,
                        initrds,
                        how: format!("{cfg}, default entry '{}'", e.title),
                        cmdline: Some(e.cmdline),
                    });
                }
                notes.push(format!(
                    "{cfg}'s default entry names initrd {}, which is not in the image",
                    missing.join(" ")
                ));
            }
            None => notes.push(format!(
                "{cfg}'s default entry names {}, which is not in the image",
                e.kernel
            )),
        }
    }
    let note = |how: String| {
        if notes.is_empty() {
            how
        } else {
            format!("{how} ({})", notes.join("; "))
        }
    };
    // The newest /boot/vmlinuz-* (or vmlinux-*), by version.
    let mut versions: Vec<(String, String)> = Vec::new();
    for d in view.list_dir("/boot")?.unwrap_or_default() {
        let name = String::from_utf8_lossy(&d.name).into_owned();
        let v = name
            .strip_prefix("vmlinuz-")
            .or_else(|| name.strip_prefix("vmlinux-"));
        if let Some(v) = v {
            if regular(view, &format!("/boot/{name}"))?.is_some() {
                versions.push((v.to_string(), name.clone()));
            }
        }
    }
    if let Some((v, name)) = versions.into_iter().max_by(|a, b| version_cmp(&a.0, &b.0)) {
        let kernel = regular(view, &format!("/boot/{name}"))?.unwrap_or_default();
        let mut initrds = Vec::new();
        for cand in [
            format!("initrd.img-{v}"),
            format!("initramfs-{v}.img"),
            format!("initrd-{v}.img"),
            format!("initrd-{v}"),
        ] {
            if let Some(p) = regular(view, &format!("/boot/{cand}"))? {
                initrds.push(p);
                break;
            }
        }
        return Ok(Choice {
            kernel,
            initrds,
            how: note(format!("the newest kernel in /boot ({v})")),
            cmdline: None,
        });
    }
    // The symlinks at the top (Debian's linux-image postinst) or in /boot.
    for (k, i) in [
        ("/vmlinuz", "/initrd.img"),
        ("/boot/vmlinuz", "/boot/initrd.img"),
    ] {
        if let Some(kp) = regular(view, k)? {
            let initrds = regular(view, i)?.into_iter().collect();
            return Ok(Choice {
                kernel: kp,
                initrds,
                how: note(format!("the {k} link")),
                cmdline: None,
            });
        }
    }
    Err(InspectError::NoKernel {
        image: view.image_path().to_path_buf(),
        detail: note("no grub.cfg entry, no /boot/vmlinuz-*, no /vmlinuz or /boot/vmlinuz".into()),
    })
}
