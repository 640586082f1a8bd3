//! The command line: subcommands and their dispatch.

pub mod elements;
pub mod mkfs;
pub mod sandbox_cmd;
pub mod size;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "dibr",
    version,
    about = "Rootless disk-image builder, compatible with diskimage-builder elements"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make an ext4 image from a tarball or directory, in userspace, as an ordinary user
    Mkfs(mkfs::MkfsArgs),
    /// Expand element dependencies like DIB's element-info (--env for IMAGE_ELEMENT*)
    Elements(elements::ElementsArgs),
    /// Check an ext4 image made by dibr with dibr's own consistency checker (read-only)
    Verify {
        /// The image file
        image: std::path::PathBuf,
    },
    /// Internal: the sandbox helper (run by dibr itself)
    #[command(name = "__sandbox", hide = true)]
    Sandbox(sandbox_cmd::SandboxArgs),
}

/// Run a parsed command line; errors are printed by main.
pub fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Mkfs(a) => mkfs::run(&a)?,
        Command::Elements(a) => elements::run(&a)?,
        Command::Sandbox(a) => std::process::exit(sandbox_cmd::run(&a)),
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
