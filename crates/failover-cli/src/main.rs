//! `failover`: the llm-failover command line.

mod demo;
mod secrets;
mod serve;
mod telemetry;

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
    /// Serves an OpenAI-compatible gateway (`/v1/chat/completions`, `/v1/models`,
    /// health, metrics, admin) in front of the engine: from `--config FILE`, or with
    /// `--standins` in front of local stand-ins (no cloud account needed).
    ///
    /// SIGTERM or Ctrl-C drains it: `/readyz` turns 503, requests in flight finish up to
    /// the drain deadline, open streams then end with an error frame, the ledger is flushed.
    Serve(serve::ServeArgs),
    /// Prints the hash of the API key on standard input, for a `[[keys]]` entry (keys are
    /// never kept in clear).
    HashKey,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let prometheus = match &cli.command {
        Command::Demo(args) => args.metrics,
        // `/metrics` renders what the engine records.
        Command::Serve(_) => true,
        Command::HashKey => false,
    };
    let telemetry = match telemetry::Telemetry::init(prometheus) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("failover: cannot set up telemetry: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Demo(args) => demo::run(args, telemetry.prometheus()).await,
        Command::Serve(args) => serve::run(args, telemetry.prometheus()).await,
        Command::HashKey => serve::hash_key(),
    };
    // Spans and metrics of the run reach the collector before the process exits.
    if let Err(error) = telemetry.shutdown().await {
        eprintln!("failover: telemetry export failed: {error}");
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("failover: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
