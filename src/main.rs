use clap::Parser;

fn main() {
    // Installed under diskimage-builder's names (symlinks), behave as those.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli =
        dibr::cli::dib_names::parse(&args).unwrap_or_else(|| dibr::cli::Cli::parse_from(args));
    // The sandbox helper must stay single-threaded (unshare(CLONE_NEWUSER)),
    // so it runs before the ^C handler starts its thread.
    if let dibr::cli::Command::Sandbox(a) = &cli.command {
        std::process::exit(dibr::cli::sandbox_cmd::run(a));
    }
    // Output sets are named by a child of ours that outlives a kill.
    // The sandbox's settings (helper, temporary directory, preflight's
    // variables) are read here once and installed for the whole process.
    let sandbox = dibr::settings::sandbox();
    dibr::output::set::use_committer(sandbox.helper.clone());
    dibr::sandbox::configure(sandbox);
    // Interrupted builds leave no temporary files behind, and kill sandboxes.
    // Outputs being named are named first: the message says which.
    let _ = ctrlc::set_handler(|| {
        dibr::build::note_interrupt();
        let written = dibr::output::set::interrupt();
        dibr::build::interrupt_cleanup();
        let vm = dibr::cli::vm::interrupt_cleanup();
        dibr::output::atomic::cleanup_pending();
        if vm {
            eprintln!("dibr: interrupted; stopped qemu and removed the seed");
        } else if written.is_empty() {
            eprintln!("dibr: interrupted; nothing was written");
        } else {
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "dibr: interrupted after the outputs were complete: {}",
                names.join(", ")
            );
        }
        std::process::exit(130);
    });
    let result = dibr::cli::run(cli);
    if dibr::build::interrupted() {
        // The handler is cleaning up and will exit(130); do not race it.
        std::thread::sleep(std::time::Duration::from_secs(60));
        std::process::exit(130);
    }
    if let Err(e) = result {
        // Every error's Display carries its causes, so print it once.
        eprintln!("dibr: error: {e}");
        std::process::exit(1);
    }
}
