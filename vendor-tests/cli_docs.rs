//! The command line documents itself: `dibr --help` and every visible
//! subcommand's `--help` carry a description, `dibr man` and
//! `dibr completions <shell>` produce output, and `man -l` renders every
//! generated page without a single groff warning.

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn dibr(args: &[&str]) -> String {
    let o = run_ok(Command::new(dibr_bin()).args(args));
    String::from_utf8(o.stdout).expect("utf-8 output")
}

/// The visible subcommands, as `dibr --help` lists them.
fn subcommands() -> Vec<String> {
    let help = dibr(&["--help"]);
    let list = help
        .split("\nCommands:\n")
        .nth(1)
        .expect("dibr --help lists its commands");
    list.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_subcommand_has_help_with_a_description() {
    let top = dibr(&["--help"]);
    assert!(top.starts_with("Rootless disk-image builder"), "{top}");
    let subs = subcommands();
    for want in ["mkfs", "assemble", "build", "man", "completions", "verify"] {
        assert!(subs.iter().any(|s| s == want), "{want} missing in {subs:?}");
    }
    for s in &subs {
        let h = dibr(&[s, "--help"]);
        let first = h.lines().next().unwrap_or("");
        assert!(
            !first.is_empty() && !first.starts_with("Usage:"),
            "dibr {s} --help has no description:\n{h}"
        );
        assert!(h.contains(&format!("Usage: dibr {s}")), "{h}");
        // Every option line in the short help has text after its name.
        let opts = h.split("\nOptions:\n").nth(1).unwrap_or("");
        for l in opts.lines().take_while(|l| l.starts_with("  ")) {
            let t = l.trim();
            if !(t.starts_with('-')) {
                continue; // continuation of a wrapped help text
            }
            let (name, text) = match t.find("  ") {
                Some(i) => (&t[..i], t[i..].trim()),
                None => (t, ""),
            };
            assert!(
                !text.is_empty(),
                "dibr {s}: option {name} has no help:\n{h}"
            );
        }
    }
}

#[test]
fn man_and_completions_produce_output() {
    let page = dibr(&["man"]);
    assert!(page.contains(".TH dibr 1"), "{}", head(&page, 400));
    let build = dibr(&["man", "build"]);
    assert!(build.contains(".TH dibr-build 1"), "{}", head(&build, 400));
    assert!(build.contains("image\\-size"), "{}", head(&build, 400));
    let bash = dibr(&["completions", "bash"]);
    assert!(bash.contains("complete -F _dibr"), "{}", head(&bash, 400));
    for sh in ["zsh", "fish"] {
        assert!(!dibr(&["completions", sh]).is_empty(), "{sh}: no output");
    }
    // The bash script parses, and completes the subcommands.
    if which("bash").is_some() {
        let dir = scratch("cli_docs");
        let f = dir.path().join("dibr.bash");
        fs::write(&f, &bash).unwrap();
        run_ok(Command::new("bash").arg("-n").arg(&f));
        let o = sh(&format!(
            "bash -c 'source {}; COMP_WORDS=(dibr bu); COMP_CWORD=1; _dibr dibr bu dibr; echo \"${{COMPREPLY[@]}}\"'",
            q(&f)
        ));
        let got = String::from_utf8_lossy(&o.stdout);
        assert!(got.split_whitespace().any(|w| w == "build"), "{got}");
    }
    // A wrong shell or page is refused with a message.
    let o = run(Command::new(dibr_bin()).args(["man", "nope"]));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("build"),
        "{}",
        out_text(&o)
    );
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = scratch("cli_docs_man");
    let listed = dibr(&["man", "-o", dir.path().to_str().unwrap()]);
    let mut pages: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    assert_eq!(pages.len(), listed.lines().count(), "{listed}");
    for s in subcommands() {
        let p = dir.path().join(format!("dibr-{s}.1"));
        assert!(p.is_file(), "no page {}: {listed}", p.display());
    }
    if !require("cli_docs: man -l", false, &["man", "groff"]) {
        return;
    }
    for p in &pages {
        let o = run(Command::new(tool("man"))
            .args(["--warnings", "-l"])
            .arg(p)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && err.trim().is_empty(),
            "man -l {} warns:\n{}",
            p.display(),
            out_text(&o)
        );
        // Not a terminal: grotty overstrikes bold text (X\bX); undo that.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&o.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    }
}
