//! The ISO itself: `xorriso -as mkisofs` (xorrisofs(1)), run as the
//! calling user over a scratch tree plus the kernel and initramfs grafted
//! in where they are (no copy of a large initramfs).
//!
//! Boot records as DIB's `iso` element makes them (ISOLINUX with a 4-sector
//! load and a boot info table, then an alternate no-emulation entry for the
//! EFI image), plus an isohybrid MBR so the image also boots written to a
//! disk. `-no_rc` keeps the user's startup files out. With a
//! SOURCE_DATE_EPOCH the volume dates and the MBR id
//! (`--modification-date=`) and every file's dates
//! (`--set_all_file_dates`) are that time, and the variable is passed on
//! for the dates of nodes with no disk file (the boot catalog).

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use super::{io_err, IsoError, IsoHost, IsoInput};

/// `YYYYMMDDhhmmsscc` in UTC, xorriso's timestring for `--modification-date=`.
pub fn timestring(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days (days since 1970-01-01 to y-m-d).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A mkisofs graft point `iso_path=disk_path`: `=` and `\` in either are
/// escaped with `\` (xorrisofs(1), -graft-points).
pub fn graft(iso_path: &str, disk: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let esc = |b: &[u8]| -> Vec<u8> {
        let mut v = Vec::with_capacity(b.len());
        for &c in b {
            if c == b'=' || c == b'\\' {
                v.push(b'\\');
            }
            v.push(c);
        }
        v
    };
    let mut v = esc(iso_path.as_bytes());
    v.push(b'=');
    v.extend(esc(disk.as_os_str().as_bytes()));
    OsString::from_vec(v)
}

/// The xorriso arguments for `root` (the scratch tree) plus the kernel
/// and initramfs, written to `out`.
pub fn args(host: &IsoHost, input: &IsoInput, root: &Path, out: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-no_rc", "-as", "mkisofs", "-quiet", "-o"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(out.into());
    for s in ["-r", "-J", "-l", "-V", input.volume_id] {
        a.push(s.into());
    }
    if let Some(t) = input.source_date_epoch {
        let t = timestring(t);
        a.push(format!("--modification-date={t}").into());
        a.push("--set_all_file_dates".into());
        a.push(t.into());
    }
    for s in [
        "-b",
        "isolinux/isolinux.bin",
        "-c",
        "isolinux/boot.cat",
        "-no-emul-boot",
        "-boot-load-size",
        "4",
        "-boot-info-table",
        "-eltorito-alt-boot",
        "-e",
        "isolinux/efiboot.img",
        "-no-emul-boot",
        "-isohybrid-mbr",
    ] {
        a.push(s.into());
    }
    a.push(host.isohdpfx.clone().into());
    a.push("-graft-points".into());
    a.push(graft("/", root));
    a.push(graft("/vmlinuz", input.kernel));
    a.push(graft("/initrd", input.initrd));
    a
}

/// Runs xorriso; its messages are returned in the error when it fails.
pub fn run(host: &IsoHost, input: &IsoInput, root: &Path, out: &Path) -> Result<(), IsoError> {
    let tool = host.xorriso.as_deref().ok_or(IsoError::MissingHostTool {
        what: "xorriso (not on PATH)".into(),
        package: "xorriso",
    })?;
    let mut c = Command::new(tool);
    c.args(args(host, input, root, out));
    match input.source_date_epoch {
        Some(t) => c.env("SOURCE_DATE_EPOCH", t.to_string()),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    let res = c
        .output()
        .map_err(io_err(format!("running {}", tool.display())))?;
    if !res.status.success() {
        let _ = std::fs::remove_file(out);
        return Err(IsoError::Tool {
            tool: tool.display().to_string(),
            status: res.status.to_string(),
            stderr: String::from_utf8_lossy(&res.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestrings() {
        assert_eq!(timestring(0), "1970010100000000");
        assert_eq!(timestring(1_700_000_000), "2023111422132000");
        assert_eq!(timestring(951_782_400), "2000022900000000");
    }

    /// Random epochs (1970 to 2999, xorriso's range) against GNU date.
    #[test]
    fn timestrings_agree_with_date() {
        let date = ["/usr/bin/date", "/bin/date"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("date (coreutils)");
        let mut rng = crate::test_rng::Rng(0x1505);
        for _ in 0..200 {
            let t = rng.below(32_503_680_000) as i64;
            let o = Command::new(date)
                .args(["-u", "-d", &format!("@{t}"), "+%Y%m%d%H%M%S00"])
                .output()
                .unwrap();
            let want = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert_eq!(timestring(t), want, "epoch {t}");
        }
    }

    #[test]
    fn graft_points_escape() {
        assert_eq!(
            graft("/initrd", Path::new("/a=b\\c")),
            OsString::from("/initrd=/a\\=b\\\\c")
        );
    }
}
