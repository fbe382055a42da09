//! `kubectl tollgate`: the kubectl plugin form of `tollgate explain` and `tollgate list`. Put
//! this binary on PATH as `kubectl-tollgate` and kubectl finds it.

use std::process::ExitCode;

use clap::Parser;

/// What tollgate recorded about gated Rollouts, from the gates' status and Events.
#[derive(Parser)]
#[command(name = "kubectl tollgate", version, about)]
struct Plugin {
    #[command(subcommand)]
    command: tollgate::explain::Inspect,
}

fn main() -> ExitCode {
    tollgate::explain::main(Plugin::parse().command, "kubectl tollgate")
}
