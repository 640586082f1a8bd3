//! `dibr mkfs`: a tarball or directory in, a just-large-enough ext4 image out.

use std::path::PathBuf;

use clap::Args;

use super::size::parse_size;
use crate::ext4::{self, layout::BLOCK_SIZE, Builder, Options};
use crate::output::atomic::AtomicFile;
use crate::progress::Phase;
use crate::settings::{self, SourceDateEpoch};
use crate::source::Source;
use crate::units;
use crate::uuid::Uuid;

#[derive(Args, Debug)]
pub struct MkfsArgs {
    /// Source tree: a tar archive (plain, gzip or zstd; `-` for stdin) or a directory
    #[arg(long, value_name = "SRC")]
    pub from: PathBuf,
    /// Output image file (written under a temporary name, renamed when complete)
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// Filesystem label (at most 16 bytes); DIB's root filesystems use cloudimg-rootfs
    #[arg(long, short = 'L')]
    pub label: Option<String>,
    /// Filesystem UUID (default: random, or derived from SOURCE_DATE_EPOCH when set)
    #[arg(long, short = 'U')]
    pub uuid: Option<String>,
    /// Fixed image size (e.g. 2G); default: just large enough for the tree
    #[arg(long, conflicts_with = "extra_size")]
    pub size: Option<String>,
    /// Free space to add on top of the smallest size (e.g. 512M)
    #[arg(long)]
    pub extra_size: Option<String>,
    /// Largest size the filesystem must be able to grow to (sets the inode density). Default 1P, lowered to fit a --size too small for it (the summary says to what)
    #[arg(long)]
    pub max_resize: Option<String>,
    /// Journal size (default: 4-64 MiB by filesystem size, as mke2fs; minimum 4M)
    #[arg(long)]
    pub journal_size: Option<String>,
}

fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    Uuid::parse_hex(s).map(Uuid::bytes).ok_or_else(|| {
        format!(
            "invalid --uuid {s:?}: expected 32 hex digits like 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        )
    })
}

/// Build options from the arguments and SOURCE_DATE_EPOCH.
pub fn options(a: &MkfsArgs) -> Result<Options, String> {
    let mut label = [0u8; 16];
    if let Some(l) = &a.label {
        if l.len() > 16 {
            return Err(format!(
                "--label {l:?} is {} bytes; ext4 labels hold at most 16",
                l.len()
            ));
        }
        label[..l.len()].copy_from_slice(l.as_bytes());
    }
    let size_blocks = match &a.size {
        Some(s) => {
            let b = parse_size(s).map_err(|e| format!("--size: {e}"))?;
            if b < 8 << 20 {
                return Err(format!(
                    "--size {s} is too small: the smallest ext4 image dibr makes is 8M"
                ));
            }
            Some(b / BLOCK_SIZE)
        }
        None => None,
    };
    let extra_blocks = match &a.extra_size {
        Some(s) => parse_size(s)
            .map_err(|e| format!("--extra-size: {e}"))?
            .div_ceil(BLOCK_SIZE),
        None => 0,
    };
    let max_resize_bytes = match &a.max_resize {
        Some(v) => parse_size(v).map_err(|e| format!("--max-resize: {e}"))?,
        None => 1 << 50,
    };
    if max_resize_bytes > 1u64 << 60 {
        return Err("--max-resize above 1E is beyond ext4 with 4 KiB blocks".into());
    }
    let journal_blocks = match &a.journal_size {
        Some(s) => {
            let b = parse_size(s).map_err(|e| format!("--journal-size: {e}"))? / BLOCK_SIZE;
            if b < ext4::journal::MIN_BLOCKS {
                return Err(format!(
                    "--journal-size {s} is below the 4M minimum jbd2 accepts"
                ));
            }
            if b > (1 << 30) / BLOCK_SIZE * 10 {
                return Err(format!("--journal-size {s} is above 10G"));
            }
            Some(b)
        }
        None => None,
    };
    let source_date_epoch = SourceDateEpoch::secs_from_env().map_err(|e| e.to_string())?;
    Ok(Options {
        label,
        uuid: a.uuid.as_deref().map(parse_uuid).transpose()?,
        size_blocks,
        extra_blocks,
        max_resize_bytes,
        // The 1 PiB default is a wish a fixed --size may lower; a ceiling
        // asked for is a demand.
        fit_ceiling: a.max_resize.is_none(),
        density: Default::default(),
        reserved_per_mille: 50,
        journal_blocks,
        source_date_epoch,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Ext4(#[from] ext4::Error),
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn run(a: &MkfsArgs) -> Result<(), MkfsError> {
    let opts = options(a).map_err(MkfsError::Usage)?;
    let started = std::time::Instant::now();
    let mut src = Source::open(&a.from)?;
    let out = AtomicFile::create(&a.output).map_err(|e| MkfsError::Create {
        path: a.output.clone(),
        source: e,
    })?;
    let file = out.file().try_clone().map_err(|e| MkfsError::Create {
        path: a.output.clone(),
        source: e,
    })?;
    let mut b = Builder::new(file, a.output.clone(), opts)?;
    b.set_io(settings::ext4_io());
    let total = src.size_hint();
    let phase = Phase::start(&format!("mkfs: reading {}", a.from.display()), total);
    while let Some(e) = src.next_entry()? {
        b.add(&e, src.data())?;
        phase.set_bytes(b.data_bytes());
    }
    phase.done();
    let phase = Phase::start("mkfs: writing metadata, journal and syncing", None);
    let s = b.finish()?;
    phase.done();
    out.commit().map_err(|e| MkfsError::Create {
        path: a.output.clone(),
        source: e,
    })?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(first) = &s.first_foreign_xattr {
        eprintln!(
            "dibr mkfs: warning: dropped {} xattrs of namespaces ext4 cannot hold (first: {first})",
            s.foreign_xattrs
        );
    }
    eprintln!(
        "dibr mkfs: wrote {} ({} blocks of 4 KiB, {} groups; sparse, {} in use) to {}",
        units::human(s.blocks_count * BLOCK_SIZE),
        s.blocks_count,
        s.groups,
        units::human((s.blocks_count - s.free_blocks) * BLOCK_SIZE),
        a.output.display()
    );
    eprintln!(
        "  {} entries, {} of file data, {} inodes ({} used, {} per group), {} free",
        s.entries,
        units::human(s.data_bytes),
        s.inodes_count,
        s.used_inodes,
        s.inodes_per_group,
        units::human(s.free_blocks * BLOCK_SIZE)
    );
    eprintln!(
        "  journal {}, UUID {}, can grow to {} (resize2fs / online{}); {:.2}s",
        units::human(s.journal_blocks * BLOCK_SIZE),
        Uuid(s.uuid),
        units::human(s.growth_ceiling_bytes),
        match s.ceiling_lowered_from {
            Some(from) => format!("; lowered from {} to fit --size", units::human(from)),
            None => String::new(),
        },
        secs
    );
    Ok(())
}
