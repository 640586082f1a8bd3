//! The Glance/Nova properties of a disk image, derived from the image
//! itself: what `NAME.<type>.glance.json` beside every disk output holds
//! and `dibr check --glance` prints. Keys are Glance's (sorted, so the
//! JSON is stable); see docs/glance.md for each rule.
//!
//! `os` names the release in libosinfo's terms, `esp` finds the UEFI
//! loader, `guest` reads the guest's architecture, drivers and agent,
//! `file` the uploaded file's format and hash, `openstack` the
//! `openstack image create` command line.

pub mod esp;
pub mod file;
pub mod guest;
pub mod initramfs;
pub mod openstack;
pub mod os;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::disk::{layout, FsKind, Image, Layout};
use super::view::View;
use super::{kernel, InspectError};

/// Glance's properties, by name (sorted).
pub type Properties = BTreeMap<String, Value>;

/// The smallest `min_ram` (MiB): what a Debian or Ubuntu cloud image
/// boots in.
pub const MIN_RAM_FLOOR: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum GlanceError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error(transparent)]
    Disk(#[from] super::disk::DiskError),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not Glance properties as dibr writes them: {detail}", path.display())]
    SideFile { path: PathBuf, detail: String },
}

/// The properties and what could not be judged (the property is then
/// left out, never guessed).
#[derive(Debug, Default)]
pub struct Report {
    pub properties: Properties,
    /// Properties left out, and why.
    pub notes: Vec<String>,
    /// What reading the disk noticed (the root found, a stale GPT backup).
    pub read_notes: Vec<String>,
    /// The disk's virtual size in bytes.
    pub virtual_size: u64,
}

/// The build's provenance, added to the side file (not in the image).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The elements of the build (empty: `dibr assemble`).
    pub elements: Vec<String>,
    pub source_date_epoch: Option<i64>,
}

impl Provenance {
    /// `dibr_version`, `dibr_elements` (space-separated, as DIB's
    /// IMAGE_ELEMENT) and `dibr_source_date_epoch`, when known.
    pub fn add_to(&self, p: &mut Properties) {
        let mut put = |k: &str, v: String| p.insert(k.to_string(), Value::String(v));
        put("dibr_version", env!("CARGO_PKG_VERSION").to_string());
        if !self.elements.is_empty() {
            put("dibr_elements", self.elements.join(" "));
        }
        if let Some(e) = self.source_date_epoch {
            put("dibr_source_date_epoch", e.to_string());
        }
    }
}

/// The properties of `file` as uploaded: the guest read from `image`
/// (raw or qcow2: `file` itself, or the raw disk it was made from). The
/// file's sha512 (the slow part: every byte of a large image) is taken on
/// a thread of its own while the guest is read.
pub fn read(image: &Path, file: &Path) -> Result<Report, GlanceError> {
    let (described, guest) = std::thread::scope(|s| {
        let hashing = s.spawn(|| file::describe(file));
        let guest = (|| -> Result<Report, GlanceError> {
            let img = Image::open(image)?;
            let lay = layout(&img)?;
            Ok(from_image(&img, &lay))
        })();
        (hashing.join(), guest)
    });
    let f = described.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    let mut r = guest?;
    let gib = 1u64 << 30;
    let mut put = |k: &str, v: Value| r.properties.insert(k.to_string(), v);
    put("disk_format", f.disk_format.into());
    put("container_format", "bare".into());
    put("min_disk", r.virtual_size.div_ceil(gib).into());
    put("os_hash_algo", "sha512".into());
    put("os_hash_value", f.sha512.into());
    Ok(r)
}

/// What the disk and its guest say, without the file's format and hash.
pub fn from_image(img: &Image, lay: &Layout) -> Report {
    let mut r = Report {
        virtual_size: img.disk().size(),
        ..Report::default()
    };
    r.read_notes.extend(lay.notes.iter().cloned());
    if let Some(fw) = firmware(img, lay) {
        r.properties.insert("hw_firmware_type".into(), fw.into());
    }
    let mut min_ram = MIN_RAM_FLOOR;
    match View::open(img, lay) {
        Ok(view) => {
            r.read_notes.extend(view.notes.iter().cloned());
            guest_properties(&view, &mut r, &mut min_ram);
        }
        Err(e) => r.notes.push(format!(
            "the guest's properties (architecture, os_distro, drivers) are left out: {e}"
        )),
    }
    r.properties.insert("min_ram".into(), min_ram.into());
    r
}

/// `uefi` when the disk has only a UEFI loader, `bios` when only BIOS
/// boot code (the MBR's first 440 bytes), None for both or neither.
fn firmware(img: &Image, lay: &Layout) -> Option<&'static str> {
    let mut mbr = [0u8; 440];
    let bios = img.disk().read_at(0, &mut mbr).is_ok()
        && mbr.iter().any(|&b| b != 0)
        && lay.volumes.iter().all(|v| v.start > 0);
    let uefi = lay
        .volumes
        .iter()
        .filter(|v| v.fs == FsKind::Vfat)
        .any(|v| !esp::loaders(img.disk(), v.start).is_empty());
    match (bios, uefi) {
        (true, false) => Some("bios"),
        (false, true) => Some("uefi"),
        _ => None,
    }
}

/// Architecture, machine type, release, virtio buses, guest agent and
/// the RAM rule; each one that cannot be judged is a note.
fn guest_properties(view: &View, r: &mut Report, min_ram: &mut u64) {
    let mut put = |k: &str, v: &str| {
        r.properties.insert(k.to_string(), v.into());
    };
    let mut notes = Vec::new();
    match guest::architecture(view) {
        Ok(Some(a)) => {
            put("architecture", a);
            if matches!(a, "aarch64" | "armv7l" | "riscv64") {
                put("hw_machine_type", "virt");
            }
        }
        Ok(None) => notes.push("architecture: no ELF program (/bin/sh) dibr knows".into()),
        Err(e) => notes.push(format!("architecture: {e}")),
    }
    match os_release(view) {
        Ok(Some(o)) => {
            put("os_distro", &o.distro);
            if let Some(v) = &o.version {
                put("os_version", v);
            }
        }
        Ok(None) => notes.push("os_distro: no /etc/os-release with an ID".into()),
        Err(e) => notes.push(format!("os_distro: {e}")),
    }
    match guest::guest_agent(view) {
        Ok(true) => put("hw_qemu_guest_agent", "yes"),
        Ok(false) => {}
        Err(e) => notes.push(format!("hw_qemu_guest_agent: {e}")),
    }
    match boot_kernel(view) {
        Ok((c, bytes)) => {
            *min_ram = ram_rule(bytes);
            if let Err(e) = virtio(view, &c, &mut r.properties, &mut notes) {
                notes.push(format!("hw_disk_bus, hw_vif_model: {e}"));
            }
        }
        Err(e) => notes.push(format!("hw_disk_bus, hw_vif_model: {e}")),
    }
    r.notes.extend(notes);
}

/// `hw_disk_bus=virtio` when virtio_pci and virtio_blk are built in or
/// modules in the initramfs (the root disk is found before the root is
/// mounted); `hw_vif_model=virtio` when virtio_pci and virtio_net are
/// built in or modules (loaded from the root).
fn virtio(
    view: &View,
    c: &kernel::Choice,
    p: &mut Properties,
    notes: &mut Vec<String>,
) -> Result<(), InspectError> {
    let Some(rel) = guest::kernel_release(c) else {
        notes.push(format!(
            "hw_disk_bus, hw_vif_model: no kernel release in {}",
            c.kernel
        ));
        return Ok(());
    };
    let d = guest::drivers(view, &rel)?;
    let early = match guest::initramfs_modules(view, c)? {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!(
                "hw_disk_bus: the initramfs is not judged ({e}): the kernel's modules decide"
            ));
            None
        }
    };
    let at_boot = |m: &str| {
        d.builtin.contains(m)
            || (d.modules.contains(m) && early.as_ref().is_none_or(|e| e.contains(m)))
    };
    let later = |m: &str| d.builtin.contains(m) || d.modules.contains(m);
    if at_boot("virtio_pci") && at_boot("virtio_blk") {
        p.insert("hw_disk_bus".into(), "virtio".into());
    }
    if later("virtio_pci") && later("virtio_net") {
        p.insert("hw_vif_model".into(), "virtio".into());
    }
    Ok(())
}

fn os_release(view: &View) -> Result<Option<os::Os>, InspectError> {
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(t) = view.read_file(p, super::limits::CONFIG_FILE)? {
            return Ok(os::from_os_release(&String::from_utf8_lossy(&t)));
        }
    }
    Ok(None)
}

/// The release of the kernel the image boots and its size with the
/// initrds.
fn boot_kernel(view: &View) -> Result<(kernel::Choice, u64), InspectError> {
    let c = kernel::choose(view)?;
    let mut bytes = 0u64;
    for p in std::iter::once(&c.kernel).chain(&c.initrds) {
        if let Some(n) = view.resolve(p, true)? {
            bytes = bytes.saturating_add(n.inode.size);
        }
    }
    Ok((c, bytes))
}

/// `min_ram` in MiB: four times the kernel and initrds (the initramfs
/// unpacks into RAM, compressed about threefold) rounded up to 256 MiB,
/// and at least [`MIN_RAM_FLOOR`].
pub fn ram_rule(boot_bytes: u64) -> u64 {
    let mib = boot_bytes.saturating_mul(4).div_ceil(1 << 20);
    mib.div_ceil(256).saturating_mul(256).max(MIN_RAM_FLOOR)
}

/// The side file's name: `NAME.qcow2` → `NAME.qcow2.glance.json`.
pub fn side_file(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".glance.json");
    PathBuf::from(s)
}

/// The properties as the side file holds them: pretty JSON, keys
/// sorted, a final newline.
pub fn to_json(p: &Properties) -> String {
    let mut s = serde_json::to_string_pretty(p).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_rule_has_a_floor_and_grows_with_the_boot_files() {
        assert_eq!(ram_rule(0), 512);
        assert_eq!(ram_rule(45 << 20), 512);
        assert_eq!(ram_rule(200 << 20), 1024);
    }

    #[test]
    fn side_file_is_beside_the_output() {
        assert_eq!(
            side_file(Path::new("/o/img.qcow2")),
            Path::new("/o/img.qcow2.glance.json")
        );
    }
}
