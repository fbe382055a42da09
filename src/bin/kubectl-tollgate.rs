//! `kubectl tollgate`: the kubectl plugin form of `tollgate explain`, `tollgate list` and
//! `tollgate check`. Put this binary on PATH as `kubectl-tollgate` and kubectl finds it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What tollgate recorded about gated Rollouts, from the gates' status and Events; and a gate
/// file checked before it merges.
#[derive(Parser)]
#[command(name = "kubectl tollgate", version, about)]
struct Plugin {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Inspect(tollgate::explain::Inspect),
    #[command(flatten)]
    Check(tollgate::check::Command),
}

fn main() -> ExitCode {
    const PROGRAM: &str = "kubectl tollgate";
    match Plugin::parse().command {
        Command::Inspect(command) => tollgate::explain::main(command, PROGRAM),
        Command::Check(command) => tollgate::check::main(command, PROGRAM),
    }
}
