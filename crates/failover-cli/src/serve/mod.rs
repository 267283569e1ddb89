//! `failover serve`: the OpenAI-compatible gateway, from a configuration file or, with
//! `--standins`, in front of the local Bedrock and OpenAI stand-ins (no cloud account).

mod assemble;
mod config;

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use failover_server::{Gateway, GatewayConfig, KeyGrant, KeyHash, RunningGateway};
use failover_standin::StandIns;
use failover_telemetry::prometheus::PrometheusMetrics;

use self::config::ServeConfig;

/// `failover serve`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The configuration file (TOML; see the README's "Gateway" section).
    #[arg(long, value_name = "FILE", required_unless_present = "standins")]
    config: Option<PathBuf>,
    /// Serve in front of local Bedrock and OpenAI stand-ins, with memory cache and ledger:
    /// no cloud account, no paid call. Prints the address and a key to try it with.
    #[arg(long, conflicts_with = "config")]
    standins: bool,
    /// Validate the configuration, print what it would run, and exit.
    #[arg(long, requires = "config")]
    check: bool,
    /// Listen here instead (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// The listen address of `--standins` unless `--listen` says otherwise.
const STANDINS_LISTEN: &str = "127.0.0.1:8080";

pub(crate) async fn run(
    args: ServeArgs,
    metrics: Option<&PrometheusMetrics>,
) -> Result<(), Box<dyn Error>> {
    if args.standins {
        return standins(args.listen, metrics).await;
    }
    let path = args
        .config
        .as_deref()
        .ok_or("--config FILE or --standins")?;
    let config = ServeConfig::load(path)?;
    if args.check {
        print!("{}", config.describe()?);
        println!("configuration OK: {}", path.display());
        return Ok(());
    }
    let mut gateway_config = config.gateway()?;
    if let Some(listen) = args.listen {
        gateway_config.listen = listen;
    }
    let providers = assemble::providers(&config).await?;
    let engine = assemble::engine(&config, providers).await?;
    let running = Gateway::new(engine.adapter, gateway_config, metrics.cloned())?
        .start()
        .await?;
    eprintln!(
        "failover serve: listening on http://{}",
        running.local_addr()
    );
    for part in &engine.parts {
        eprintln!("  {part}");
    }
    serve_until_signal(running).await
}

/// `--standins`: the stand-ins as upstreams, a key drawn for this run.
async fn standins(
    listen: Option<SocketAddr>,
    metrics: Option<&PrometheusMetrics>,
) -> Result<(), Box<dyn Error>> {
    let standins = StandIns::start().await;
    let bedrock = failover_bedrock::BedrockProvider::new(standins.bedrock_config().build()).await;
    let openai = failover_openai::OpenAiProvider::new(standins.openai_config().build())?;
    let config = ServeConfig::default();
    let engine = assemble::engine(
        &config,
        vec![std::sync::Arc::new(bedrock), std::sync::Arc::new(openai)],
    )
    .await?;
    let key = format!("sk-standins-{}", uuid::Uuid::new_v4().simple());
    let gateway_config = GatewayConfig {
        listen: match listen {
            Some(listen) => listen,
            None => STANDINS_LISTEN.parse()?,
        },
        keys: vec![KeyGrant::new("standins", KeyHash::of(&key), "standins")],
        ..GatewayConfig::default()
    };
    let running = Gateway::new(engine.adapter, gateway_config, metrics.cloned())?
        .start()
        .await?;
    let addr = running.local_addr();
    // The address and the key on stdout, one per line, for scripts; the rest on stderr.
    println!("listening on http://{addr}");
    println!("key: {key}");
    eprintln!(
        "failover serve: stand-ins for Bedrock ({}) and OpenAI ({}); memory cache and ledger",
        standins.bedrock_endpoint(),
        standins.openai_base_url()
    );
    eprintln!(
        "  try: curl -s http://{addr}/v1/chat/completions -H 'authorization: Bearer {key}' \
         -H 'content-type: application/json' \
         -d '{{\"model\":\"gpt-4\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"
    );
    eprintln!("  or an OpenAI SDK with base_url=http://{addr}/v1 and api_key={key}");
    let served = serve_until_signal(running).await;
    drop(standins);
    served
}

/// Serves until SIGTERM or Ctrl-C, then drains (see `failover_server`'s drain).
async fn serve_until_signal(running: RunningGateway) -> Result<(), Box<dyn Error>> {
    let shutdown = running.shutdown_handle();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let waiter = tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("failover serve: draining");
        shutdown.drain();
    });
    let report = running.wait().await;
    waiter.abort();
    eprintln!(
        "failover serve: drained ({}{})",
        if report.cut {
            "requests still open at the drain deadline were told"
        } else {
            "every request in flight finished"
        },
        if report.all_closed {
            ""
        } else {
            "; some connections did not close"
        }
    );
    report
        .ledger
        .map_err(|error| format!("the usage ledger was not flushed: {error}").into())
}

/// `failover hash-key`: the hash of the key read from standard input, for `[[keys]]`.
pub(crate) fn hash_key() -> Result<(), Box<dyn Error>> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key)?;
    let key = key.trim();
    if key.is_empty() {
        return Err("no key on standard input".into());
    }
    println!("{}", KeyHash::of(key));
    Ok(())
}
