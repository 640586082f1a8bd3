//! The boot loaders' configuration: ISOLINUX's `isolinux.cfg` (BIOS) and
//! GRUB's `grub.cfg` (UEFI), as diskimage-builder's `iso` element writes
//! them (`cleanup.d/100-build-iso`: label "install", the kernel at
//! `/vmlinuz`, the initramfs at `/initrd`, the command line ending in `--`,
//! GRUB finding the ISO by its volume label).
//!
//! The command line comes from the user (`DIB_DEPLOY_ISO_KERNEL_CMDLINE_ARGS`).
//! ISOLINUX takes the rest of the `append` line as it is; GRUB's script
//! language expands `$`, quotes and `;`, so each word is single-quoted
//! for it (GRUB manual, "Shell-like scripting": within single quotes every
//! character is literal, a quote is written `'\''`). Control characters
//! (a newline would start a new command in both) are refused.

use super::IsoError;

/// The words of a kernel command line: printable ASCII and spaces only.
pub fn cmdline_words(cmdline: &str) -> Result<Vec<&str>, IsoError> {
    let bad = |reason: String| IsoError::BadCmdline {
        cmdline: cmdline.to_string(),
        reason,
    };
    if let Some(c) = cmdline
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' '))
    {
        return Err(bad(format!(
            "{c:?} is not allowed: only printable ASCII and spaces reach both ISOLINUX and GRUB unchanged"
        )));
    }
    // ISOLINUX's command line limit (syslinux doc/syslinux.txt: 2047).
    if cmdline.len() > 2000 {
        return Err(bad(format!(
            "{} bytes: at most 2000 fit ISOLINUX's append line",
            cmdline.len()
        )));
    }
    Ok(cmdline.split(' ').filter(|w| !w.is_empty()).collect())
}

/// An ISO 9660 volume id: d-characters (A-Z, 0-9, _), 1 to 32 of them
/// (ECMA-119 8.4.6), so it can be searched for as a label unquoted.
pub fn check_volume_id(id: &str) -> Result<(), IsoError> {
    let bad = |reason| IsoError::BadVolumeId {
        id: id.to_string(),
        reason,
    };
    if id.is_empty() || id.len() > 32 {
        return Err(bad("must be 1 to 32 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(bad("only A-Z, 0-9 and _ (ISO 9660 d-characters)"));
    }
    Ok(())
}

/// ISOLINUX's configuration: boot `/vmlinuz` with `/initrd` at once.
pub fn isolinux_cfg(words: &[&str]) -> String {
    let mut append = String::from("initrd=/initrd");
    for w in words {
        append.push(' ');
        append.push_str(w);
    }
    format!(
        "DEFAULT install\nLABEL install\n  KERNEL /vmlinuz\n  APPEND {append} --\nTIMEOUT 5\nPROMPT 0\n"
    )
}

/// One word for GRUB's script parser, single-quoted.
pub fn grub_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// GRUB's configuration on the ISO (and in the EFI image): find the ISO
/// by its label and boot `/vmlinuz` with `/initrd`.
pub fn grub_cfg(words: &[&str], volume_id: &str) -> String {
    let mut linux = String::from("linux /vmlinuz");
    for w in words {
        linux.push(' ');
        linux.push_str(&grub_quote(w));
    }
    format!(
        "set default=0\nset timeout=5\n\nsearch --no-floppy --set=root --label {volume_id}\n\nmenuentry \"install\" {{\n    {linux} --\n    initrd /initrd\n}}\n"
    )
}

/// The configuration built into BOOTX64.EFI: find the ISO by its label
/// and read its grub.cfg. When the search fails the EFI image's own copy
/// (the prefix on the device GRUB was loaded from) is read instead.
pub fn grub_early_cfg(volume_id: &str) -> String {
    format!(
        "search --no-floppy --set=root --label {volume_id}\nset prefix=($root)/EFI/BOOT\nconfigfile $prefix/grub.cfg\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What GRUB's parser makes of one single-quoted word (the inverse of
    /// [`grub_quote`], per the GRUB manual's quoting rules).
    fn grub_unquote(s: &str) -> Option<String> {
        let mut out = String::new();
        let mut it = s.chars().peekable();
        let mut in_q = false;
        while let Some(c) = it.next() {
            match (in_q, c) {
                (false, '\'') | (true, '\'') => in_q = !in_q,
                (false, '\\') => out.push(it.next()?),
                (true, c) => out.push(c),
                (false, c) => out.push(c),
            }
        }
        (!in_q).then_some(out)
    }

    #[test]
    fn dib_layout_and_cmdline() {
        let w = cmdline_words("boot_method=vmedia  console=ttyS0").unwrap();
        assert_eq!(w, ["boot_method=vmedia", "console=ttyS0"]);
        let iso = isolinux_cfg(&w);
        assert!(iso.contains("KERNEL /vmlinuz\n"));
        assert!(iso.contains("APPEND initrd=/initrd boot_method=vmedia console=ttyS0 --\n"));
        let g = grub_cfg(&w, "VMEDIA_BOOT_ISO");
        assert!(g.contains("--label VMEDIA_BOOT_ISO\n"));
        assert!(g.contains("linux /vmlinuz 'boot_method=vmedia' 'console=ttyS0' --\n"));
        assert!(g.contains("initrd /initrd\n"));
    }

    #[test]
    fn refuses_control_characters_and_bad_labels() {
        for bad in ["a\nb", "a\tb", "é", "x\u{0}"] {
            let e = cmdline_words(bad).unwrap_err().to_string();
            assert!(e.contains("kernel command line"), "{e}");
        }
        assert!(cmdline_words(&"a".repeat(2001)).is_err());
        for bad in ["", "lower", "A-B", &"A".repeat(33)] {
            assert!(check_volume_id(bad).is_err(), "{bad:?} accepted");
        }
        check_volume_id("VMEDIA_BOOT_ISO").unwrap();
    }

    /// Mutation test: random command lines (printable ASCII, GRUB's
    /// special characters weighted up) either are refused or give a
    /// grub.cfg whose `linux` words read back as the input words, and
    /// which the host's `grub-script-check` (grub-common) accepts.
    #[test]
    fn mutated_cmdlines_round_trip_through_grub_quoting() {
        let mut rng = crate::test_rng::Rng(0x150);
        let alphabet: &[u8] = b"ab=/ '\"$;{}\\#&|<>()`*?~\n\tx";
        let mut cfgs = Vec::new();
        for _ in 0..400 {
            let n = rng.below(24);
            let s: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.below(3) == 0 {
                        alphabet[rng.below(alphabet.len())]
                    } else {
                        0x20 + rng.below(95) as u8
                    }
                })
                .collect();
            let s = String::from_utf8(s).unwrap();
            let Ok(words) = cmdline_words(&s) else {
                assert!(s.contains('\n') || s.contains('\t'), "{s:?} refused");
                continue;
            };
            for w in &words {
                assert_eq!(grub_unquote(&grub_quote(w)).as_deref(), Some(*w));
            }
            let cfg = grub_cfg(&words, "VMEDIA_BOOT_ISO");
            assert_eq!(cfg.matches("\n    linux ").count(), 1, "{cfg}");
            assert!(!isolinux_cfg(&words).contains("\n\n"));
            cfgs.push(cfg);
        }
        assert!(cfgs.len() > 200, "too few mutations accepted");
        let Ok(tool) = which("grub-script-check") else {
            eprintln!("grub-script-check not installed: syntax not checked by GRUB");
            return;
        };
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("dibr-iso-cfg.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, cfg) in cfgs.iter().enumerate() {
            let p = dir.join(format!("{i}.cfg"));
            std::fs::write(&p, cfg).unwrap();
            let o = std::process::Command::new(&tool).arg(&p).output().unwrap();
            assert!(
                o.status.success(),
                "grub-script-check refused:\n{cfg}\n{o:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        ["/usr/bin", "/bin", "/usr/sbin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }
}
