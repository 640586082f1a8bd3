//! disk-image-create's options for the root filesystem, shared by
//! `dibr build` and `dibr assemble`, resolved (with their environment
//! variables) into [`RootFsOptions`]. `diskimage_builder/lib/disk-image-create`
//! turns them into mke2fs arguments: `-E resize=$MAX_ONLINE_RESIZE`,
//! `-J size=$DIB_JOURNAL_SIZE`, then `$MKFS_OPTS` (so `--mkfs-options`
//! wins), and adds `DIB_IMAGE_EXTRA_SIZE` GiB to the computed size.

use clap::Args;

use super::mkfs_options::{self, journal_mib};
use super::size::parse_size;
use crate::assemble::RootFsOptions;
use crate::ext4::layout::BLOCK_SIZE;

#[derive(Args, Debug, Clone, Default)]
pub struct RootFsArgs {
    /// Largest size the root filesystem can grow to, in 4 KiB blocks as DIB's (mkfs -E resize=; 274877906944 = 1 PiB), or a size with a unit (64T). Default: $MAX_ONLINE_RESIZE, else 1 PiB, lowered to fit an --image-size too small for it. A lower ceiling packs the inodes into fewer 128 MiB groups: a smaller virtual size
    #[arg(long, value_name = "BLOCKS")]
    pub max_online_resize: Option<String>,
    /// mke2fs options for the root filesystem, one string as DIB's: -i BYTES-PER-INODE, -N INODES, -m PERCENT, -J size=MIB, -E resize=BLOCKS are honoured; -I 256, -b 4096, -O features dibr writes (or ^features it never writes), -E lazy_itable_init/discard are accepted; anything else is refused by name
    #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
    pub mkfs_options: Option<String>,
    /// Root filesystem journal size in MiB (DIB's --mkfs-journal-size, mkfs -J size=). Default: $DIB_JOURNAL_SIZE, else 4-64 MiB by tree size
    #[arg(long, value_name = "MIB")]
    pub mkfs_journal_size: Option<String>,
    /// Free space in GiB added to the computed size (DIB's --image-extra-size; fractions allowed). Default: $DIB_IMAGE_EXTRA_SIZE. Ignored with --image-size, as DIB ignores it
    #[arg(long, value_name = "GIB")]
    pub image_extra_size: Option<String>,
}

/// The environment variables disk-image-create reads for the same
/// settings (empty values count as unset).
#[derive(Clone, Debug, Default)]
pub struct RootFsEnv {
    pub max_online_resize: Option<String>,
    pub journal_size: Option<String>,
    pub image_extra_size: Option<String>,
}

impl RootFsEnv {
    pub fn from_env() -> RootFsEnv {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        RootFsEnv {
            max_online_resize: var("MAX_ONLINE_RESIZE"),
            journal_size: var("DIB_JOURNAL_SIZE"),
            image_extra_size: var("DIB_IMAGE_EXTRA_SIZE"),
        }
    }
}

/// `--max-online-resize`: DIB's blocks, or a size with a unit.
fn ceiling_bytes(v: &str) -> Result<u64, String> {
    let bytes = match v.trim().parse::<u64>() {
        Ok(blocks) => blocks.checked_mul(BLOCK_SIZE),
        Err(_) => parse_size(v).ok(),
    }
    .filter(|b| *b > 0)
    .ok_or_else(|| {
        format!("--max-online-resize {v:?}: expected a number of 4 KiB blocks (274877906944 = 1 PiB) or a size such as 64T")
    })?;
    if bytes > 1 << 60 {
        return Err(format!(
            "--max-online-resize {v}: above 1 EiB, beyond ext4 with 4 KiB blocks"
        ));
    }
    Ok(bytes)
}

/// DIB's `--image-extra-size`: GiB, fractions allowed.
fn extra_bytes(v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|g| g.is_finite() && *g >= 0.0)
        .map(|g| (g * (1u64 << 30) as f64) as u64)
        .ok_or_else(|| format!("--image-extra-size {v:?}: expected GiB, e.g. 2 or 0.5"))
}

/// Resolve the options: the argument wins over its variable, and
/// `--mkfs-options` over both (it comes last on DIB's mkfs line).
/// `max_resize` is `dibr assemble --max-resize` (bytes), another way to
/// say the ceiling. Returns the options and notes for the user.
pub fn resolve(
    a: &RootFsArgs,
    env: &RootFsEnv,
    image_size: Option<u64>,
    max_resize: Option<&str>,
) -> Result<(RootFsOptions, Vec<String>), String> {
    let mut o = RootFsOptions::default();
    let mut notes = Vec::new();
    let online = a
        .max_online_resize
        .as_deref()
        .or(env.max_online_resize.as_deref());
    if let (Some(_), Some(_)) = (online, max_resize) {
        return Err(
            "--max-resize and --max-online-resize (or MAX_ONLINE_RESIZE) both set the growth ceiling: give one"
                .into(),
        );
    }
    if let Some(v) = online {
        o.max_resize_bytes = ceiling_bytes(v)?;
        o.fit_ceiling = false;
    }
    if let Some(v) = max_resize {
        o.max_resize_bytes = parse_size(v).map_err(|e| format!("--max-resize: {e}"))?;
        o.fit_ceiling = false;
    }
    if let Some(v) = a
        .mkfs_journal_size
        .as_deref()
        .or(env.journal_size.as_deref())
    {
        o.journal_blocks =
            Some(journal_mib("--mkfs-journal-size", v.trim()).map_err(|e| e.to_string())?);
    }
    let m =
        mkfs_options::parse(a.mkfs_options.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
    if let Some(d) = m.density {
        o.density = d;
    }
    if let Some(r) = m.reserved_per_mille {
        o.reserved_per_mille = r;
    }
    if let Some(j) = m.journal_blocks {
        o.journal_blocks = Some(j);
    }
    if let Some(b) = m.resize_blocks {
        o.max_resize_bytes = b * BLOCK_SIZE;
        o.fit_ceiling = false;
    }
    if let Some(v) = a
        .image_extra_size
        .as_deref()
        .or(env.image_extra_size.as_deref())
    {
        let extra = extra_bytes(v)?;
        if image_size.is_some() {
            notes.push(format!(
                "--image-extra-size {v} is ignored: --image-size fixes the size (as disk-image-create ignores DIB_IMAGE_EXTRA_SIZE then)"
            ));
        } else {
            o.extra_bytes = extra;
        }
    }
    Ok((o, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut RootFsArgs)) -> RootFsArgs {
        let mut a = RootFsArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn defaults_keep_a_lowerable_1pib_ceiling() {
        let (o, n) = resolve(&RootFsArgs::default(), &RootFsEnv::default(), None, None).unwrap();
        assert_eq!(o, RootFsOptions::default());
        assert!(o.fit_ceiling && n.is_empty());
    }

    #[test]
    fn dib_units() {
        let a = args(|a| {
            a.max_online_resize = Some("274877906944".into());
            a.mkfs_journal_size = Some("128".into());
            a.image_extra_size = Some("1.5".into());
        });
        let (o, _) = resolve(&a, &RootFsEnv::default(), None, None).unwrap();
        assert_eq!(o.max_resize_bytes, 1 << 50);
        assert!(!o.fit_ceiling);
        assert_eq!(o.journal_blocks, Some(32768));
        assert_eq!(o.extra_bytes, 3 << 29);
        let a = args(|a| a.max_online_resize = Some("64T".into()));
        let (o, _) = resolve(&a, &RootFsEnv::default(), None, None).unwrap();
        assert_eq!(o.max_resize_bytes, 64 << 40);
    }

    #[test]
    fn environment_and_mkfs_options_order() {
        let env = RootFsEnv {
            max_online_resize: Some("1000000".into()),
            journal_size: Some("32".into()),
            image_extra_size: Some("1".into()),
        };
        let a = args(|a| a.mkfs_options = Some("-J size=16 -E resize=2000000".into()));
        let (o, notes) = resolve(&a, &env, Some(2 << 30), None).unwrap();
        assert_eq!(o.journal_blocks, Some(4096));
        assert_eq!(o.max_resize_bytes, 2_000_000 * 4096);
        assert_eq!(o.extra_bytes, 0);
        assert!(notes[0].contains("ignored"), "{notes:?}");
        let e = resolve(&RootFsArgs::default(), &env, None, Some("1P")).unwrap_err();
        assert!(e.contains("--max-resize"), "{e}");
        for (a, what) in [
            (
                args(|a| a.max_online_resize = Some("lots".into())),
                "--max-online-resize",
            ),
            (
                args(|a| a.mkfs_journal_size = Some("1".into())),
                "--mkfs-journal-size",
            ),
            (
                args(|a| a.image_extra_size = Some("-1".into())),
                "--image-extra-size",
            ),
            (
                args(|a| a.mkfs_options = Some("-O inline_data".into())),
                "inline_data",
            ),
        ] {
            let e = resolve(&a, &RootFsEnv::default(), None, None).unwrap_err();
            assert!(e.contains(what), "{e}");
        }
    }
}
