use clap::Parser;

fn main() {
    // Interrupted builds leave no temporary files behind.
    let _ = ctrlc::set_handler(|| {
        dibr::output::atomic::cleanup_pending();
        eprintln!("dibr: interrupted; nothing was written");
        std::process::exit(130);
    });
    let cli = dibr::cli::Cli::parse();
    if let Err(e) = dibr::cli::run(cli) {
        // Every error's Display carries its causes, so print it once.
        eprintln!("dibr: error: {e}");
        std::process::exit(1);
    }
}
