//! The command line: subcommands and their dispatch.

pub mod assemble;
pub mod build;
pub mod dib_names;
pub mod docs;
pub mod elements;
pub mod inspect;
pub mod logfile;
pub mod mkfs;
pub mod mkfs_options;
pub mod ramdisk;
pub mod ramdisk_iso;
pub mod root_fs;
pub mod sandbox_cmd;
pub mod size;
pub mod vm;
pub mod vm_dir;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "dibr",
    version,
    propagate_version = true,
    about = "Rootless disk-image builder, compatible with diskimage-builder elements",
    long_about = "Rootless disk-image builder, compatible with diskimage-builder elements.\n\n\
dibr builds bootable cloud and bare-metal images from diskimage-builder elements as an \
ordinary user: hooks run in a user namespace, the tree leaves it as a tarball, and dibr \
writes ext4, FAT, the partition table, the boot loaders and qcow2/vhd/vmdk itself — no sudo, \
loop devices or mounts. Everyday use: `dibr build -o debian.qcow2 debian vm`, then \
`dibr vm debian.qcow2` to boot it and log in over ssh.",
    after_help = "Run `dibr <COMMAND> --help` for a command's options. \
`dibr man -o DIR` writes the manual pages; README.md and docs/ are the user guide.",
    after_long_help = "ENVIRONMENT (the main ones; see each command's help and docs/moving-from-dib.md):\n  \
SOURCE_DATE_EPOCH  fixed timestamps and UUIDs: two runs give byte-identical outputs\n  \
ELEMENTS_PATH      colon-separated directories searched for elements before dibr's own\n  \
DIB_*              diskimage-builder's variables, read as disk-image-create reads them\n  \
DIBR_USERNS=single force the single-uid sandbox (no subordinate ids)\n\n\
Run `dibr <COMMAND> --help` for a command's options. `dibr man -o DIR` writes the manual \
pages; README.md and docs/ are the user guide."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make an ext4 image from a tarball or directory, in userspace, as an ordinary user
    Mkfs(mkfs::MkfsArgs),
    /// Assemble a root tarball or directory into a partitioned disk image (raw, qcow2, vhd, vmdk)
    Assemble(assemble::AssembleArgs),
    /// Build an image from diskimage-builder elements, rootless (disk-image-create)
    Build(build::BuildArgs),
    /// Build a ramdisk from elements: NAME.kernel + NAME.initramfs (ramdisk-image-create)
    Ramdisk(ramdisk::RamdiskArgs),
    /// Open a shell (or run a command) in a tree kept by `dibr build --keep-on-error`
    Shell {
        /// The kept target tree (…/dibr_build.*/mnt)
        #[arg(value_name = "TREE")]
        tree: std::path::PathBuf,
        /// Command (and its arguments) to run instead of /bin/sh
        #[arg(value_name = "COMMAND", trailing_var_arg = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Remove a kept work directory, including files owned by subordinate ids
    RmWorkdir {
        /// The kept work directory (…/dibr_build.*)
        #[arg(value_name = "DIR", required_unless_present = "stale")]
        dir: Option<std::path::PathBuf>,
        /// Instead: remove the work directories of your builds that died
        /// (killed, crashed), as every `dibr build` does when it starts
        #[arg(long, conflicts_with = "dir")]
        stale: bool,
    },
    /// Internal: capture a tree as a tar stream (run inside the build namespace)
    #[command(name = "__capture", hide = true)]
    Capture {
        tree: std::path::PathBuf,
        output: std::path::PathBuf,
        /// Read the tree from this tar stream (`-`: stdin) made by another
        /// archiver, instead of walking TREE (the sandbox's fakeroot mode)
        #[arg(long, value_name = "TAR")]
        from_tar: Option<std::path::PathBuf>,
        /// With --from-tar: the building user's UID:GID, shown as 0:0
        #[arg(long, value_name = "UID:GID")]
        real_owner: Option<String>,
    },
    /// Internal: name a finished output set (renames listed in a journal),
    /// in its own process group so that killing the caller cannot stop it
    #[command(name = "__commit-outputs", hide = true)]
    CommitOutputs {
        /// The journal (`.dibr-commit-PID` beside the outputs)
        journal: std::path::PathBuf,
    },
    /// Expand element dependencies like DIB's element-info (--env for IMAGE_ELEMENT*)
    Elements(elements::ElementsArgs),
    /// Check an ext4 image made by dibr with dibr's own consistency checker (read-only)
    Verify {
        /// The ext4 image file (a whole filesystem, not a partitioned disk)
        #[arg(value_name = "IMAGE")]
        image: std::path::PathBuf,
    },
    /// Extract the kernel and initrd an image boots (DIB's disk-image-get-kernel): PREFIX.vmlinuz, PREFIX.initrd
    GetKernel(inspect::GetKernelArgs),
    /// Check an image (raw or qcow2) against OpenStack's image requirements, without mounting it
    Check(inspect::CheckArgs),
    /// Boot an image under qemu with your ssh key (NoCloud seed), ssh forwarded, console on the terminal
    Vm(vm::VmArgs),
    /// Write the manual pages (dibr.1, dibr-build.1, …), generated from these definitions
    Man(docs::ManArgs),
    /// Write a shell completion script (bash, zsh, fish, elvish, powershell) to standard output
    Completions(docs::CompletionsArgs),
    /// Internal: the sandbox helper (run by dibr itself)
    #[command(name = "__sandbox", hide = true)]
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Internal: package-installs and pkg-map tables for in-image hooks
    /// (run by the package-installs element's extra-data.d hook)
    #[command(name = "__element-tables", hide = true)]
    ElementTables {
        /// Output directory (in the target: /tmp/dibr-tables)
        out: std::path::PathBuf,
    },
    /// Internal: unpack a root filesystem tarball, OCI image archive or
    /// docker save archive into a directory (run by the rootfs-image
    /// element's root.d hook, inside the build namespace)
    #[command(name = "__unpack-rootfs", hide = true)]
    UnpackRootfs {
        /// The archive
        src: std::path::PathBuf,
        /// The target directory (TARGET_ROOT)
        dest: std::path::PathBuf,
        /// Architecture to pick from a multi-platform image (DIB's ARCH)
        #[arg(long, default_value = "amd64")]
        arch: String,
        /// Scratch directory for image archives (default: DEST's parent)
        #[arg(long)]
        scratch: Option<std::path::PathBuf>,
    },
}

/// Run a parsed command line; errors are printed by main.
pub fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Mkfs(a) => mkfs::run(&a)?,
        Command::Build(a) => build::run(&a)?,
        Command::Ramdisk(a) => ramdisk::run(&a)?,
        Command::Assemble(a) => assemble::run(&a)?,
        Command::Shell { tree, command } => {
            let argv = if command.is_empty() {
                vec!["/bin/sh".into()]
            } else {
                command
            };
            let cfg = crate::sandbox::SandboxConfig {
                root: tree,
                binds: Vec::new(),
                env: vec![
                    (
                        "PATH".into(),
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                    ),
                    ("HOME".into(), "/root".into()),
                    (
                        "TERM".into(),
                        std::env::var("TERM").unwrap_or_else(|_| "dumb".into()),
                    ),
                ],
                cwd: "/".into(),
                chroot: true,
                tree_dev: false,
            };
            let st = crate::sandbox::run(&cfg, &argv)?;
            std::process::exit(st.code().unwrap_or(1));
        }
        Command::RmWorkdir { dir, stale } => match dir {
            Some(dir) if !stale => crate::sandbox::remove_tree(&dir)?,
            _ => {
                if crate::build::reclaim_stale() == 0 {
                    eprintln!("dibr: no work directory of a dead build found");
                }
            }
        },
        Command::Capture {
            tree,
            output,
            from_tar,
            real_owner,
        } => capture_cmd(&tree, &output, from_tar.as_deref(), real_owner.as_deref())?,
        Command::Elements(a) => elements::run(&a)?,
        Command::GetKernel(a) => inspect::get_kernel(&a)?,
        Command::Check(a) if a.glance => inspect::glance(&a)?,
        Command::Check(a) => {
            if inspect::check(&a)? {
                std::process::exit(1);
            }
        }
        Command::Vm(a) => std::process::exit(vm::run(&a)?),
        Command::Man(a) => docs::run_man(&a)?,
        Command::Completions(a) => docs::run_completions(&a)?,
        Command::Sandbox(a) => std::process::exit(sandbox_cmd::run(&a)),
        Command::UnpackRootfs {
            src,
            dest,
            arch,
            scratch,
        } => {
            let scratch = scratch.unwrap_or_else(|| {
                dest.parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_else(std::env::temp_dir)
            });
            let opts = crate::rootfs::Options {
                owners: rustix::process::geteuid().is_root(),
                arch,
                scratch,
            };
            let t = std::time::Instant::now();
            let r = crate::rootfs::unpack(&src, &dest, &opts)?;
            eprintln!(
                "dibr: unpacked {} into {}: {r} in {:.1} s",
                src.display(),
                dest.display(),
                t.elapsed().as_secs_f64()
            );
        }
        Command::ElementTables { out } => {
            use crate::elements::tables;
            let yaml = std::env::var("IMAGE_ELEMENT_YAML")
                .map_err(|_| "IMAGE_ELEMENT_YAML is not set: run this from an element hook")?;
            let elements = tables::elements_from_yaml(&yaml)?;
            let s = tables::write_tables(&elements, &crate::settings::process_env(), &out)?;
            eprintln!(
                "dibr: package-installs: {} packages, {} pkg-maps -> {}",
                s.packages,
                s.pkg_maps,
                out.display()
            );
        }
        Command::CommitOutputs { journal } => crate::output::set::apply(&journal)?,
        Command::Verify { image } => {
            let f = std::fs::File::open(&image)
                .map_err(|e| format!("opening {}: {e}", image.display()))?;
            let r = crate::ext4::verify::verify_file(&f)
                .map_err(|e| format!("{}: {e}", image.display()))?;
            println!("{}: consistent ({r:?})", image.display());
        }
    }
    Ok(())
}

/// `dibr __capture`: the tree (or a tar stream of it) into an archive.
fn capture_cmd(
    tree: &std::path::Path,
    output: &std::path::Path,
    from_tar: Option<&std::path::Path>,
    real_owner: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let t = crate::capture::OutputType::from_path(output).ok_or_else(|| {
        format!(
            "{}: output must end in .tar, .tgz or .tar.zst",
            output.display()
        )
    })?;
    // Lenient, as it always was: the build that runs this inside its
    // namespace has validated the value already.
    let epoch = crate::settings::SourceDateEpoch::secs_from_env()
        .ok()
        .flatten();
    let opts = crate::capture::CaptureOptions {
        source_date_epoch: epoch,
        synthesize_dev: true,
        exclude: vec!["proc/*".into(), "sys/*".into(), "tmp/in_target.d".into()],
        no_fsync: !crate::settings::ext4_io().fsync,
    };
    let owner = match real_owner {
        None => None,
        Some(v) => {
            let (u, g) = v
                .split_once(':')
                .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                .ok_or_else(|| format!("--real-owner {v:?}: expected UID:GID"))?;
            Some((u, g))
        }
    };
    let stats = match from_tar {
        None => crate::capture::write_output(tree, output, t, &opts)?,
        Some(input) => crate::capture::write_output_with(output, t, opts.no_fsync, &mut |w| {
            crate::capture::write_tar_from_stream(input, tree, w, &opts, owner)
        })?,
    };
    eprintln!(
        "dibr: captured {} entries into {}",
        stats.entries,
        crate::output::set::final_name(output).display()
    );
    Ok(())
}
