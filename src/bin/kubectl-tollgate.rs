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
    let plugin = Plugin::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubectl tollgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tollgate::explain::run(plugin.command)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubectl tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}
