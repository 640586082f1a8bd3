//! `dibr __sandbox …`: the hidden helper that enters the sandbox's
//! namespaces (see `sandbox::enter`). Not for humans; its arguments are
//! written by `sandbox::run`.

use std::ffi::OsString;

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// Run the helper; returns its exit code. Must be called before any
/// thread is started (main calls it before installing the ^C handler).
pub fn run(a: &SandboxArgs) -> i32 {
    crate::sandbox::enter::main(&a.args)
}
