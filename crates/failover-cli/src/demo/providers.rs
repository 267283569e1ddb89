//! The demo's providers: the real Bedrock and OpenAI clients, each talking to its local
//! stand-in server ([`StandIns`], on 127.0.0.1) — built from the stand-ins' client settings,
//! as the scenario suite's harness builds them offline.

use std::error::Error;
use std::sync::Arc;

use failover_bedrock::BedrockProvider;
use failover_openai::OpenAiProvider;
use failover_standin::StandIns;

pub(crate) use failover_standin::seed::{BEDROCK, OPENAI};

/// The stand-ins and the two clients pointed at them.
pub(crate) struct Providers {
    /// The stand-in servers: script faults, count what they received.
    pub(crate) standins: StandIns,
    /// `BedrockProvider` (AWS SDK) → the Bedrock stand-in.
    pub(crate) bedrock: Arc<BedrockProvider>,
    /// `OpenAiProvider` → the OpenAI stand-in.
    pub(crate) openai: Arc<OpenAiProvider>,
}

impl Providers {
    /// Starts the stand-ins and builds the clients from their settings: dummy
    /// credentials, region `us-east-1`, and one SDK attempt per call (the adapter fails over
    /// instead of retrying), so every request a server receives is one provider call in the
    /// ledger.
    pub(crate) async fn start() -> Result<Self, Box<dyn Error>> {
        let standins = StandIns::start().await;
        let bedrock = BedrockProvider::new(standins.bedrock_config().build()).await;
        let openai = OpenAiProvider::new(standins.openai_config().build())?;
        Ok(Self {
            standins,
            bedrock: Arc::new(bedrock),
            openai: Arc::new(openai),
        })
    }
}
