//! The shared cache behaviour suite, run on [`MemoryCache`].

use std::sync::Arc;

use failover_cache::{Cache, MemoryCache};

async fn memory_cache() -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new())
}

failover_testkit::cache_behaviour_suite!(memory_cache);

/// A small cache still honours the contract for the suite's working set.
mod bounded {
    use super::*;
    use failover_cache::MemoryCacheConfig;

    failover_testkit::cache_behaviour_suite!(|| async {
        Arc::new(MemoryCache::with_config(
            MemoryCacheConfig::new().max_entries(1_000),
        )) as Arc<dyn Cache>
    });
}
