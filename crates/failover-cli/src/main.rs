//! `failover`: the llm-failover command line.

mod demo;

use clap::{Parser, Subcommand};

/// Resilient, cost-aware access to LLMs: Bedrock first, OpenAI as fallback.
#[derive(Debug, Parser)]
#[command(name = "failover", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the seed's five scenarios in one process, offline, and prints what happened.
    Demo,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAILOVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("failover: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
