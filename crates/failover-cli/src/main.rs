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
    /// Runs the seed's five scenarios through the real Bedrock and OpenAI clients against
    /// local stand-in servers, prints what happened, and fails if it is not what the seed
    /// expects.
    ///
    /// The cache is Redis when REDIS_URL is set (else memory), the usage ledger DynamoDB
    /// when DYNAMODB_ENDPOINT is set (else memory). No cloud account is needed: the
    /// providers' servers are stand-ins on 127.0.0.1.
    Demo(demo::DemoArgs),
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
        Command::Demo(args) => demo::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("failover: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
