use clap::Parser;

fn main() {
    let cli = dibr::cli::Cli::parse();
    // The sandbox helper must stay single-threaded (unshare(CLONE_NEWUSER)),
    // so it runs before the ^C handler starts its thread.
    if let dibr::cli::Command::Sandbox(a) = &cli.command {
        std::process::exit(dibr::cli::sandbox_cmd::run(a));
    }
    // Interrupted builds leave no temporary files behind, and kill sandboxes.
    let _ = ctrlc::set_handler(|| {
        dibr::build::interrupt_cleanup();
        dibr::output::atomic::cleanup_pending();
        eprintln!("dibr: interrupted; nothing was written");
        std::process::exit(130);
    });
    if let Err(e) = dibr::cli::run(cli) {
        // Every error's Display carries its causes, so print it once.
        eprintln!("dibr: error: {e}");
        std::process::exit(1);
    }
}
