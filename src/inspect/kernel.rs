//! Which kernel and initrd the image boots: GRUB's default entry when the
//! image has a grub.cfg (or BLS entries), else the newest
//! /boot/vmlinuz-* with its initrd, else the /vmlinuz and /initrd.img
//! symlinks Debian and Ubuntu keep.

use super::grub::{self, BootEntry};
use super::limits::{CONFIG_FILE as SMALL, HOLE_SLACK, MAX_INITRDS};
use super::view::{Node, View};
use super::InspectError;
use crate::boot::collect::version_cmp;

const GRUB_CFGS: &[&str] = &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
/// Candidates in /boot that could not be resolved, named in the notes
/// before the rest are only counted.
const NAMED_SKIPS: usize = 3;

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
        let entry =
            grub::default_entry(&cfg, env.as_deref()).map_err(|source| InspectError::Grub {
                image: view.image_path().to_path_buf(),
                path: cfg_path.to_string(),
                source,
            })?;
        if let Some(e) = entry {
            return Ok(Some((cfg_path.to_string(), e)));
        }
        if grub::uses_bls(&cfg) {
            let mut entries = Vec::new();
            for d in view
                .list_dir("/boot/loader/entries")?
                .as_deref()
                .unwrap_or_default()
            {
                let name = String::from_utf8_lossy(&d.name).into_owned();
                if !name.ends_with(".conf") {
                    continue;
                }
                if let Some(t) = view.read_file(&format!("/boot/loader/entries/{name}"), SMALL)? {
                    entries.push((name, String::from_utf8_lossy(&t).into_owned()));
                }
            }
            let entry = grub::bls_default(&entries, env.as_deref()).map_err(|source| {
                InspectError::Grub {
                    image: view.image_path().to_path_buf(),
                    path: "/boot/loader/entries".into(),
                    source,
                }
            })?;
            if let Some(e) = entry {
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

/// Picks the kernel and initrd the image boots, as a table of contents:
/// GRUB's default entry, else the newest /boot/vmlinuz-*, else the
/// /vmlinuz links; what was passed over on the way goes into `notes`.
pub fn choose(view: &View) -> Result<Choice, InspectError> {
    let mut notes = Vec::new();
    if let Some(c) = from_grub(view, &mut notes)? {
        return Ok(c);
    }
    if let Some(c) = newest_in_boot(view, &mut notes)? {
        return Ok(c);
    }
    if let Some(c) = from_links(view, &mut notes) {
        return Ok(c);
    }
    Err(InspectError::NoKernel {
        image: view.image_path().to_path_buf(),
        detail: with_notes(
            "no grub.cfg entry, no /boot/vmlinuz-*, no /vmlinuz or /boot/vmlinuz".into(),
            &notes,
        ),
    })
}

/// GRUB's default entry, when its kernel and every initrd are in the
/// image; otherwise a note saying which one is not.
fn from_grub(view: &View, notes: &mut Vec<String>) -> Result<Option<Choice>, InspectError> {
    let Some((cfg, e)) = grub_entry(view)? else {
        return Ok(None);
    };
    if e.initrds.len() > MAX_INITRDS {
        return Err(InspectError::TooManyInitrds {
            image: view.image_path().to_path_buf(),
            cfg,
            count: e.initrds.len(),
        });
    }
    let Some(k) = grub_path(view, &cfg, &e.kernel)? else {
        notes.push(format!(
            "{cfg}'s default entry names {}, which is not in the image",
            e.kernel
        ));
        return Ok(None);
    };
    let mut initrds = Vec::new();
    let mut missing = Vec::new();
    for i in &e.initrds {
        match grub_path(view, &cfg, i)? {
            Some(p) => initrds.push(p),
            None => missing.push(i.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(Some(Choice {
            kernel: k,
            initrds,
            how: format!("{cfg}, default entry '{}'", e.title),
            cmdline: Some(e.cmdline),
        }));
    }
    notes.push(format!(
        "{cfg}'s default entry names initrd {}, which is not in the image",
        missing.join(" ")
    ));
    Ok(None)
}

/// The newest /boot/vmlinuz-* (or vmlinux-*), by version, with the initrd
/// of its version; one that cannot be resolved (a symlink loop) is passed
/// over, not fatal.
fn newest_in_boot(view: &View, notes: &mut Vec<String>) -> Result<Option<Choice>, InspectError> {
    let mut versions: Vec<(String, String)> = Vec::new();
    let mut skipped = Vec::new();
    for d in view.list_dir("/boot")?.as_deref().unwrap_or_default() {
        let name = String::from_utf8_lossy(&d.name).into_owned();
        let v = name
            .strip_prefix("vmlinuz-")
            .or_else(|| name.strip_prefix("vmlinux-"));
        if let Some(v) = v {
            match regular(view, &format!("/boot/{name}")) {
                Ok(Some(p)) => versions.push((v.to_string(), p)),
                Ok(None) => {}
                Err(e) => skipped.push(e.to_string()),
            }
        }
    }
    if !skipped.is_empty() {
        let more = skipped.len().saturating_sub(NAMED_SKIPS);
        skipped.truncate(NAMED_SKIPS);
        if more > 0 {
            skipped.push(format!("{more} more"));
        }
        notes.push(format!("passed over: {}", skipped.join("; ")));
    }
    let Some((v, kernel)) = versions.into_iter().max_by(|a, b| version_cmp(&a.0, &b.0)) else {
        return Ok(None);
    };
    let mut initrds = Vec::new();
    for cand in [
        format!("initrd.img-{v}"),
        format!("initramfs-{v}.img"),
        format!("initrd-{v}.img"),
        format!("initrd-{v}"),
    ] {
        match regular(view, &format!("/boot/{cand}")) {
            Ok(Some(p)) => {
                initrds.push(p);
                break;
            }
            Ok(None) => {}
            Err(e) => notes.push(format!("initrd passed over: {e}")),
        }
    }
    let how = format!("the newest kernel in /boot ({v})");
    Ok(Some(Choice {
        kernel,
        initrds,
        how: with_notes(how, notes),
        cmdline: None,
    }))
}

/// The symlinks at the top (Debian's linux-image postinst) or in /boot.
fn from_links(view: &View, notes: &mut Vec<String>) -> Option<Choice> {
    for (k, i) in [
        ("/vmlinuz", "/initrd.img"),
        ("/boot/vmlinuz", "/boot/initrd.img"),
    ] {
        let kp = regular(view, k).unwrap_or_else(|e| {
            notes.push(format!("passed over: {e}"));
            None
        });
        if let Some(kp) = kp {
            let initrds = regular(view, i)
                .unwrap_or_else(|e| {
                    notes.push(format!("initrd passed over: {e}"));
                    None
                })
                .into_iter()
                .collect();
            return Some(Choice {
                kernel: kp,
                initrds,
                how: with_notes(format!("the {k} link"), notes),
                cmdline: None,
            });
        }
    }
    None
}

/// `how`, with what was noticed on the way in parentheses.
fn with_notes(how: String, notes: &[String]) -> String {
    if notes.is_empty() {
        how
    } else {
        format!("{how} ({})", notes.join("; "))
    }
}

/// What `get-kernel` will write: the kernel's and each initrd's file,
/// checked before a byte is written.
pub struct Plan {
    pub kernel: Node,
    pub initrds: Vec<Node>,
}

/// Resolves the choice's files and refuses outputs a hostile image would
/// make unbounded: a file larger than `max_output`, initrds whose
/// concatenation is, or a file mostly made of holes (a sparse 1 TiB
/// initrd, an i_size of 2^63) — its size must not pass its allocated
/// blocks by more than [`HOLE_SLACK`].
pub fn plan(view: &View, c: &Choice) -> Result<Plan, InspectError> {
    let max = view.limits.max_output;
    let file = |p: &str| -> Result<Node, InspectError> {
        let n = view
            .resolve(p, true)?
            .filter(|n| n.inode.is_file())
            .ok_or_else(|| InspectError::NoKernel {
                image: view.image_path().to_path_buf(),
                detail: format!("{p} is not a regular file"),
            })?;
        let size = n.inode.size;
        if size > max {
            return Err(too_large(view, p, size, max));
        }
        let allocated = view.allocated(&n)?;
        if size > allocated.saturating_add(HOLE_SLACK) {
            return Err(InspectError::Sparse {
                image: view.image_path().to_path_buf(),
                path: p.to_string(),
                size,
                allocated,
            });
        }
        Ok(n)
    };
    let kernel = file(&c.kernel)?;
    if c.initrds.len() > MAX_INITRDS {
        return Err(InspectError::TooManyInitrds {
            image: view.image_path().to_path_buf(),
            cfg: c.how.clone(),
            count: c.initrds.len(),
        });
    }
    let mut initrds = Vec::new();
    let mut total = 0u64;
    for p in &c.initrds {
        let n = file(p)?;
        total = total.saturating_add(n.inode.size);
        if total > max {
            return Err(too_large(view, &c.initrds.join(" + "), total, max));
        }
        initrds.push(n);
    }
    Ok(Plan { kernel, initrds })
}

fn too_large(view: &View, path: &str, size: u64, limit: u64) -> InspectError {
    InspectError::TooLarge {
        image: view.image_path().to_path_buf(),
        path: path.to_string(),
        what: "what get-kernel writes to one file (--max-output)",
        size,
        limit,
    }
}
