//! dibr installed under diskimage-builder's command names (symlinks):
//! `disk-image-create`, `ramdisk-image-create`, `element-info` and
//! `disk-image-get-kernel` parse their own options, and `--help` shows
//! the name they were called by, as DIB's `show_options` does
//! (`Usage: ${SCRIPTNAME} [OPTION]... [ELEMENT]...`,
//! `diskimage_builder/lib/disk-image-create`).

use std::ffi::OsString;

use clap::{Args, FromArgMatches};

use super::{build::BuildArgs, elements::ElementsArgs, inspect::GetKernelArgs};
use super::{ramdisk::RamdiskArgs, Cli, Command};

/// The command line as dibr would parse it, when `argv[0]` is one of
/// DIB's names; `None` for any other name (plain `dibr …`).
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let called = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let command = match called.as_str() {
        // DIB's callers (nodepool's build log, the Ironic builder) read
        // every hook's output: live, as disk-image-create prints it.
        "disk-image-create" => {
            let mut a = parse_as::<BuildArgs>(
                "disk-image-create",
                "Build an image from diskimage-builder elements, rootless (dibr build)",
                "disk-image-create [OPTION]... [ELEMENT]...",
                args,
            );
            a.verbose = true;
            Command::Build(a)
        }
        "ramdisk-image-create" => {
            let mut a = parse_as::<RamdiskArgs>(
                "ramdisk-image-create",
                "Build a ramdisk from elements: NAME.kernel + NAME.initramfs (dibr ramdisk)",
                "ramdisk-image-create [OPTION]... [ELEMENT]...",
                args,
            );
            a.build.verbose = true;
            Command::Ramdisk(a)
        }
        // element-info expands exactly what it is given (no implicit base).
        "element-info" => {
            let mut a = parse_as::<ElementsArgs>(
                "element-info",
                "Expand element dependencies (dibr elements)",
                "element-info [--env] ELEMENT...",
                args,
            );
            a.skip_base = true;
            Command::Elements(a)
        }
        "disk-image-get-kernel" => Command::GetKernel(parse_as::<GetKernelArgs>(
            "disk-image-get-kernel",
            "Extract the kernel and initrd an image boots: PREFIX.vmlinuz, PREFIX.initrd (dibr get-kernel)",
            "disk-image-get-kernel [-o PREFIX] IMAGE",
            args,
        )),
        _ => return None,
    };
    Some(Cli { command })
}

/// Parse `args` as one subcommand's arguments under the name `name`;
/// usage errors and `--help` exit as clap does.
fn parse_as<T: Args + FromArgMatches>(
    name: &'static str,
    about: &'static str,
    usage: &'static str,
    args: &[OsString],
) -> T {
    let cmd = T::augment_args(
        clap::Command::new(name)
            .about(about)
            .version(env!("CARGO_PKG_VERSION"))
            .override_usage(usage),
    );
    let m = cmd.get_matches_from(args);
    T::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn dib_names_parse_their_own_options() {
        let c = parse(&os(&[
            "/usr/bin/disk-image-create",
            "-o",
            "x",
            "--mkfs-options",
            "-i 4096",
            "vm",
        ]))
        .unwrap();
        match c.command {
            Command::Build(a) => {
                assert_eq!(a.elements, ["vm"]);
                assert_eq!(a.root_fs.mkfs_options.as_deref(), Some("-i 4096"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&os(&["element-info", "vm"])).unwrap().command {
            Command::Elements(a) => assert!(a.skip_base),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&os(&["ramdisk-image-create", "ramdisk"]))
                .unwrap()
                .command,
            Command::Ramdisk(_)
        ));
        assert!(matches!(
            parse(&os(&["disk-image-get-kernel", "a.qcow2"]))
                .unwrap()
                .command,
            Command::GetKernel(_)
        ));
        assert!(parse(&os(&["dibr", "build", "vm"])).is_none());
    }

    #[test]
    fn help_names_the_command_it_was_called_as() {
        let help = BuildArgs::augment_args(
            clap::Command::new("disk-image-create")
                .override_usage("disk-image-create [OPTION]... [ELEMENT]..."),
        )
        .render_help()
        .to_string();
        assert!(
            help.contains("Usage: disk-image-create [OPTION]... [ELEMENT]..."),
            "{help}"
        );
    }
}
