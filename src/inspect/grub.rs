//! Which kernel GRUB boots by default: a small reader for grub.cfg (as
//! grub-mkconfig, DIB's bootloader element and dibr write it) and for
//! BootLoaderSpec entries (`blscfg`, Fedora/RHEL's /boot/loader/entries).
//!
//! Not a GRUB script interpreter: it tracks `{ … }` blocks, reads
//! `menuentry`/`submenu` titles and ids, their `linux*`/`initrd*` lines,
//! and `set default=…` outside menu entries when the value is literal (the
//! `${next_entry}` branch of grub-mkconfig's header is skipped, so its
//! `else` branch's `set default="0"` wins, as at a normal boot).

use super::limits::{bytes, GRUB_DEPTH, MAX_LINE};
use crate::boot::collect::version_cmp;

#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    /// Blocks nested deeper than any generated config does: read
    /// recursively they would overflow the stack.
    #[error("line {line}: `{{` blocks nested more than {GRUB_DEPTH} deep")]
    TooDeep { line: usize },
    /// Split into words, a line of a few MiB would take a hundred times
    /// its size in memory; generated lines stay far below the limit.
    #[error("line {line}: {} long, more than the {} limit for one line", bytes(*len as u64), bytes(MAX_LINE as u64))]
    LineTooLong { line: usize, len: usize },
    #[error("{entry}: line {line}: {} long, more than the {} limit for one line", bytes(*len as u64), bytes(MAX_LINE as u64))]
    BlsLineTooLong {
        entry: String,
        line: usize,
        len: usize,
    },
}

/// The line's words, refused when the line passes [`MAX_LINE`].
fn line_words(line: &str, number: usize) -> Result<Vec<String>, GrubError> {
    if line.len() > MAX_LINE {
        return Err(GrubError::LineTooLong {
            line: number,
            len: line.len(),
        });
    }
    Ok(words(line))
}

/// The boot entry GRUB would start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    pub title: String,
    /// The kernel path as GRUB sees it (relative to GRUB's root device).
    pub kernel: String,
    pub cmdline: String,
    /// GRUB loads several initrds one after the other (e.g. microcode +
    /// initramfs): the kernel sees their concatenation.
    pub initrds: Vec<String>,
}

#[derive(Debug)]
enum Item {
    Entry {
        title: String,
        id: Option<String>,
        entry: Option<BootEntry>,
    },
    Submenu {
        title: String,
        id: Option<String>,
        items: Vec<Item>,
    },
}

/// Splits a line into words with GRUB's quoting (single quotes literal,
/// double quotes and backslash escapes).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                has = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        d => cur.push(d),
                    }
                }
            }
            '\\' => {
                if let Some(e) = chars.next() {
                    cur.push(e);
                    has = true;
                }
            }
            '#' if !has && cur.is_empty() => break,
            c if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Strips a GRUB device prefix: `(hd0,gpt1)/boot/x` or `($root)/x` → `/x`.
pub fn strip_device(p: &str) -> String {
    if p.starts_with('(') {
        if let Some(i) = p.find(')') {
            return p[i + 1..].to_string();
        }
    }
    p.to_string()
}

struct Parser<'a> {
    lines: std::str::Lines<'a>,
    /// The number of the line last read (1-based), for errors.
    line: usize,
    default: Option<String>,
}

fn title_and_id(w: &[String]) -> (String, Option<String>) {
    let title = w.get(1).cloned().unwrap_or_default();
    let id = w
        .iter()
        .position(|x| x == "--id" || x == "$menuentry_id_option")
        .and_then(|i| w.get(i + 1).cloned());
    (title, id)
}

impl Parser<'_> {
    /// Reads items until the closing brace of the current block (or EOF);
    /// `depth` counts the blocks open around it.
    fn block(
        &mut self,
        in_entry: bool,
        entry: &mut BootEntry,
        depth: usize,
    ) -> Result<Vec<Item>, GrubError> {
        let mut items = Vec::new();
        let mut skip_if = 0usize; // inside `if [ "${next_entry}" ]`
        while let Some(line) = self.lines.next() {
            self.line += 1;
            let w = line_words(line, self.line)?;
            let Some(first) = w.first() else { continue };
            let opens = w.last().is_some_and(|l| l == "{");
            if opens && depth >= GRUB_DEPTH {
                return Err(GrubError::TooDeep { line: self.line });
            }
            match first.as_str() {
                "}" => return Ok(items),
                "menuentry" if opens => {
                    let (title, id) = title_and_id(&w);
                    let mut e = BootEntry {
                        title: title.clone(),
                        kernel: String::new(),
                        cmdline: String::new(),
                        initrds: Vec::new(),
                    };
                    self.block(true, &mut e, depth + 1)?;
                    let entry = (!e.kernel.is_empty()).then_some(e);
                    items.push(Item::Entry { title, id, entry });
                }
                "submenu" if opens => {
                    let (title, id) = title_and_id(&w);
                    let mut dummy = entry.clone();
                    let sub = self.block(false, &mut dummy, depth + 1)?;
                    items.push(Item::Submenu {
                        title,
                        id,
                        items: sub,
                    });
                }
                _ if opens => {
                    // function … { … } and other blocks: nothing to boot.
                    let mut dummy = entry.clone();
                    self.block(in_entry, &mut dummy, depth + 1)?;
                }
                "linux" | "linux16" | "linuxefi" | "kernel" if in_entry => {
                    if let Some(k) = w.get(1) {
                        entry.kernel = strip_device(k);
                        entry.cmdline = w[2..].join(" ");
                    }
                }
                "initrd" | "initrd16" | "initrdefi" if in_entry => {
                    entry.initrds = w[1..].iter().map(|p| strip_device(p)).collect();
                }
                "if" if !in_entry && line.contains("next_entry") => skip_if += 1,
                "else" | "elif" | "fi" if skip_if > 0 => skip_if -= 1,
                "set" if !in_entry && skip_if == 0 => {
                    if let Some(v) = w.get(1).and_then(|s| s.strip_prefix("default=")) {
                        if !v.contains('$') {
                            self.default = Some(v.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(items)
    }
}

fn first_entry(items: &[Item]) -> Option<&BootEntry> {
    items.iter().find_map(|i| match i {
        Item::Entry { entry, .. } => entry.as_ref(),
        Item::Submenu { items, .. } => first_entry(items),
    })
}

fn select<'a>(items: &'a [Item], default: &str) -> Option<&'a BootEntry> {
    let (head, rest) = match default.split_once('>') {
        Some((h, r)) => (h, Some(r)),
        None => (default, None),
    };
    let item = if let Ok(n) = head.trim().parse::<usize>() {
        items.get(n)
    } else {
        items.iter().find(|i| match i {
            Item::Entry { title, id, .. } | Item::Submenu { title, id, .. } => {
                title == head || id.as_deref() == Some(head)
            }
        })
    }?;
    match item {
        Item::Entry { entry, .. } => entry.as_ref(),
        Item::Submenu { items, .. } => match rest {
            Some(r) => select(items, r),
            None => first_entry(items),
        },
    }
}

/// The default entry of a grub.cfg (with `grubenv`'s `saved_entry` for
/// `set default="${saved_entry}"`-style configs when given), falling back
/// to the first entry when the default cannot be resolved.
pub fn default_entry(cfg: &str, grubenv: Option<&str>) -> Result<Option<BootEntry>, GrubError> {
    let mut p = Parser {
        lines: cfg.lines(),
        line: 0,
        default: None,
    };
    let mut dummy = BootEntry {
        title: String::new(),
        kernel: String::new(),
        cmdline: String::new(),
        initrds: Vec::new(),
    };
    let items = p.block(false, &mut dummy, 0)?;
    let default = match p.default.as_deref() {
        Some("saved") => grubenv.and_then(|e| env_value(e, "saved_entry")),
        d => d.map(str::to_string),
    };
    Ok(default
        .and_then(|d| select(&items, &d).cloned())
        .or_else(|| first_entry(&items).cloned()))
}

/// A `key=value` from grubenv.
pub fn env_value(env: &str, key: &str) -> Option<String> {
    env.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// Whether the config defers to BootLoaderSpec entries.
pub fn uses_bls(cfg: &str) -> bool {
    cfg.lines()
        .any(|l| l.split_whitespace().next() == Some("blscfg"))
}

/// The newest BLS entry (blscfg sorts by version, newest first), given
/// (file name, contents); `$var`s in `options` come from grubenv.
/// Its lines are refused past [`MAX_LINE`], as grub.cfg's.
pub fn bls_default(
    entries: &[(String, String)],
    grubenv: Option<&str>,
) -> Result<Option<BootEntry>, GrubError> {
    let Some((name, text)) = entries
        .iter()
        .filter(|(n, _)| n.ends_with(".conf"))
        .max_by(|a, b| version_cmp(&a.0, &b.0))
    else {
        return Ok(None);
    };
    let mut e = BootEntry {
        title: name.trim_end_matches(".conf").to_string(),
        kernel: String::new(),
        cmdline: String::new(),
        initrds: Vec::new(),
    };
    for (i, l) in text.lines().enumerate() {
        if l.len() > MAX_LINE {
            return Err(GrubError::BlsLineTooLong {
                entry: name.clone(),
                line: i + 1,
                len: l.len(),
            });
        }
        let l = l.trim();
        let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        let v = v.trim();
        match k {
            "title" => e.title = v.to_string(),
            "linux" => e.kernel = v.to_string(),
            "initrd" => e.initrds.extend(v.split_whitespace().map(str::to_string)),
            "options" => {
                let opts: Vec<String> = v
                    .split_whitespace()
                    .map(|o| match o.strip_prefix('$') {
                        Some(var) => grubenv
                            .and_then(|g| env_value(g, var))
                            .unwrap_or_else(|| o.to_string()),
                        None => o.to_string(),
                    })
                    .collect();
                e.cmdline = opts.join(" ");
            }
            _ => {}
        }
    }
    Ok((!e.kernel.is_empty()).then_some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = r#"
function load_video {
  if [ x$feature_all_video_module = xy ]; then
    insmod all_video
  fi
}
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
else
   set default="1>1"
fi
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-x' {
	load_video
	linux	/boot/vmlinuz-6.1.0-2 root=UUID=x ro console=ttyS0 # comment
	initrd	/boot/initrd.img-6.1.0-2
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-x' {
	menuentry 'Debian, with Linux 6.1.0-2' {
		linux	/boot/vmlinuz-6.1.0-2 root=UUID=x ro
	}
	menuentry 'Debian, with Linux 6.1.0-1' {
		linux	(hd0,gpt1)/boot/vmlinuz-6.1.0-1 root=UUID=x ro quiet
		initrd	/boot/ucode.img /boot/initrd.img-6.1.0-1
	}
}
"#;

    #[test]
    fn default_into_a_submenu() {
        let e = default_entry(DEBIAN, None).unwrap().unwrap();
        assert_eq!(e.kernel, "/boot/vmlinuz-6.1.0-1");
        assert_eq!(e.cmdline, "root=UUID=x ro quiet");
        assert_eq!(
            e.initrds,
            vec!["/boot/ucode.img", "/boot/initrd.img-6.1.0-1"]
        );
    }

    #[test]
    fn first_entry_without_default() {
        let cfg = DEBIAN.replace("set default=\"1>1\"", "");
        let e = default_entry(&cfg, None).unwrap().unwrap();
        assert_eq!(e.kernel, "/boot/vmlinuz-6.1.0-2");
        assert_eq!(e.cmdline, "root=UUID=x ro console=ttyS0");
        let by_id = DEBIAN.replace("1>1", "gnulinux-advanced-x");
        assert_eq!(
            default_entry(&by_id, None).unwrap().unwrap().kernel,
            "/boot/vmlinuz-6.1.0-2"
        );
    }

    #[test]
    fn bls_newest_with_kernelopts() {
        let es = vec![
            (
                "abc-5.14.0-70.el9.x86_64.conf".to_string(),
                "title A\nlinux /vmlinuz-5.14.0-70\ninitrd /initramfs-5.14.0-70.img\noptions $kernelopts".to_string(),
            ),
            (
                "abc-5.14.0-162.el9.x86_64.conf".to_string(),
                "title B\nlinux /vmlinuz-5.14.0-162\noptions root=x $kernelopts".to_string(),
            ),
        ];
        let e = bls_default(&es, Some("kernelopts=ro console=ttyS0\n"))
            .unwrap()
            .unwrap();
        assert_eq!(e.kernel, "/vmlinuz-5.14.0-162");
        assert_eq!(e.cmdline, "root=x ro console=ttyS0");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = |n: usize| "if true {\n".repeat(n) + &"}\n".repeat(n);
        let cfg = format!("{}{DEBIAN}", deep(GRUB_DEPTH));
        assert!(default_entry(&cfg, None).unwrap().is_some());
        let cfg = format!("{}{DEBIAN}", deep(20_000));
        match default_entry(&cfg, None) {
            Err(GrubError::TooDeep { line }) => assert_eq!(line, GRUB_DEPTH + 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_lines_are_refused() {
        let long = format!("menuentry 'x' {{\n linux /v{}\n}}\n", " a".repeat(MAX_LINE));
        assert!(matches!(
            default_entry(&long, None),
            Err(GrubError::LineTooLong { line: 2, .. })
        ));
        let es = vec![(
            "a.conf".to_string(),
            format!("linux /v\ninitrd{}", " /i".repeat(MAX_LINE)),
        )];
        assert!(matches!(
            bls_default(&es, None),
            Err(GrubError::BlsLineTooLong { line: 2, .. })
        ));
    }
}
