//! The shared usage-sink behaviour suite, run on [`MemoryUsageSink`].

use std::sync::Arc;

use failover_usage::{MemoryUsageSink, UsageSink};

async fn memory_sink() -> Arc<dyn UsageSink> {
    Arc::new(MemoryUsageSink::new())
}

failover_testkit::usage_sink_behaviour_suite!(memory_sink);
