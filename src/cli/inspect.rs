//! `dibr get-kernel` and `dibr check`: read a finished image (raw or
//! qcow2) without mounting it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::size::parse_size;
use crate::inspect::check::{self, Status};
use crate::inspect::disk::{layout, Image};
use crate::inspect::glance::GlanceError;
use crate::inspect::kernel;
use crate::inspect::limits::Limits;
use crate::inspect::view::View;
use crate::inspect::InspectError;
use crate::output::atomic::AtomicFile;

#[derive(Args, Debug)]
pub struct GetKernelArgs {
    /// The disk image (raw or qcow2)
    pub image: PathBuf,
    /// Output prefix: writes PREFIX.vmlinuz and PREFIX.initrd (default: the image path without its extension)
    #[arg(short = 'o', value_name = "PREFIX")]
    pub prefix: Option<PathBuf>,
    /// The most get-kernel writes to one file (the kernel, or the initrds together); a larger or sparse file is refused
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_size)]
    pub max_output: u64,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// The memory budgets of a reading command.
#[derive(Args, Debug)]
pub struct ReadArgs {
    /// The most file contents read into memory in all (config files, BLS entries; every read counts, of a hard link too)
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub read_budget: u64,
    /// The most directory listings kept in memory in all
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub dir_budget: u64,
}

impl ReadArgs {
    fn limits(&self, max_output: u64) -> Limits {
        Limits {
            read_budget: self.read_budget,
            dir_budget: self.dir_budget,
            max_output,
        }
    }
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The disk image (raw or qcow2)
    pub image: PathBuf,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
    /// Print the image's Glance properties (JSON, as in the NAME.<type>.glance.json a build writes) instead of the checks
    #[arg(long)]
    pub glance: bool,
    /// The disk of the flavor the image will boot on, in GiB: WARN when the image's virtual size is larger
    #[arg(long, value_name = "GIB")]
    pub flavor_disk: Option<u64>,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// DIB's baremetal naming: `NAME.vmlinuz` next to `NAME.qcow2`.
fn default_prefix(image: &Path) -> PathBuf {
    match image.extension().and_then(|e| e.to_str()) {
        Some("qcow2" | "raw" | "img" | "vhd") => image.with_extension(""),
        _ => image.to_path_buf(),
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn get_kernel(a: &GetKernelArgs) -> Result<(), InspectError> {
    let t0 = Instant::now();
    let img = Image::open(&a.image)?;
    let lay = layout(&img)?;
    let view = View::open_with(&img, &lay, a.read.limits(a.max_output))?;
    for n in lay.notes.iter().chain(view.notes.iter()) {
        eprintln!("dibr: {n}");
    }
    let c = kernel::choose(&view)?;
    // Every size is judged before a byte is written.
    let plan = kernel::plan(&view, &c)?;
    let prefix = a.prefix.clone().unwrap_or_else(|| default_prefix(&a.image));
    let kpath = with_suffix(&prefix, ".vmlinuz");
    let ipath = with_suffix(&prefix, ".initrd");
    let out_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InspectError::Output { path, source }
    };
    // Both appear together or not at all (one output set).
    let set = crate::output::set::begin();
    let kf = AtomicFile::create(&kpath).map_err(out_err(&kpath))?;
    let klen = view.copy_node(&plan.kernel, &mut kf.file())?;
    let mut initrd = None;
    if !plan.initrds.is_empty() {
        let f = AtomicFile::create(&ipath).map_err(out_err(&ipath))?;
        let mut len = 0;
        for n in &plan.initrds {
            len += view.copy_node(n, &mut f.file())?;
        }
        initrd = Some((f, len));
    }
    kf.file().sync_all().map_err(out_err(&kpath))?;
    if let Some((f, _)) = &initrd {
        f.file().sync_all().map_err(out_err(&ipath))?;
    }
    kf.commit().map_err(out_err(&kpath))?;
    let initrd_len = match initrd {
        Some((f, len)) => {
            f.commit().map_err(out_err(&ipath))?;
            Some(len)
        }
        None => None,
    };
    set.commit().map_err(out_err(&kpath))?;
    eprintln!("dibr: kernel {} ({})", c.kernel, c.how);
    println!("{} ({klen} bytes)", kpath.display());
    match initrd_len {
        Some(len) => {
            eprintln!("dibr: initrd {}", c.initrds.join(" + "));
            println!("{} ({len} bytes)", ipath.display());
        }
        None => eprintln!("dibr: the image has no initrd for this kernel; wrote the kernel only"),
    }
    eprintln!("dibr: done in {:.2}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// `check --glance`: the image's Glance properties on stdout, what could
/// not be judged on stderr.
pub fn glance(a: &CheckArgs) -> Result<(), GlanceError> {
    let r = crate::inspect::glance::read(&a.image, &a.image)?;
    for n in r.read_notes.iter().chain(&r.notes) {
        eprintln!("dibr: {n}");
    }
    print!("{}", crate::inspect::glance::to_json(&r.properties));
    Ok(())
}

/// Runs the checks; returns whether any failed.
pub fn check(a: &CheckArgs) -> Result<bool, InspectError> {
    let img = Image::open(&a.image)?;
    let lay = layout(&img)?;
    let view = View::open_with(&img, &lay, a.read.limits(Limits::default().max_output))?;
    let mut items = check::run(&view, &lay);
    items.push(check::flavor_disk(img.disk().size(), a.flavor_disk));
    let count = |st: Status| items.iter().filter(|i| i.status == st).count();
    let (passes, warnings, fails) = (
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
    );
    let failed = fails > 0;
    if a.json {
        let v = serde_json::json!({
            "image": a.image.display().to_string(),
            "format": format!("{:?}", img.format).to_lowercase(),
            "notes": lay.notes.iter().chain(view.notes.iter()).collect::<Vec<_>>(),
            "passed": !failed,
            "summary": {"passed": passes, "warnings": warnings, "failed": fails},
            "items": items.iter().map(|i| serde_json::json!({
                "item": i.name,
                "status": i.status.as_str(),
                "detail": i.detail,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for n in lay.notes.iter().chain(view.notes.iter()) {
            eprintln!("dibr: {n}");
        }
        for i in &items {
            println!("{} {}: {}", i.status.as_str(), i.name, i.detail);
        }
        println!("{}", summary_line(passes, warnings, fails));
    }
    Ok(failed)
}

/// `12 passed, 1 warning, 0 failed`: the last line of `dibr check`.
pub fn summary_line(passed: usize, warnings: usize, failed: usize) -> String {
    format!(
        "{passed} passed, {warnings} warning{}, {failed} failed",
        if warnings == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::summary_line;

    #[test]
    fn summary_counts_each_status() {
        assert_eq!(summary_line(12, 0, 0), "12 passed, 0 warnings, 0 failed");
        assert_eq!(summary_line(10, 1, 1), "10 passed, 1 warning, 1 failed");
    }
}
