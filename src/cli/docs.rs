//! `dibr man` and `dibr completions`: the manual pages and shell
//! completions, generated from the clap definitions so they never drift
//! from the options dibr really takes.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write dibr.1 and one page per subcommand (dibr-build.1, dibr-mkfs.1, …) into DIR instead of printing one page
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Print the page of this subcommand (e.g. build) instead of dibr(1)
    #[arg(value_name = "SUBCOMMAND", conflicts_with = "out_dir")]
    pub subcommand: Option<String>,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (e.g. `dibr completions bash > /etc/bash_completion.d/dibr`)
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// The full command tree as the man pages see it: built, so every
/// subcommand knows its display name (`dibr-build`), without the `help`
/// pseudo-subcommand.
pub fn command() -> clap::Command {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The visible subcommands, by name.
pub fn visible_subcommands(cmd: &clap::Command) -> Vec<&clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect()
}

/// The page of one command, with dibr's version as its source.
fn man(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .source(format!("dibr {}", env!("CARGO_PKG_VERSION")))
        .manual("dibr manual")
}

fn render(cmd: clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    man(cmd).render(w)
}

/// Render the page of `sub` (None: dibr itself) into `w`.
pub fn render_page(sub: Option<&str>, w: &mut dyn Write) -> Result<(), String> {
    let cmd = command();
    let page = match sub {
        None => cmd,
        Some(name) => {
            let names: Vec<&str> = visible_subcommands(&cmd)
                .iter()
                .map(|c| c.get_name())
                .collect();
            match visible_subcommands(&cmd)
                .into_iter()
                .find(|c| c.get_name() == name)
            {
                Some(c) => c.clone(),
                None => {
                    return Err(format!(
                        "no subcommand {name:?}; pages exist for: {}",
                        names.join(", ")
                    ))
                }
            }
        }
    };
    render(page, w).map_err(|e| format!("writing the man page: {e}"))
}

pub fn run_man(a: &ManArgs) -> Result<(), Box<dyn std::error::Error>> {
    match &a.out_dir {
        None => {
            let mut out = std::io::stdout().lock();
            render_page(a.subcommand.as_deref(), &mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("creating {}: {e}{}", dir.display(), user_man_hint(&e)))?;
            let cmd = command();
            let mut pages = vec![cmd.clone()];
            pages.extend(visible_subcommands(&cmd).into_iter().cloned());
            for page in pages {
                let path = man(page).generate_to(dir).map_err(|e| {
                    format!("writing into {}: {e}{}", dir.display(), user_man_hint(&e))
                })?;
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

/// A directory an ordinary user cannot write (the system's man tree): say
/// where a user's pages go instead.
fn user_man_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        "; as an ordinary user, write the pages under your home instead: \
         `dibr man -o ~/.local/share/man/man1` (man finds them there when \
         ~/.local/bin is on PATH; else set MANPATH=~/.local/share/man:)"
    } else {
        ""
    }
}

pub fn run_completions(a: &CompletionsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, "dibr", &mut out);
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand has a description, and every visible
    /// option or argument has help text: `--help`, the man pages and the
    /// completions all show it.
    #[test]
    fn every_subcommand_and_option_is_described() {
        let cmd = command();
        assert!(cmd.get_about().is_some(), "dibr has no about");
        let subs = visible_subcommands(&cmd);
        for want in ["mkfs", "build", "assemble", "man", "completions"] {
            assert!(
                subs.iter().any(|s| s.get_name() == want),
                "no subcommand {want}"
            );
        }
        let mut missing = Vec::new();
        for s in subs {
            if s.get_about().is_none() {
                missing.push(format!("dibr {}: no description", s.get_name()));
            }
            for a in s.get_arguments().filter(|a| !a.is_hide_set()) {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("dibr {} {id}: no help text", s.get_name()));
                }
            }
            assert!(
                s.get_subcommands().next().is_none(),
                "nested subcommands need their own check: dibr {}",
                s.get_name()
            );
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn pages_render() {
        let mut top = Vec::new();
        render_page(None, &mut top).unwrap();
        let top = String::from_utf8(top).unwrap();
        assert!(top.contains(".TH dibr 1"), "{top}");
        assert!(top.contains("dibr\\-build"), "{top}");
        let mut b = Vec::new();
        render_page(Some("build"), &mut b).unwrap();
        let b = String::from_utf8(b).unwrap();
        assert!(b.contains("image\\-size"), "{b}");
        assert!(render_page(Some("nope"), &mut Vec::new())
            .unwrap_err()
            .contains("build"));
    }
}
